//! FeatureSpec datasets checked against their spec: every `torch_tensor` file of a mapping read and
//! held to the rules of the reference's `test_featurespec_correctness.py`, without libtorch.
//!
//! **What it is for.** Files of one chunk are consecutive rows; a chunk's columns are its features
//! in order; chunks of one mapping sit side by side. [`check_chunk_file`] checks one file's dtype and
//! shape against the spec; [`verify_mapping`] reads a whole mapping and also checks equal row counts
//! across its chunks and integer ids in `0..cardinality`. Errors ([`DatasetError`]) name the file,
//! the feature and the rule. `ncf-prepare verify` is built on it, and `tch-data` applies the same
//! checks while loading onto a device. [`IdMap`] reads and writes the raw ids behind a dataset's
//! renumbered users and items (`user_ids.pt` or `user_ids.txt` beside the spec).
//!
//! **What it is not.** No tensors on devices (`tch-data`), no batching or sampling (`ncf-train`),
//! no CSV (`transcode`). It depends on neither tch nor polars.
//!
//! ```
//! use featurespec::{FeatureSpec, LoadOptions};
//! let dir = std::path::Path::new("data/ml-20m");
//! # // Run as a test on the reference's own prepared ml-latest-small (shared/data).
//! # let dir = test_support::reference_prepared();
//! let spec = FeatureSpec::from_yaml_file(dir.join("feature_spec.yaml"))?;
//! let rows = spec_dataset::verify_mapping(&spec, "train", LoadOptions::default())?;
//! println!("{rows} train rows, all ids in range");
//! # assert!(rows > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checks;
mod id_map;

pub use checks::{check_chunk_file, id_limits, verify_mapping, RowCount};
pub use id_map::{IdIndex, IdMap, IdSide};

use featurespec::{Dtype, SpecError};
use std::path::PathBuf;
use torchfile::TorchFileError;

/// What can be wrong with a dataset on disk.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Spec(#[from] SpecError),

    #[error(transparent)]
    File(#[from] TorchFileError),

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("id map {}: {message}", path.display())]
    IdMap { path: PathBuf, message: String },

    #[error("{}: holds {found} but feature_spec declares {declared} for {features} (key `{key}`)", file.display())]
    Dtype { file: PathBuf, key: String, features: String, declared: Dtype, found: Dtype },

    #[error("{}: tensor of shape {shape:?} does not fit chunk `{key}` with {columns} feature(s) [{features}]; expected [rows, {columns}]", file.display())]
    Shape { file: PathBuf, key: String, shape: Vec<usize>, columns: usize, features: String },

    #[error("mapping `{mapping}`: chunk {chunk} ({features}) has {rows} rows but chunk 0 has {first}; chunks of one mapping must have equal row counts")]
    RowCount { mapping: String, chunk: usize, features: String, rows: usize, first: usize },

    #[error("{}: feature `{feature}` has id {id} at row {row}, outside 0..{cardinality} (feature_spec.{feature}.cardinality)", file.display())]
    IdOutOfRange { file: PathBuf, feature: String, id: i64, row: usize, cardinality: u64 },
}
