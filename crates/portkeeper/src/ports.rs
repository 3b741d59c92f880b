//! The `ports` table: reservations, one row per port number.
//!
//! A row is never deleted, because `port_history` rows point at it (a foreign key): releasing a port
//! sets its status to `free`, and reserving it again turns the same row back to `reserved`. The
//! documented triggers keep `updatedAt` current and write a history row for every status change; the
//! functions here add who did it ([`crate::history::annotate`]). `tags` is stored as a JSON array and
//! `metadata` as a JSON object, both as text, as the seed documents.

use std::fmt;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::port::Port;
use crate::timestamp;

/// A port's status, as stored in `ports.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Not reserved (released).
    Free,
    /// Reserved, nothing listening.
    Reserved,
    /// Reserved, and a process listens on it.
    InUse,
}

impl Status {
    /// The stored spelling: `free`, `reserved`, `in-use`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Free => "free",
            Status::Reserved => "reserved",
            Status::InUse => "in-use",
        }
    }

    /// Whether the port is held by a project (`reserved` or `in-use`).
    pub fn is_held(self) -> bool {
        self != Status::Free
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Status, String> {
        match s.trim() {
            "free" => Ok(Status::Free),
            "reserved" => Ok(Status::Reserved),
            "in-use" | "in_use" | "inuse" => Ok(Status::InUse),
            other => Err(format!(
                "unknown status '{other}' (expected free, reserved or in-use)"
            )),
        }
    }
}

/// One row of `ports`, every column kept. JSON keys are the documented column names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// The port (`number`).
    pub number: Port,
    /// The project holding it.
    pub project_name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Stored status.
    pub status: Status,
    /// The process seen listening on it, if any.
    pub pid: Option<u32>,
    /// That process's name.
    pub process_name: Option<String>,
    /// When it was reserved (stored form; RFC 3339 in JSON).
    #[serde(serialize_with = "timestamp::rfc3339::serialize")]
    pub reserved_at: String,
    /// When a process was last seen on it.
    #[serde(serialize_with = "timestamp::rfc3339::option::serialize", default)]
    pub last_seen_at: Option<String>,
    /// Last change to the row.
    #[serde(serialize_with = "timestamp::rfc3339::serialize")]
    pub updated_at: String,
    /// Release automatically once the process seen on it has exited.
    #[serde(default)]
    pub auto_release: bool,
    /// Tags (a JSON array in the table).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Custom data (a JSON object in the table).
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// The columns of `ports`, in [`Reservation::from_row`]'s order.
pub const COLUMNS: &str = "number, projectName, description, status, pid, processName, reservedAt, \
     lastSeenAt, updatedAt, autoRelease, tags, metadata";

impl Reservation {
    /// Reads a row selected with [`COLUMNS`]. Tolerates what older tools stored: tags as a comma
    /// list, metadata that is not an object, an unknown status (read as `reserved`).
    pub fn from_row(row: &Row<'_>) -> rusqlite::Result<Reservation> {
        let number: i64 = row.get(0)?;
        let status: String = row.get(3)?;
        let tags: Option<String> = row.get(10)?;
        let metadata: Option<String> = row.get(11)?;
        Ok(Reservation {
            number: Port::new(number).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Integer,
                    format!("ports.number {number} is not a port (1-65535)").into(),
                )
            })?,
            project_name: row.get(1)?,
            description: row.get(2)?,
            status: status.parse().unwrap_or(Status::Reserved),
            pid: row
                .get::<_, Option<i64>>(4)?
                .and_then(|p| u32::try_from(p).ok()),
            process_name: row.get(5)?,
            reserved_at: row.get(6)?,
            last_seen_at: row.get(7)?,
            updated_at: row.get(8)?,
            auto_release: row.get::<_, Option<bool>>(9)?.unwrap_or(false),
            tags: parse_tags(tags.as_deref()),
            metadata: parse_metadata(metadata.as_deref()),
        })
    }

    /// `tags` as stored: a JSON array, or NULL when there are none.
    pub fn tags_json(&self) -> Option<String> {
        (!self.tags.is_empty()).then(|| serde_json::Value::from(self.tags.clone()).to_string())
    }

    /// `metadata` as stored: a JSON object, or NULL when empty.
    pub fn metadata_json(&self) -> Option<String> {
        (!self.metadata.is_empty())
            .then(|| serde_json::Value::Object(self.metadata.clone()).to_string())
    }
}

/// Tags from the stored text: a JSON array of strings, or (as some older files hold) a comma list.
pub fn parse_tags(text: Option<&str>) -> Vec<String> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Vec::new();
    };
    match serde_json::from_str::<Vec<serde_json::Value>>(text) {
        Ok(values) => values
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        Err(_) => text
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
    }
}

/// Metadata from the stored text: a JSON object; anything else is kept under `"value"`.
pub fn parse_metadata(text: Option<&str>) -> serde_json::Map<String, serde_json::Value> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return serde_json::Map::new();
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(other) => serde_json::Map::from_iter([("value".to_string(), other)]),
        Err(_) => serde_json::Map::from_iter([("value".to_string(), text.into())]),
    }
}

/// Which rows `list` wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these stored statuses; empty means `reserved` and `in-use`.
    pub statuses: Vec<Status>,
    /// Only this project.
    pub project: Option<String>,
    /// Only rows carrying this tag.
    pub tag: Option<String>,
    /// Only these ports.
    pub ports: Vec<Port>,
}

/// The row for `port`, whatever its status.
pub fn get(conn: &Connection, port: Port) -> Result<Option<Reservation>> {
    let sql = format!("SELECT {COLUMNS} FROM ports WHERE number = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([port], Reservation::from_row)
        .optional()?)
}

/// Rows matching `filter`, by port.
pub fn list(conn: &Connection, filter: &Filter) -> Result<Vec<Reservation>> {
    let mut sql = format!("SELECT {COLUMNS} FROM ports WHERE 1=1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let statuses: Vec<Status> = if filter.statuses.is_empty() {
        vec![Status::Reserved, Status::InUse]
    } else {
        filter.statuses.clone()
    };
    sql.push_str(" AND status IN (");
    for (i, s) in statuses.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('?');
        args.push(s.as_str().to_string().into());
    }
    sql.push(')');
    if let Some(project) = &filter.project {
        sql.push_str(" AND projectName = ?");
        args.push(project.clone().into());
    }
    if let Some(tag) = &filter.tag {
        sql.push_str(
            " AND json_valid(tags) AND EXISTS (SELECT 1 FROM json_each(ports.tags) WHERE value = ?)",
        );
        args.push(tag.clone().into());
    }
    if !filter.ports.is_empty() {
        sql.push_str(" AND number IN (");
        for (i, p) in filter.ports.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('?');
            args.push(i64::from(p.get()).into());
        }
        sql.push(')');
    }
    sql.push_str(" ORDER BY number");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), Reservation::from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Every held port (`reserved` or `in-use`), for allocation and snapshots.
pub fn held_ports(conn: &Connection) -> Result<Vec<Port>> {
    let mut stmt =
        conn.prepare_cached("SELECT number FROM ports WHERE status != 'free' ORDER BY number")?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    let mut ports = Vec::new();
    for n in rows {
        if let Some(p) = Port::new(n?) {
            ports.push(p);
        }
    }
    Ok(ports)
}

/// Writes a reservation: inserts the row, or turns an existing (free, or same-project) row into it.
/// The caller has checked that nobody else holds the port. Status changes on an existing row are
/// recorded by the `track_port_changes` trigger; a brand-new row gets its `reserved` history row
/// from the caller, because the trigger only fires on UPDATE.
pub fn upsert(conn: &Connection, r: &Reservation) -> Result<Upserted> {
    let existed = get(conn, r.number)?.is_some();
    // On conflict this is an UPDATE, so the documented triggers fire (and set `updatedAt`).
    conn.prepare_cached(
        "INSERT INTO ports (number, projectName, description, status, pid, processName,
             reservedAt, lastSeenAt, updatedAt, autoRelease, tags, metadata)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (number) DO UPDATE SET projectName = excluded.projectName,
             description = excluded.description, status = excluded.status, pid = excluded.pid,
             processName = excluded.processName, reservedAt = excluded.reservedAt,
             lastSeenAt = excluded.lastSeenAt, autoRelease = excluded.autoRelease,
             tags = excluded.tags, metadata = excluded.metadata",
    )?
    .execute(params![
        r.number,
        r.project_name,
        r.description,
        r.status.as_str(),
        r.pid,
        r.process_name,
        r.reserved_at,
        r.last_seen_at,
        r.updated_at,
        r.auto_release,
        r.tags_json(),
        r.metadata_json(),
    ])?;
    Ok(if existed {
        Upserted::Updated
    } else {
        Upserted::Inserted
    })
}

/// Whether [`upsert`] created the row or changed an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new row.
    Inserted,
    /// An existing row was overwritten.
    Updated,
}

/// Sets a row's status and the process seen on it. `seen_at` updates `lastSeenAt` when given.
pub fn set_observed(
    conn: &Connection,
    port: Port,
    status: Status,
    pid: Option<u32>,
    process: Option<&str>,
    seen_at: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE ports SET status = ?2, pid = ?3, processName = ?4,
             lastSeenAt = coalesce(?5, lastSeenAt)
         WHERE number = ?1",
    )?
    .execute(params![port, status.as_str(), pid, process, seen_at])?;
    Ok(())
}

/// Releases a port: status `free`, no process. The trigger records `released`.
pub fn release(conn: &Connection, port: Port) -> Result<()> {
    conn.prepare_cached(
        "UPDATE ports SET status = 'free', pid = NULL, processName = NULL WHERE number = ?1",
    )?
    .execute([port])?;
    Ok(())
}
