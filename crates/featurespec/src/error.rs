//! Typed errors; each names the spec file (when there is one) and the key at fault.

use std::fmt;
use std::path::PathBuf;

/// Where in a spec an error was found: the YAML file (if the spec came from one) and the key path,
/// written like `source_spec.train[0].files[1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Option<PathBuf>,
    pub key: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}: key `{}`", file.display(), self.key),
            None => write!(f, "key `{}`", self.key),
        }
    }
}

/// Everything that can go wrong loading, validating or saving a feature specification.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read feature spec {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    #[error("cannot write feature spec {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },

    /// The YAML is malformed or does not have the shape of a feature spec (serde_yaml's message
    /// carries the line and column).
    #[error("{}: invalid feature spec: {message}", file_name(file))]
    Parse { file: Option<PathBuf>, message: String },

    #[error("{at}: feature `{feature}` is not declared in `feature_spec`")]
    UndeclaredFeature { at: Location, feature: String },

    #[error("{at}: features of one chunk must share one dtype, found {found}")]
    MixedDtypes { at: Location, found: String },

    #[error("{at}: a chunk needs at least one {what}")]
    EmptyChunk { at: Location, what: &'static str },

    #[error("{at}: data file path `{path}` {reason}; use a path relative to the spec's folder (or allow outside paths explicitly)")]
    UnsafePath { at: Location, path: String, reason: &'static str },

    #[error("{at}: chunk type `{chunk_type}` is not supported here (expected {expected})")]
    UnsupportedChunkType { at: Location, chunk_type: String, expected: &'static str },

    #[error("{at}: missing (required by {rule})")]
    Missing { at: Location, rule: &'static str },

    #[error("{at}: expected exactly one feature, found {count}")]
    ChannelArity { at: Location, count: usize },

    #[error("{at}: must be a positive integer, found `{found}`")]
    NotPositive { at: Location, found: String },

    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
}

impl SpecError {
    /// The location the error names, when it is about a key of the spec.
    pub fn location(&self) -> Option<&Location> {
        match self {
            SpecError::UndeclaredFeature { at, .. }
            | SpecError::MixedDtypes { at, .. }
            | SpecError::EmptyChunk { at, .. }
            | SpecError::UnsafePath { at, .. }
            | SpecError::UnsupportedChunkType { at, .. }
            | SpecError::Missing { at, .. }
            | SpecError::ChannelArity { at, .. }
            | SpecError::NotPositive { at, .. }
            | SpecError::Invalid { at, .. } => Some(at),
            SpecError::Read { .. } | SpecError::Write { .. } | SpecError::Parse { .. } => None,
        }
    }
}

fn file_name(file: &Option<PathBuf>) -> String {
    match file {
        Some(f) => f.display().to_string(),
        None => "<string>".to_owned(),
    }
}
