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

/// The documented level a name stands for (`warning` → `warn`, `fatal` → `critical`, any case),
/// or `None` when it is not a level.
pub fn normalize_level(name: &str) -> Option<&'static str> {
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "warning" => Some("warn"),
        "fatal" | "crit" => Some("critical"),
        "err" => Some("error"),
        "trace" => Some("debug"),
        other => LEVELS.iter().copied().find(|l| *l == other),
    }
}

/// Parses a comma-separated list of levels, refusing names that are not levels.
pub fn parse_levels(text: &str) -> Result<Vec<String>, String> {
    text.split(',')
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            normalize_level(l)
                .map(str::to_string)
                .ok_or_else(|| format!("`{}` is not a level; use {}", l.trim(), LEVELS.join(", ")))
        })
        .collect()
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

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        id: r.get(0)?,
        level: r.get(1)?,
        message: r.get(2)?,
        source: r.get(3)?,
        timestamp: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
    })
}

/// The newest `limit` entries, newest first.
pub fn get_all(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<LogEntry>> {
    query(conn, &Filter::default(), limit)
}

/// Which entries [`query`] returns; every condition that is set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only these levels (any of them); empty means all.
    pub levels: Vec<String>,
    /// Only this source.
    pub source: Option<String>,
    /// Only entries with a larger id (for a live tail that resumes).
    pub after_id: Option<i64>,
}

/// The newest `limit` entries that pass `filter`, newest first.
pub fn query(conn: &Connection, filter: &Filter, limit: u32) -> rusqlite::Result<Vec<LogEntry>> {
    let mut sql =
        String::from("SELECT id, level, message, source, timestamp FROM logs WHERE 1 = 1");
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    if !filter.levels.is_empty() {
        let marks: Vec<String> = filter
            .levels
            .iter()
            .map(|level| {
                values.push(level.clone().into());
                format!("?{}", values.len())
            })
            .collect();
        sql.push_str(&format!(" AND level IN ({})", marks.join(", ")));
    }
    if let Some(source) = &filter.source {
        values.push(source.clone().into());
        sql.push_str(&format!(" AND source = ?{}", values.len()));
    }
    if let Some(after) = filter.after_id {
        values.push(after.into());
        sql.push_str(&format!(" AND id > ?{}", values.len()));
    }
    values.push(i64::from(limit).into());
    sql.push_str(&format!(
        " ORDER BY timestamp DESC, id DESC LIMIT ?{}",
        values.len()
    ));
    let mut stmt = conn.prepare_cached(&sql)?;
    stmt.query_map(rusqlite::params_from_iter(values), row)?
        .collect()
}

/// Deletes entries older than `max_age_secs` and then the oldest beyond `max_records`; returns
/// how many went. This is the retention the original lacked.
pub fn prune(tx: &Transaction<'_>, max_records: u64, max_age_secs: u64) -> rusqlite::Result<usize> {
    let cutoff = super::models::now() - i64::try_from(max_age_secs).unwrap_or(i64::MAX);
    let aged = tx.execute("DELETE FROM logs WHERE timestamp < ?1", [cutoff])?;
    let keep = i64::try_from(max_records).unwrap_or(i64::MAX);
    let over = tx.execute(
        "DELETE FROM logs WHERE id NOT IN
           (SELECT id FROM logs ORDER BY timestamp DESC, id DESC LIMIT ?1)",
        [keep],
    )?;
    Ok(aged + over)
}

/// Entries kept by retention unless configured otherwise.
pub const DEFAULT_MAX_RECORDS: u64 = 10_000;
/// Age after which retention deletes an entry unless configured otherwise (30 days).
pub const DEFAULT_MAX_AGE_SECS: u64 = 30 * 24 * 3600;

/// Deletes every entry; returns how many.
pub fn clear(tx: &Transaction<'_>) -> rusqlite::Result<usize> {
    tx.execute("DELETE FROM logs", [])
}
