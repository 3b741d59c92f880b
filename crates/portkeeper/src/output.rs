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

/// A plain table: a header row and left-aligned columns two spaces apart.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether only the header is there.
    pub fn is_empty(&self) -> bool {
        self.rows.len() <= 1
    }

    /// The table as text, trailing spaces trimmed.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `-` for a missing value.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["PORT", "PROJECT"]);
        t.row(vec!["3000".into(), "web".into()]);
        t.row(vec!["80".into(), "-".into()]);
        assert_eq!(t.render(), "PORT  PROJECT\n3000  web\n80    -\n");
    }
}
