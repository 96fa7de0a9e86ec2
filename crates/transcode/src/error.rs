//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong transcoding a CSV dataset.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error(transparent)]
    Spec(#[from] featurespec::SpecError),

    #[error(transparent)]
    Tensor(#[from] torchfile::TorchFileError),

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// A malformed CSV row; `line` is 1-based.
    #[error("{}:{line}: {message}", path.display())]
    Malformed { path: PathBuf, line: u64, message: String },

    /// Chunks of a mapping with different row counts (the rule `spec-dataset` checks).
    #[error(transparent)]
    Dataset(#[from] spec_dataset::DatasetError),

    /// An id at or over its feature's declared cardinality; `path:line` holds the first such id.
    #[error("{}:{line}: Specified cardinality conflicts data: feature `{feature}` declares cardinality {declared} but the data holds id {id} here, {largest} at most (feature_spec.{feature}.cardinality must be at least {})", path.display(), largest + 1)]
    Cardinality { feature: String, declared: u64, largest: i64, path: PathBuf, line: u64, id: i64 },

    #[error("mapping `{mapping}` has no `{feature}` column in any chunk")]
    MissingFeature { mapping: String, feature: String },
}
