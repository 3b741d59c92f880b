//! The metadata repository (seed §9.5): JSON values by key, with the time they were set.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

/// The value under `key`, parsed from JSON, or `default` when absent (or not valid JSON).
pub fn get(conn: &Connection, key: &str, default: Value) -> rusqlite::Result<Value> {
    let stored: Option<String> = conn
        .query_row("SELECT value FROM metadata WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(stored
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(default))
}

/// Stores `value` as JSON under `key`, stamping `updated_at` with the current unix time.
pub fn set(tx: &Transaction<'_>, key: &str, value: &Value) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO metadata (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        params![key, value.to_string(), super::models::now()],
    )?;
    Ok(())
}
