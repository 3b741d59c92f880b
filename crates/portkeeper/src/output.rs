//! Printing results: one JSON document under `--json`, aligned plain-text tables otherwise.
//!
//! JSON goes to stdout with stable keys (the documented column names where a value is a row), and
//! errors under `--json` are JSON on stdout too, so a script reads one document whatever happened.
//! Text output has no colours or decoration, so it reads the same on a terminal and in a pipe.

use std::io::{self, Write};

use serde::Serialize;

use crate::error::Error;

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|e| {
        serde_json::json!({"error": {"code": "failed", "message": e.to_string()}}).to_string()
    });
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Prints text on stdout as it is.
pub fn text(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
}

/// Prints an error: `{"error":{…}}` on stdout under `--json`, `error: …` on stderr otherwise.
pub fn error(json: bool, error: &Error) {
    store::cli::print_failure(json, error.code(), &error.to_string());
}

pub use store::cli::Table;

/// `-` for a missing value.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}
