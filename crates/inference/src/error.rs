//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong loading a model for inference or writing recommendations.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Spec(#[from] featurespec::SpecError),

    #[error(transparent)]
    Dataset(#[from] spec_dataset::DatasetError),

    #[error(transparent)]
    Model(#[from] ncf_model::ModelError),

    #[error(transparent)]
    File(#[from] torchfile::TorchFileError),

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// A raw user id the dataset does not know.
    #[error("user {0} is not in the dataset (it had no ratings when the dataset was prepared); NeuMF has no embedding for it. See docs/src/ncf-infer.md on cold-start users")]
    UnknownUser(String),

    /// A 0-based id outside the model's embedding tables.
    #[error("{what} id {id} is outside the model's {count} {what}s (ids run from 0 to {count} - 1)")]
    IdOutOfRange { what: String, id: i64, count: u64 },

    /// The train mapping cannot give each user's items (or a tensor could not be read back).
    #[error("the dataset's train mapping: {0}")]
    Train(String),

    /// Scores computed but not readable back from the device (an internal error).
    #[error("reading the scores back from libtorch: {0}")]
    Readback(String),

    /// Ids given as a tensor of another dtype, shape or device than scoring needs.
    #[error("{0}")]
    TensorArgument(String),

    /// Pairs to score given as two lists of different lengths.
    #[error("{users} users but {items} items: pairs need one of each")]
    PairLengths { users: usize, items: usize },

    /// The checkpoint's model does not fit the dataset.
    #[error("the checkpoint has {model} {what}, the dataset {data}")]
    Shape { what: &'static str, model: i64, data: u64 },

    /// A history file line that cannot be read (`line` 0: the file as a whole).
    #[error("{}, line {line}: {reason}", path.display())]
    HistoryFile { path: PathBuf, line: u64, reason: String },

    /// Fold-in cannot run for this model or these rows.
    #[error("fold-in: {0}")]
    FoldIn(String),
}
