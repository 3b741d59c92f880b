//! Reading the original Port Keeper's database, `~/.portmanager/ports.db`, for `portman import`.
//!
//! The original never created the documented schema: it kept `ports(number, project_name,
//! description, status, pid, reserved_at, last_used, auto_release)` and one row per tag in
//! `tags(port_number, tag)`, with ISO 8601 timestamps. We open such a file read-only (never through
//! the store, so it is not migrated or stamped) and turn its rows into [`Reservation`]s. A database
//! in the documented schema (another machine's `portman` database) is read the same way.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::port::Port;
use crate::ports::{self, Reservation, Status};
use crate::timestamp;
use crate::transfer::{Parsed, Source};

/// Where the original Port Keeper kept its database, relative to the home directory.
pub const ORIGINAL_DATABASE: &str = ".portmanager/ports.db";

/// Reads every reservation from an SQLite file made by the original Port Keeper or by portman.
pub fn read_database(path: &Path) -> Result<Parsed> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::InvalidData(format!("cannot open {} as SQLite: {e}", path.display())))?;
    let columns = column_names(&conn, "ports")?;
    let bad = |e: rusqlite::Error| {
        Error::InvalidData(format!("cannot read ports from {}: {e}", path.display()))
    };
    if columns.iter().any(|c| c == "projectName") {
        let sql = format!("SELECT {} FROM ports ORDER BY number", ports::COLUMNS);
        let mut stmt = conn.prepare(&sql).map_err(bad)?;
        let rows = stmt
            .query_map([], Reservation::from_row)
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(bad)?;
        return Ok(Parsed {
            source: Source::PortmanDatabase,
            version: None,
            checksum: None,
            rows: rows.into_iter().filter(|r| r.status.is_held()).collect(),
        });
    }
    if !columns.iter().any(|c| c == "project_name") {
        return Err(Error::InvalidData(format!(
            "{} has no Port Keeper `ports` table (neither the original's nor the documented one)",
            path.display()
        )));
    }
    let mut tags: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    if !column_names(&conn, "tags")?.is_empty() {
        let mut stmt = conn
            .prepare("SELECT port_number, tag FROM tags ORDER BY id")
            .map_err(bad)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(bad)?;
        for row in rows {
            let (port, tag) = row.map_err(bad)?;
            tags.entry(port).or_default().push(tag);
        }
    }
    let mut stmt = conn
        .prepare(
            "SELECT number, project_name, description, status, pid, reserved_at, last_used,
                    auto_release
             FROM ports ORDER BY number",
        )
        .map_err(bad)?;
    let raw = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<i64>>(7)?,
            ))
        })
        .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(bad)?;
    let mut rows = Vec::new();
    for (number, project, description, status, pid, reserved_at, last_used, auto_release) in raw {
        let port = Port::new(number).ok_or_else(|| {
            Error::InvalidData(format!("{}: port {number} is out of range", path.display()))
        })?;
        let status: Status = status.parse().unwrap_or(Status::Reserved);
        if !status.is_held() {
            continue;
        }
        let reserved_at = reserved_at
            .as_deref()
            .and_then(timestamp::normalise)
            .unwrap_or_else(timestamp::now);
        rows.push(Reservation {
            number: port,
            project_name: project,
            description,
            // The original's stored statuses were stale; the next observation sets the truth.
            status: Status::Reserved,
            pid: pid.and_then(|p| u32::try_from(p).ok()),
            process_name: None,
            updated_at: reserved_at.clone(),
            reserved_at,
            last_seen_at: last_used.as_deref().and_then(timestamp::normalise),
            auto_release: auto_release.unwrap_or(0) != 0,
            tags: tags.remove(&number).unwrap_or_default(),
            metadata: serde_json::Map::new(),
        });
    }
    Ok(Parsed {
        source: Source::OriginalDatabase,
        version: None,
        checksum: None,
        rows,
    })
}

fn column_names(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info(?1)")
        .map_err(|e| Error::InvalidData(format!("not a readable SQLite database: {e}")))?;
    let names = stmt
        .query_map([table], |r| r.get::<_, String>(0))
        .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| Error::InvalidData(format!("not a readable SQLite database: {e}")))?;
    Ok(names)
}
