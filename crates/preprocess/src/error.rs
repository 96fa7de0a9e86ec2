//! The crate's error type: raw-file problems name the file and the line.

use std::path::PathBuf;

/// What can go wrong preparing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// A malformed raw ratings file; `line` is 1-based, as an editor shows it.
    #[error("{}:{line}: {message}", path.display())]
    Malformed { path: PathBuf, line: u64, message: String },

    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },

    #[error("cannot prepare the dataset: {0}")]
    Data(String),

    #[error(transparent)]
    Spec(#[from] featurespec::SpecError),

    #[error(transparent)]
    Tensor(#[from] torchfile::TorchFileError),

    #[error(transparent)]
    Dataset(#[from] spec_dataset::DatasetError),
}
