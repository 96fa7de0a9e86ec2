//! Turns a FeatureSpec dataset stored as headerless CSV chunks into PyTorch tensor files and a new
//! `feature_spec.yaml`, the job of the reference's `transcode.py` (reference-semantics.md §3).
//!
//! **What it is for.** Bringing your own NCF dataset as CSV: per mapping, the user and item columns
//! become one int64 `[N, 2]` file `<mapping>_data_0.pt` and the label one float32 `[N, 1]` file
//! `<mapping>_data_1.pt`; `auto` cardinalities become max id + 1 over all mappings, a declared one
//! must cover the data. Input CSV: no header, one column per feature in the chunk's order, several
//! files of a chunk are consecutive rows, several chunks of a mapping sit side by side (equal row
//! counts). Errors name the file and line (or the feature and value) at fault, and the output folder
//! appears only when complete.
//!
//! **What it is not:** a preprocessor: ids must already be `0..n`, test negatives already present
//! (use `preprocess` for raw ratings). Features other than the user, item and label channels' are
//! read as text and not written, as the reference does.

mod buffer;
mod error;
mod read;
mod write;

pub use error::TranscodeError;
pub use write::{transcode, TranscodeSummary};
