//! The crate's error type.

use std::path::PathBuf;

/// What can stop a training or evaluation run; every variant is raised before training starts
/// except I/O failures while writing checkpoints and logs.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Spec(#[from] featurespec::SpecError),

    #[error(transparent)]
    Dataset(#[from] spec_dataset::DatasetError),

    #[error(transparent)]
    Model(#[from] ncf_model::ModelError),

    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),

    #[error(transparent)]
    File(#[from] torchfile::TorchFileError),

    /// A data-parallel collective failed (a rank crashed or hung, or the backend failed).
    #[error(transparent)]
    Collective(#[from] crate::dist::CollectiveError),

    /// A setting that cannot work with this dataset (e.g. a batch larger than the epoch).
    #[error("{0}")]
    Config(String),

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// A `--resume` folder whose training state does not fit this run.
    #[error("cannot resume from {}: {message}", path.display())]
    Resume { path: PathBuf, message: String },
}
