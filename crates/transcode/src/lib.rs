//! Turns a FeatureSpec dataset stored as headerless CSV chunks into PyTorch tensor files and a new
//! `feature_spec.yaml`, the job of the reference's `transcode.py` (reference-semantics.md §3).
//!
//! **What it is for.** Bringing your own NCF dataset as CSV: per mapping, the user and item columns
//! become one int64 `[N, 2]` file `<mapping>_data_0.pt` and the label one float32 `[N, 1]` file
//! `<mapping>_data_1.pt`; `auto` cardinalities become max id + 1 over all mappings, a declared one
//! must cover the data. Input CSV: no header, one column per feature in the chunk's order, several
//! files of a chunk are consecutive rows, several chunks of a mapping sit side by side (equal row
//! counts). Errors name the file and line (or the feature and value) at fault, and the output folder
//! appears only when complete. A mapping held in one chunk is streamed: parsed piece by piece on
//! every core straight into its place in the tensor files (direct I/O where the file system allows
//! it), in a few tens of MB whatever its size; other mappings are parsed whole into memory.
//!
//! **What it is not:** a preprocessor: ids must already be `0..n`, test negatives already present
//! (use `preprocess` for raw ratings). Features other than the user, item and label channels' are
//! read as text and not written, as the reference does.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("train.csv"), "0,1,1\n1,2,1\n")?;
//! std::fs::write(dir.path().join("test.csv"), "0,2,1\n0,0,0\n1,1,1\n1,0,0\n")?;
//! std::fs::write(dir.path().join("feature_spec.yaml"), "\
//! feature_spec: {user: {cardinality: auto}, item: {cardinality: auto}, label: {}}
//! metadata: {test_samples_per_series: 2}
//! source_spec:
//!   train: [{type: csv, features: [user, item, label], files: [train.csv]}]
//!   test: [{type: csv, features: [user, item, label], files: [test.csv]}]
//! channel_spec: {user_ch: [user], item_ch: [item], label_ch: [label]}
//! ")?;
//! let out = dir.path().join("tensors");
//! let summary = transcode::transcode(&dir.path().join("feature_spec.yaml"), &out, "feature_spec.yaml")?;
//! assert_eq!((summary.user_cardinality, summary.item_cardinality), (2, 3));
//! assert!(out.join("train_data_0.pt").exists() && out.join("test_data_1.pt").exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod buffer;
mod error;
mod read;
mod stream;
mod write;

pub use error::TranscodeError;
pub use write::{transcode, TranscodeSummary};
