//! The `audit_log` table: who changed what, when. Every CLI change writes one row in the same
//! transaction as the change; part 2's server adds pushes (who pushed which refs).

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::error::Result;
use store::timestamp;

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Row id.
    pub id: i64,
    /// When.
    #[serde(serialize_with = "timestamp::rfc3339::serialize")]
    pub at: String,
    /// Who: an OS user for the CLI, a cpm user for the server.
    pub actor: String,
    /// What, e.g. `repo.create`.
    pub action: String,
    /// On what, e.g. `acme/web`.
    pub target: String,
    /// More detail.
    pub details: String,
}

/// The OS user running the CLI.
pub fn os_user() -> String {
    store::cli::os_user()
}

/// Appends an entry.
pub fn record(
    conn: &Connection,
    actor: &str,
    action: &str,
    target: &str,
    details: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_log (at, actor, action, target, details) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![timestamp::now(), actor, action, target, details])?;
    Ok(())
}

/// The newest entries first.
pub fn list(conn: &Connection, limit: u32) -> Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, actor, action, target, details FROM audit_log ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(Entry {
            id: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            details: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
