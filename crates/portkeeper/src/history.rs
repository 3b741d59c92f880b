//! The `port_history` table: who reserved, released, used and killed which port, and when.
//!
//! Status changes on existing rows are written by the documented `track_port_changes` trigger, which
//! knows nothing about who caused them; [`annotate`] fills in `performedBy` and `details` on the row
//! the trigger just wrote, inside the same transaction. Actions the trigger cannot see (a brand-new
//! reservation, a kill) are recorded directly with [`record`].

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::error::Result;
use crate::port::Port;
use crate::timestamp;

/// Who or what performed an action: the OS user and the command.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `performedBy`: the user name.
    pub user: String,
    /// What ran, e.g. `portman reserve`.
    pub command: String,
}

impl Actor {
    /// The current user running `portman <command>`.
    pub fn current(command: &str) -> Actor {
        Actor {
            user: current_user(),
            command: format!("portman {command}"),
        }
    }
}

/// The user name: `$USER`, else `$LOGNAME`, else the name of our uid.
pub fn current_user() -> String {
    store::cli::os_user()
}

/// A documented history action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `reserved`
    Reserved,
    /// `released`
    Released,
    /// `in-use`
    InUse,
    /// `killed`
    Killed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Reserved => "reserved",
            Action::Released => "released",
            Action::InUse => "in-use",
            Action::Killed => "killed",
        }
    }
}

/// Appends a history row for `port` (which must have a `ports` row: the foreign key says so).
pub fn record(
    conn: &Connection,
    port: Port,
    action: Action,
    project: Option<&str>,
    description: Option<&str>,
    actor: &Actor,
    details: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO port_history (port, action, projectName, description, performedBy,
             performedAt, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        port,
        action.as_str(),
        project,
        description,
        actor.user,
        timestamp::now(),
        join_details(&actor.command, details),
    ])?;
    Ok(())
}

/// Fills in who and why on the history row the trigger just wrote for `port`, if it wrote one.
pub fn annotate(conn: &Connection, port: Port, actor: &Actor, details: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE port_history SET performedBy = ?2, details = ?3
         WHERE id = (SELECT max(id) FROM port_history WHERE port = ?1) AND performedBy IS NULL",
    )?
    .execute(params![
        port,
        actor.user,
        join_details(&actor.command, details)
    ])?;
    Ok(())
}

fn join_details(command: &str, details: &str) -> String {
    if details.is_empty() {
        command.to_string()
    } else {
        format!("{command}: {details}")
    }
}

/// One history row. JSON keys are the documented column names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Row id.
    pub id: i64,
    /// The port.
    pub port: i64,
    /// `reserved`, `released`, `in-use` or `killed`.
    pub action: String,
    /// The project at the time.
    pub project_name: Option<String>,
    /// The description at the time.
    pub description: Option<String>,
    /// Who did it.
    pub performed_by: Option<String>,
    /// When (RFC 3339 in JSON).
    #[serde(serialize_with = "timestamp::rfc3339::serialize")]
    pub performed_at: String,
    /// What exactly happened.
    pub details: Option<String>,
}

/// Which history rows to show.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only this port.
    pub port: Option<Port>,
    /// Only this project.
    pub project: Option<String>,
    /// Only rows at or after this stored timestamp.
    pub since: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// At most this many rows (newest first).
    pub limit: Option<u32>,
}

/// History rows, newest first.
pub fn list(conn: &Connection, q: &Query) -> Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, port, action, projectName, description, performedBy, performedAt, details
         FROM port_history
         WHERE (?1 IS NULL OR port = ?1)
           AND (?2 IS NULL OR projectName = ?2)
           AND (?3 IS NULL OR julianday(performedAt) >= julianday(?3))
           AND (?4 IS NULL OR action = ?4)
         ORDER BY performedAt DESC, id DESC
         LIMIT coalesce(?5, -1)",
    )?;
    let rows = stmt.query_map(
        params![q.port, q.project, q.since, q.action, q.limit],
        |r| {
            Ok(Entry {
                id: r.get(0)?,
                port: r.get(1)?,
                action: r.get(2)?,
                project_name: r.get(3)?,
                description: r.get(4)?,
                performed_by: r.get(5)?,
                performed_at: r.get(6)?,
                details: r.get(7)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
