//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong building, loading or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model shape the reference would refuse (or crash on).
    #[error("invalid model configuration: {0}")]
    Config(String),

    /// A computation this model, device or CPU cannot run (e.g. bfloat16 scoring without bfloat16
    /// instructions); the message says why.
    #[error("{0}")]
    Unsupported(String),

    /// A state dict that does not fit the model; one line per key at fault.
    #[error("the state dict does not fit the model:\n  {}", problems.join("\n  "))]
    StateDict { problems: Vec<String> },

    /// A checkpoint file that does not fit the model (check --factors, --layers and the dataset).
    #[error("{} does not fit the model (were --factors, --layers and the dataset the same when it was saved?):\n  {}", path.display(), problems.join("\n  "))]
    Checkpoint { path: PathBuf, problems: Vec<String> },

    /// A checkpoint of another model than the one asked for (e.g. an MF file as `--pretrained-mlp`).
    #[error("{0}")]
    WrongModel(String),

    /// The file could not be read or written.
    #[error(transparent)]
    File(#[from] torchfile::TorchFileError),
}

impl ModelError {
    /// A state-dict misfit reported against the file the state dict came from.
    pub fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            ModelError::StateDict { problems } => ModelError::Checkpoint { path: path.to_owned(), problems },
            other => other,
        }
    }
}
