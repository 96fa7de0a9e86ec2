//! The NCF training and evaluation loop, the job of the reference's `ncf.py` (reference-semantics.md
//! §4): load a FeatureSpec dataset onto a device, build each epoch's samples there (positives plus
//! random negatives, shuffled, batched), train NeuMF with Adam and gradient accumulation, evaluate
//! HR@k / NDCG@k / validation loss after every epoch, save `model.pth` whenever HR improves and a
//! full training state every epoch (for `--resume`), and write DLLogger JSON logs.
//!
//! **What it is for.** Rust code that trains NCF models without the command line:
//!
//! ```no_run
//! use ncf_train::{Quiet, TrainConfig, Trainer};
//! let config = TrainConfig {
//!     data: "data/cache/ml-20m".into(),
//!     epochs: 5,
//!     seed: Some(1),
//!     checkpoint_dir: Some("runs/ml-20m".into()),
//!     device: tch::Device::cuda_if_available(),
//!     ..TrainConfig::default()
//! };
//! let summary = Trainer::new(config)?.run(&mut Quiet)?;
//! println!("best HR@10 {} at epoch {:?}", summary.best_hr, summary.best_epoch);
//! # Ok::<(), ncf_train::TrainError>(())
//! ```
//!
//! **What it is not:** a command-line program (that is `bins/ncf-train`), the model (`ncf-model`)
//! or the metrics (`metrics`).

mod adam;
mod config;
mod data;
pub mod dist;
mod error;
mod full_eval;
mod seeds;
mod state;
mod trainer;

pub use adam::{Adam, GradScaler};
pub use config::{EvalProtocol, Mode, Pretrained, TrainConfig};
pub use data::{Epoch, TrainSet};
pub use dllogger::{DlLogger, LogValue, Step};
pub use error::TrainError;
pub use ncf_model;
pub use state::{Progress, TRAINING_STATE};
pub use trainer::{EpochReport, Evaluation, Observer, Quiet, Summary, Trainer};
