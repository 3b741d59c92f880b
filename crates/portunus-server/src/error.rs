//! One error type for everything the control plane refuses or fails at, with a stable code.
//!
//! The HTTP API turns it into the JSON envelope `{"error":{"code":…,"message":…}}` with a status
//! that follows from its [`Kind`]; the admin CLI prints the same code and message. Messages say
//! what was wrong and what to do; internal failures are logged in full and answered generically.

use std::fmt;

/// What sort of failure, which fixes the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 400: the request is malformed or a value is invalid.
    BadRequest,
    /// 401: no or bad credentials.
    Unauthorized,
    /// 403: authenticated, but not allowed.
    Forbidden,
    /// 404: no such resource.
    NotFound,
    /// 409: conflicts with the current state.
    Conflict,
    /// 429: too many attempts.
    TooMany,
    /// 503: the server is shutting down or its store is unavailable.
    Unavailable,
    /// 500: a bug or an I/O failure.
    Internal,
}

/// A refusal or failure with a stable machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The category.
    pub kind: Kind,
    /// Stable code, e.g. `grant_required`.
    pub code: &'static str,
    /// What was wrong and what to do.
    pub message: String,
    /// Seconds to wait before retrying (for [`Kind::TooMany`]).
    pub retry_after: Option<u64>,
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error.
    pub fn new(kind: Kind, code: &'static str, message: impl Into<String>) -> Error {
        Error {
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Error {
        Error::new(Kind::BadRequest, code, message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::new(Kind::Forbidden, "forbidden", message)
    }

    /// 404 `not_found` for a resource named like `rule rul_…`.
    pub fn not_found(what: impl fmt::Display) -> Error {
        Error::new(
            Kind::NotFound,
            "not_found",
            format!("{what} does not exist"),
        )
    }

    /// 409 with a code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Error {
        Error::new(Kind::Conflict, code, message)
    }

    /// 500 `internal`; the cause is logged, not shown.
    pub fn internal(cause: impl fmt::Display) -> Error {
        eprintln!("event=internal_error error={cause}");
        Error::new(
            Kind::Internal,
            "internal",
            "internal error; the server log has the details",
        )
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self.kind {
            Kind::BadRequest => 400,
            Kind::Unauthorized => 401,
            Kind::Forbidden => 403,
            Kind::NotFound => 404,
            Kind::Conflict => 409,
            Kind::TooMany => 429,
            Kind::Unavailable => 503,
            Kind::Internal => 500,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::internal(format!("sqlite: {e}"))
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Error {
        if e.is_busy() {
            Error::new(
                Kind::Unavailable,
                "busy",
                "the database is busy; try again in a moment",
            )
        } else if matches!(e, store::Error::Closed { .. }) {
            Error::new(
                Kind::Unavailable,
                "shutting_down",
                "the server is shutting down",
            )
        } else {
            Error::internal(e)
        }
    }
}
