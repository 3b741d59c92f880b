//! Schema migrations: reading what a file has applied, refusing what we must not touch, and
//! applying the rest with refinery inside one `BEGIN IMMEDIATE` transaction.
//!
//! Before anything writes, we read the file's identity (`application_id`, whether it has tables) and
//! refinery's history table ourselves, and refuse, untouched, a schema newer than this binary (exit
//! 78), an applied migration whose checksum differs from the embedded one (drift), or another tool's
//! file. Then the pending migrations run through refinery's own runner, but on a connection wrapper
//! whose "transactions" are statements of our one immediate transaction: re-checking the history,
//! applying every pending migration and recording each happen atomically and under SQLite's write
//! lock, so two processes opening a fresh database at once cannot both migrate it, and a crash never
//! leaves a migration applied but unrecorded. (refinery's stock rusqlite driver uses deferred
//! transactions and, ungrouped, commits a migration and its history row separately.)

use std::path::Path;

use refinery::{Migration, Runner, Target};
use refinery_core::traits::sync::{Migrate, Query, Transaction};
use rusqlite::Connection;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Result};
use crate::schema;
use crate::tool::Tool;

/// refinery's history table.
pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// A row of the history table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedMigration {
    /// Migration version.
    pub version: i64,
    /// Migration name.
    pub name: String,
    /// When it was applied (RFC 3339, as refinery records it).
    pub applied_on: String,
    /// refinery's checksum, as recorded.
    pub checksum: String,
}

/// What a database file is, read without changing it.
#[derive(Debug, Clone)]
pub(crate) struct Inspection {
    pub application_id: i32,
    /// Whether it has any table besides the history table.
    pub has_tables: bool,
    pub has_history: bool,
    pub applied: Vec<AppliedMigration>,
}

impl Inspection {
    pub fn read(conn: &Connection) -> rusqlite::Result<Inspection> {
        let application_id = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
        let has_tables = !schema::user_tables(conn)?.is_empty();
        let has_history = schema::has_table(conn, HISTORY_TABLE)?;
        let applied = if has_history {
            read_history(conn)?
        } else {
            Vec::new()
        };
        Ok(Inspection {
            application_id,
            has_tables,
            has_history,
            applied,
        })
    }

    /// The newest applied migration.
    pub fn version(&self) -> Option<i64> {
        self.applied.iter().map(|m| m.version).max()
    }
}

/// Reads the history table, tolerating any stored types (refinery itself panics on odd rows).
fn read_history(conn: &Connection) -> rusqlite::Result<Vec<AppliedMigration>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT CAST(version AS INTEGER), CAST(name AS TEXT), CAST(applied_on AS TEXT),
                CAST(checksum AS TEXT) FROM {HISTORY_TABLE} ORDER BY version"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(AppliedMigration {
            version: r.get::<_, Option<i64>>(0)?.unwrap_or(0),
            name: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            applied_on: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            checksum: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        })
    })?;
    rows.collect()
}

/// How a file relates to the tool opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identity {
    /// Our application id, or history that our checks will vouch for.
    Ours,
    /// No tables at all: a new database.
    Fresh,
    /// Tables but no application id and no history: made by the original system.
    Legacy,
}

/// Decides whose file this is, refusing other tools' files.
pub(crate) fn identify(tool: &Tool, path: &Path, found: &Inspection) -> Result<Identity> {
    let foreign = || Error::ForeignDatabase {
        tool: tool.name,
        path: path.to_path_buf(),
        found: found.application_id,
        expected: tool.application_id,
    };
    match found.application_id {
        id if id == tool.application_id => Ok(Identity::Ours),
        0 if found.has_history => Ok(Identity::Ours),
        0 if !found.has_tables => Ok(Identity::Fresh),
        0 if tool.adopt.is_some() => Ok(Identity::Legacy),
        _ => Err(foreign()),
    }
}

/// The embedded migrations, sorted by version.
pub(crate) fn embedded(tool: &Tool) -> Vec<Migration> {
    let mut migrations = (tool.migrations)().get_migrations().clone();
    migrations.sort();
    migrations
}

/// The newest of the embedded migrations (0 when there are none).
pub(crate) fn newest(embedded: &[Migration]) -> i64 {
    embedded
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// Refuses a newer schema and drifted history; returns the versions still to apply.
pub(crate) fn pending(
    tool: &Tool,
    path: &Path,
    found: &Inspection,
    embedded: &[Migration],
) -> Result<Vec<i64>> {
    let target = newest(embedded);
    let current = found.version().unwrap_or(0);
    if current > target {
        return Err(Error::SchemaTooNew {
            tool: tool.name,
            path: path.to_path_buf(),
            on_disk: current,
            target,
        });
    }
    let drift = |applied: &AppliedMigration, detail: String| Error::MigrationDrift {
        tool: tool.name,
        path: path.to_path_buf(),
        version: applied.version,
        name: applied.name.clone(),
        detail,
    };
    for applied in &found.applied {
        match embedded
            .iter()
            .find(|m| i64::from(m.version()) == applied.version)
        {
            None => {
                return Err(drift(applied, "which this build does not have".to_string()));
            }
            Some(m) if m.name() != applied.name => {
                return Err(drift(
                    applied,
                    format!("but this build calls it V{}__{}", m.version(), m.name()),
                ));
            }
            Some(m) if applied.checksum != m.checksum().to_string() => {
                return Err(drift(
                    applied,
                    format!(
                        "with checksum {} but this build's has checksum {}",
                        applied.checksum,
                        m.checksum()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let pending: Vec<i64> = embedded
        .iter()
        .map(|m| i64::from(m.version()))
        .filter(|v| !found.applied.iter().any(|a| a.version == *v))
        .collect();
    if let Some(skipped) = pending.iter().find(|v| **v < current) {
        let newest = found
            .applied
            .iter()
            .find(|a| a.version == current)
            .cloned()
            .unwrap_or_else(|| AppliedMigration {
                version: current,
                name: String::new(),
                applied_on: String::new(),
                checksum: String::new(),
            });
        return Err(drift(
            &newest,
            format!("but not V{skipped}, which this build places before it"),
        ));
    }
    Ok(pending)
}

/// Brings the file to the latest schema. Must run inside our `BEGIN IMMEDIATE` transaction on `conn`.
/// Returns the versions it applied (empty if another process got there first).
pub(crate) fn apply(tool: &Tool, path: &Path, conn: &Connection) -> Result<Vec<i64>> {
    let sqlite = |e| Error::sqlite(path, e);
    let found = Inspection::read(conn).map_err(sqlite)?;
    let identity = identify(tool, path, &found)?;
    let embedded = embedded(tool);
    let mut wrapper = InTransaction { conn };

    if identity == Identity::Legacy {
        let adopt = tool.adopt.ok_or_else(|| Error::ForeignDatabase {
            tool: tool.name,
            path: path.to_path_buf(),
            found: 0,
            expected: tool.application_id,
        })?;
        let Some(matches) = adopt(conn).map_err(sqlite)? else {
            return Err(Error::ForeignDatabase {
                tool: tool.name,
                path: path.to_path_buf(),
                found: 0,
                expected: tool.application_id,
            });
        };
        let version = i32::try_from(matches).unwrap_or(i32::MAX);
        Runner::new(&embedded)
            .set_grouped(true)
            .set_target(Target::FakeVersion(version))
            .run(&mut wrapper)
            .map_err(|e| migration_error(path, &e))?;
    }

    let found = Inspection::read(conn).map_err(sqlite)?;
    let todo = pending(tool, path, &found, &embedded)?;
    if !todo.is_empty() {
        Runner::new(&embedded)
            .set_grouped(true)
            .run(&mut wrapper)
            .map_err(|e| migration_error(path, &e))?;
    }
    if found.application_id != tool.application_id {
        conn.pragma_update(None, "application_id", tool.application_id)
            .map_err(sqlite)?;
    }
    Ok(todo)
}

/// Row counts of each table in a fresh in-memory database migrated to `version`: the rows the
/// migrations themselves seed, which do not make a database "hold data".
pub(crate) fn seeded_row_counts(
    tool: &Tool,
    version: Option<i64>,
) -> rusqlite::Result<Vec<(String, i64)>> {
    let Some(version) = version else {
        return Ok(Vec::new());
    };
    let conn = Connection::open_in_memory()?;
    let tx = rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
    let target = Target::Version(i32::try_from(version).unwrap_or(i32::MAX));
    // A failure here only means we cannot discount seeded rows; the caller then counts them all.
    if Runner::new(&embedded(tool))
        .set_grouped(true)
        .set_target(target)
        .run(&mut InTransaction { conn: &tx })
        .is_err()
    {
        return Ok(Vec::new());
    }
    let mut counts = Vec::new();
    for name in schema::user_tables(&tx)? {
        let sql = format!("SELECT count(*) FROM {}", schema::quote_ident(&name));
        let count = tx.query_row(&sql, [], |r| r.get(0))?;
        counts.push((name, count));
    }
    Ok(counts)
}

fn migration_error(path: &Path, error: &refinery::Error) -> Error {
    Error::Migration {
        path: path.to_path_buf(),
        detail: error.to_string(),
    }
}

/// A connection already inside our transaction, presented to refinery as its driver: refinery's
/// "transactions" become plain statements of the enclosing one.
struct InTransaction<'c> {
    conn: &'c Connection,
}

impl Transaction for InTransaction<'_> {
    type Error = rusqlite::Error;

    fn execute<'a, T: Iterator<Item = &'a str>>(&mut self, queries: T) -> rusqlite::Result<usize> {
        let mut count = 0;
        for query in queries {
            self.conn.execute_batch(query)?;
            count += 1;
        }
        Ok(count)
    }
}

impl Query<Vec<Migration>> for InTransaction<'_> {
    fn query(&mut self, query: &str) -> rusqlite::Result<Vec<Migration>> {
        let mut stmt = self.conn.prepare(query)?;
        let rows = stmt.query_map([], |r| {
            let version: i64 = r.get(0)?;
            let name: Option<String> = r.get(1)?;
            let applied_on: Option<String> = r.get(2)?;
            let checksum: Option<String> = r.get(3)?;
            Ok((version, name, applied_on, checksum))
        })?;
        let mut applied = Vec::new();
        for row in rows {
            let (version, name, applied_on, checksum) = row?;
            // Our own checks ran first and refused odd rows; these fallbacks only avoid panics.
            let applied_on = applied_on
                .and_then(|s| OffsetDateTime::parse(&s, &Rfc3339).ok())
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            applied.push(Migration::applied(
                i32::try_from(version).unwrap_or(i32::MAX),
                name.unwrap_or_default(),
                applied_on,
                checksum.and_then(|c| c.parse().ok()).unwrap_or(0),
            ));
        }
        Ok(applied)
    }
}

impl Migrate for InTransaction<'_> {}

/// The state of one migration, for `db migrate --status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    /// Applied, and identical to the embedded one.
    Applied,
    /// Embedded, not yet applied.
    Pending,
    /// Applied, but its name or checksum differs from the embedded one.
    Drifted,
    /// Applied, and unknown to this build (a newer binary applied it).
    Unknown,
}

/// One line of the migration status.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationEntry {
    /// Version.
    pub version: i64,
    /// Name.
    pub name: String,
    /// State.
    pub state: MigrationState,
    /// When it was applied.
    pub applied_on: Option<String>,
}

/// Where a database stands against this build's migrations.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationStatus {
    /// The newest applied migration (`None` for a database with no history).
    pub current_version: Option<i64>,
    /// The newest migration this build knows.
    pub target_version: i64,
    /// Every migration known to the file or to this build, by version.
    pub migrations: Vec<MigrationEntry>,
}

impl MigrationStatus {
    pub(crate) fn of(found: &Inspection, embedded: &[Migration]) -> MigrationStatus {
        let mut migrations: Vec<MigrationEntry> = found
            .applied
            .iter()
            .map(|a| {
                let state = match embedded
                    .iter()
                    .find(|m| i64::from(m.version()) == a.version)
                {
                    None => MigrationState::Unknown,
                    Some(m) if m.name() == a.name && m.checksum().to_string() == a.checksum => {
                        MigrationState::Applied
                    }
                    Some(_) => MigrationState::Drifted,
                };
                MigrationEntry {
                    version: a.version,
                    name: a.name.clone(),
                    state,
                    applied_on: Some(a.applied_on.clone()),
                }
            })
            .collect();
        for m in embedded {
            if !found
                .applied
                .iter()
                .any(|a| a.version == i64::from(m.version()))
            {
                migrations.push(MigrationEntry {
                    version: i64::from(m.version()),
                    name: m.name().to_string(),
                    state: MigrationState::Pending,
                    applied_on: None,
                });
            }
        }
        migrations.sort_by_key(|m| m.version);
        MigrationStatus {
            current_version: found.version(),
            target_version: newest(embedded),
            migrations,
        }
    }

    /// True when nothing is pending, drifted or unknown.
    pub fn is_current(&self) -> bool {
        self.migrations
            .iter()
            .all(|m| m.state == MigrationState::Applied)
    }
}
