//! The `logs` repository (seed §9.3): our own events and llama-server's output, newest first.

use rusqlite::{Connection, Transaction, params};
use serde::{Deserialize, Serialize};

/// Entries returned by [`get_all`] unless told otherwise, as documented.
pub const DEFAULT_LIMIT: u32 = 100;
/// The source of entries added without one, as documented.
pub const DEFAULT_SOURCE: &str = "server";
/// The documented levels.
pub const LEVELS: [&str; 5] = ["debug", "info", "warn", "error", "critical"];

/// A log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Row id.
    pub id: i64,
    /// `debug`, `info`, `warn`, `error` or `critical`.
    pub level: String,
    /// The text (shown escaped by every page).
    pub message: String,
    /// The component, e.g. `server` or `llama-server`.
    pub source: Option<String>,
    /// Unix seconds.
    pub timestamp: i64,
}

/// Adds an entry stamped with the current unix time; `source` defaults to `server`.
pub fn add(
    tx: &Transaction<'_>,
    level: &str,
    message: &str,
    source: Option<&str>,
) -> rusqlite::Result<i64> {
    tx.prepare_cached("INSERT INTO logs (level, message, source) VALUES (?1, ?2, ?3)")?
        .execute(params![level, message, source.unwrap_or(DEFAULT_SOURCE)])?;
    Ok(tx.last_insert_rowid())
}

/// The newest `limit` entries, newest first.
pub fn get_all(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<LogEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, level, message, source, timestamp FROM logs ORDER BY timestamp DESC, id DESC LIMIT ?1",
    )?;
    stmt.query_map([limit], |r| {
        Ok(LogEntry {
            id: r.get(0)?,
            level: r.get(1)?,
            message: r.get(2)?,
            source: r.get(3)?,
            timestamp: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
        })
    })?
    .collect()
}

/// Deletes every entry; returns how many.
pub fn clear(tx: &Transaction<'_>) -> rusqlite::Result<usize> {
    tx.execute("DELETE FROM logs", [])
}
