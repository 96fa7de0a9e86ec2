//! The crate's error type: every variant names the file.

use std::path::PathBuf;

/// What can go wrong reading or writing a `torch.save` file.
#[derive(Debug, thiserror::Error)]
pub enum TorchFileError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{}: not a readable torch.save zip archive ({message}); the file is truncated or corrupt, or was written by an old torch.save (_use_new_zipfile_serialization=False), which is not supported", path.display())]
    NotAnArchive { path: PathBuf, message: String },

    #[error("{}: bad archive record `{record}`: {message}", path.display())]
    Record { path: PathBuf, record: String, message: String },

    #[error("{}: data.pkl byte {offset}: {message}", path.display())]
    Pickle { path: PathBuf, offset: usize, message: String },

    /// The file is well formed but does not hold what the caller asked for.
    #[error("{}: {message}", path.display())]
    Content { path: PathBuf, message: String },

    #[error("{}: cannot write: {message}", path.display())]
    Write { path: PathBuf, message: String },
}
