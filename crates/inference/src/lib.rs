//! NeuMF inference: the reference's `inference.py` benchmark ([`bench`](mod@bench)) and what its users ask for
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
//! People the model was not trained on (or known users with new events) are folded in
//! ([`FoldIn`]: their user rows fitted to the items they touched, the rest of the model fixed)
//! and recommended for ([`Recommender::recommend_for`]).
//!
//! **What it is not:** a trainer (`ncf-train`) or a server; it computes and returns.
//!
//! ```
//! use std::path::PathBuf;
//! let (data, checkpoint) = (PathBuf::from("data/cache/ml-20m"), PathBuf::from("runs/model.pth"));
//! # // Run as a test on a small synthetic dataset prepared here and an untrained model for it.
//! # let tmp = tempfile::tempdir()?;
//! # let raw = tmp.path().join("ratings.csv");
//! # let synthetic = preprocess::SyntheticConfig { users: 300, items: 200, interactions: 9_000, ..Default::default() };
//! # preprocess::write_synthetic_ratings(&raw, &synthetic)?;
//! # let (data, checkpoint) = (tmp.path().join("data"), tmp.path().join("model.pth"));
//! # let prepared = preprocess::prepare(&raw, &data, &preprocess::PrepareOptions::default(), |_| {})?;
//! # let config = ncf_model::NeuMfConfig::new(prepared.users as i64, prepared.items as i64);
//! # ncf_model::NeuMf::new(config, tch::Device::Cpu)?.save(&checkpoint)?;
//! let rec = inference::Recommender::open(&data, &checkpoint, tch::Device::Cpu)?;
//! let users = rec.users_by_raw_id(&["1", "42"])?;
//! for list in rec.recommend(&users, 10, false) {
//!     println!("user {}: {:?}", list.user, list.items);
//! #   assert_eq!(list.items.len(), 10);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bench;
mod error;
mod fold_in;
mod history;
mod pairs;
mod recommend;
mod small_batch;
mod top_k;

pub use error::InferenceError;
pub use fold_in::{FoldIn, FoldInOptions, UserVectors};
pub use history::{read_histories, History};
pub use pairs::score_tensors;
pub use recommend::{write_recommendations, Catalog, OutputFormat, RawId, Recommendation, Recommender};
pub use small_batch::{SmallBatchScorer, SMALL_BATCH_BELOW};
