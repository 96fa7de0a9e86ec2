//! The crate's errors: [`ServeError`] for starting and reloading, [`ApiError`] for one request.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;

/// What can go wrong setting a service up or loading a model into it.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The dataset, the checkpoint, or the two together.
    #[error(transparent)]
    Inference(#[from] inference::InferenceError),

    /// A file the service reads (item names, the admin token).
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// The item names file is not `movieId,title[,genres]` CSV.
    #[error("{}: {message}", path.display())]
    ItemNames { path: PathBuf, message: String },

    /// A loaded checkpoint failed its probe (a score that is not a probability).
    #[error("{}: the probe pair scored {score}, not a probability: the checkpoint's weights are not finite", path.display())]
    Probe { path: PathBuf, score: f32 },

    /// Another reload is under way.
    #[error("another reload is under way; try again when it ends")]
    ReloadBusy,

    /// A journal line that is not an event (a torn last line is cut, not an error).
    #[error("{}, line {line}: {message}; the journal is corrupt (move the file aside to start without it)", path.display())]
    Journal { path: PathBuf, line: usize, message: String },

    /// A setting out of its range.
    #[error("{0}")]
    Config(String),
}

/// A request's failure: an HTTP status and a message that says what to fix, sent as
/// `{"error": "...", "status": N}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (503 when the queue is full).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// A 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.message, "status": self.status.as_u16()});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
