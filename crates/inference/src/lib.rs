//! NeuMF inference: the reference's `inference.py` benchmark ([`bench`]) and what its users ask for
//! most, the top-k items for a user in the ids of the original ratings file ([`Recommender`]).
//!
//! **What it is for.** Timing forward passes at many batch sizes (mean throughput and latency
//! percentiles, with device synchronisation), and serving recommendations from a trained
//! `model.pth` and the dataset it was trained on: every item scored for each user (the item side of
//! the model computed once), the user's train items left out, ids mapped back through the
//! dataset's id maps (`user_ids.pt`/`.txt`, `item_ids.pt`/`.txt`, written by `ncf-prepare`; see
//! [`spec_dataset::IdMap`]). Scoring a few pairs
//! at a time on the CPU, where libtorch's per-operator cost dominates, goes through
//! [`SmallBatchScorer`] (3x faster for one pair, the same scores).
//!
//! **What it is not:** a trainer (`ncf-train`) or a server; it computes and returns.
//!
//! ```no_run
//! let rec = inference::Recommender::open("data/cache/ml-20m".as_ref(), "runs/model.pth".as_ref(), tch::Device::Cpu)?;
//! let users = rec.users_by_raw_id(&["1", "42"])?;
//! for list in rec.recommend(&users, 10, false) {
//!     println!("user {}: {:?}", list.user, list.items);
//! }
//! # Ok::<(), inference::InferenceError>(())
//! ```

pub mod bench;
mod error;
mod recommend;
mod small_batch;

pub use error::InferenceError;
pub use recommend::{write_recommendations, OutputFormat, RawId, Recommendation, Recommender};
pub use small_batch::{SmallBatchScorer, SMALL_BATCH_BELOW};
