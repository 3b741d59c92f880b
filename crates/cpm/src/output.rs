//! Printing results as a table, JSON or YAML (`--format`), and errors to match.
//!
//! JSON and YAML print one document on stdout with the seed's field names; errors in those formats
//! are documents too (`{"error":{"code","message"}}`) so a script always reads one document. Tables
//! are plain aligned text, the same on a terminal and in a pipe.

use serde::Serialize;

pub use store::cli::Table;

use crate::config::Format;
use crate::error::Error;

/// Where and how results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// The chosen format.
    pub format: Format,
}

impl Output {
    /// Prints `value` in the chosen format; `table` renders it for people.
    pub fn print<T: Serialize + ?Sized>(&self, value: &T, table: impl FnOnce(&T) -> String) {
        let text = match self.format {
            Format::Table => table(value),
            Format::Json => serde_json::to_string_pretty(value)
                .map(|s| s + "\n")
                .unwrap_or_default(),
            Format::Yaml => serde_yaml_ng::to_string(value).unwrap_or_default(),
        };
        write_stdout(text.as_bytes());
    }

    /// Prints a confirmation: the message for tables, `value` as a document otherwise.
    pub fn done<T: Serialize + ?Sized>(&self, value: &T, message: &str) {
        self.print(value, |_| format!("{message}\n"));
    }

    /// Prints an error in the chosen format.
    pub fn error(&self, error: &Error) {
        match self.format {
            Format::Table => eprintln!("error: {error}"),
            Format::Json => store::cli::print_failure(true, error.code(), &error.to_string()),
            Format::Yaml => {
                let doc = serde_json::json!({"error": {"code": error.code(), "message": error.to_string()}});
                write_stdout(
                    serde_yaml_ng::to_string(&doc)
                        .unwrap_or_default()
                        .as_bytes(),
                );
            }
        }
    }
}

/// Writes to stdout; a closed pipe (`cpm … | head -1`) is not an error worth a panic.
pub fn write_stdout(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

/// `-` for an empty value.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}
