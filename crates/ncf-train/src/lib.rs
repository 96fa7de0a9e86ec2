//! The NCF training and evaluation loop, the job of the reference's `ncf.py` (reference-semantics.md
//! §4): load a FeatureSpec dataset onto a device, build each epoch's samples there (positives plus
//! random negatives, shuffled, batched), train NeuMF with Adam and gradient accumulation, evaluate
//! HR@k / NDCG@k / validation loss after every epoch, save `model.pth` whenever HR improves and a
//! full training state every epoch (for `--resume`), and write DLLogger JSON logs.
//!
//! **What it is for.** Rust code that trains NCF models without the command line:
//!
//! ```
//! use ncf_train::{Quiet, TrainConfig, Trainer};
//! let (data, runs) = (std::path::PathBuf::from("data/cache/ml-20m"), std::path::PathBuf::from("runs/ml-20m"));
//! # // Run as a test on a small synthetic dataset prepared here, as `ncf-prepare synthetic` does.
//! # let tmp = tempfile::tempdir()?;
//! # let raw = tmp.path().join("ratings.csv");
//! # let synthetic = preprocess::SyntheticConfig { users: 300, items: 200, interactions: 9_000, ..Default::default() };
//! # preprocess::write_synthetic_ratings(&raw, &synthetic)?;
//! # let (data, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
//! # preprocess::prepare(&raw, &data, &preprocess::PrepareOptions::default(), |_| {})?;
//! let config = TrainConfig {
//!     data,
//!     epochs: 2,
//!     seed: Some(1),
//!     checkpoint_dir: Some(runs.clone()),
//!     log_path: Some(runs.join("log.json")),
//!     device: tch::Device::cuda_if_available(),
//!     ..TrainConfig::default()
//! };
//! # let config = TrainConfig { batch_size: 1024, ..config }; // the small dataset's batch
//! let summary = Trainer::new(config)?.run(&mut Quiet)?;
//! println!("best HR@10 {} at epoch {:?}", summary.best_hr, summary.best_epoch);
//! # assert!(runs.join("model.pth").exists() && summary.best_hr > 0.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **What it is not:** a command-line program (that is `bins/ncf-train`), the model (`ncf-model`)
//! or the metrics (`metrics`).

mod adam;
mod config;
mod data;
mod description;
pub mod dist;
mod error;
mod full_eval;
mod seeds;
mod state;
mod trainer;

pub use adam::{Adam, GradScaler};
pub use config::{EvalProtocol, Mode, Pretrained, ReplicaCheck, TrainConfig};
pub use data::{Epoch, TrainSet};
pub use dllogger::{DlLogger, LogValue, Step};
pub use error::TrainError;
pub use ncf_model;
pub use state::{Progress, TRAINING_STATE};
pub use trainer::{EpochReport, Evaluation, Observer, Quiet, Summary, Trainer};
