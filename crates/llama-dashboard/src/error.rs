//! The one error type of the HTTP API: a status, a stable machine-readable code and a message
//! that says what was wrong and what to do, sent as `{"error":{"code":…,"message":…}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stable code, e.g. `model_not_found`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error with the given status.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(404, code, message)
    }

    /// 500 for a failure of ours; the details go to the log, not to the caller.
    pub fn internal(what: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(source = "api", "{what} failed: {error}");
        ApiError::new(
            500,
            "internal",
            format!("{what} failed; the dashboard's log has the details"),
        )
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> ApiError {
        ApiError::internal("a database query", e)
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> ApiError {
        if e.is_busy() {
            return ApiError::new(
                503,
                "database_busy",
                "the database is busy with another writer; try again",
            );
        }
        ApiError::internal("a database operation", e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (status, axum::Json(body)).into_response()
    }
}

/// The result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;
