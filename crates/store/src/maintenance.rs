//! Keeping a database healthy: integrity checks, reclaiming free pages, refreshing planner statistics.
//!
//! Files are created with `auto_vacuum=INCREMENTAL`, so pages freed by deletes can be handed back to
//! the filesystem without rewriting the whole file: [`Store::reclaim`] steps `incremental_vacuum` in
//! bounded immediate transactions (so it never blocks other writers for long) and then truncates the
//! WAL, which is when the file really shrinks. `vacuum --full` rewrites the file and also switches an
//! old file (made before auto_vacuum was set) to incremental mode.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::error::Result;
use crate::fsys;
use crate::store::{Access, OpenConfig, Store};
use crate::tool::Tool;

/// Pages freed per immediate transaction while reclaiming.
const RECLAIM_STEP: u32 = 2048;

/// The result of `check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The database.
    pub path: PathBuf,
    /// True when both checks found nothing.
    pub ok: bool,
    /// What `PRAGMA integrity_check` reported (`["ok"]` when healthy).
    pub integrity: Vec<String>,
    /// Rows whose foreign keys point at nothing.
    pub foreign_key_violations: Vec<ForeignKeyViolation>,
}

/// One row of `PRAGMA foreign_key_check`.
#[derive(Debug, Clone, Serialize)]
pub struct ForeignKeyViolation {
    /// The table holding the row.
    pub table: String,
    /// The row.
    pub rowid: Option<i64>,
    /// The table it should reference.
    pub parent: String,
}

/// How `vacuum` ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VacuumMode {
    /// `incremental_vacuum` stepped to completion.
    Incremental,
    /// A full `VACUUM`.
    Full,
}

/// The result of `vacuum` (and of the reclaim after a prune).
#[derive(Debug, Clone, Serialize)]
pub struct VacuumReport {
    /// The database.
    pub path: PathBuf,
    /// How it ran.
    pub mode: VacuumMode,
    /// Database plus WAL size before.
    pub bytes_before: u64,
    /// Database plus WAL size after.
    pub bytes_after: u64,
    /// Free pages handed back.
    pub pages_freed: u64,
    /// A remark for the user, e.g. that the file cannot vacuum incrementally.
    pub note: Option<String>,
}

/// The result of `optimize`.
#[derive(Debug, Clone, Serialize)]
pub struct OptimizeReport {
    /// The database.
    pub path: PathBuf,
    /// Tables with planner statistics afterwards.
    pub tables_analyzed: u64,
    /// How long it took.
    pub elapsed_ms: u64,
}

impl Store {
    /// Runs `integrity_check` and `foreign_key_check`.
    pub fn check(&self) -> Result<CheckReport> {
        let conn = self.connection();
        let integrity = (|| {
            let mut stmt = conn.prepare("PRAGMA integrity_check(100)")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(|e| self.error(e))?;
        let foreign_key_violations = (|| {
            let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
            let rows = stmt.query_map([], |r| {
                Ok(ForeignKeyViolation {
                    table: r.get(0)?,
                    rowid: r.get(1)?,
                    parent: r.get(2)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(|e| self.error(e))?;
        Ok(CheckReport {
            path: self.path().to_path_buf(),
            ok: integrity == ["ok"] && foreign_key_violations.is_empty(),
            integrity,
            foreign_key_violations,
        })
    }

    /// Hands free pages back to the filesystem: `incremental_vacuum` in bounded immediate
    /// transactions, then a WAL truncation. Returns the number of pages freed.
    pub fn reclaim(&self) -> Result<u64> {
        let mut freed = 0;
        loop {
            let (before, after) = self.write(|tx| reclaim_step(tx).map_err(|e| self.error(e)))?;
            freed += before.saturating_sub(after);
            if after == 0 || after >= before {
                break;
            }
        }
        self.truncate_wal()?;
        Ok(freed)
    }

    /// Reclaims free pages (`full == false`) or rewrites the whole file.
    pub fn vacuum(&self, full: bool) -> Result<VacuumReport> {
        let bytes_before = self.bytes_on_disk();
        let conn = self.connection();
        let auto_vacuum: i64 = conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .map_err(|e| self.error(e))?;
        let (mode, pages_freed, note) = if full {
            let free = freelist_count(conn).map_err(|e| self.error(e))?;
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .and_then(|()| conn.execute_batch("VACUUM"))
                .map_err(|e| self.error(e))?;
            self.truncate_wal()?;
            (VacuumMode::Full, free, None)
        } else if auto_vacuum != 2 {
            let note = "this file was created without incremental auto-vacuum, so free pages \
                        cannot be reclaimed in place; run `db vacuum --full` once to convert it";
            (VacuumMode::Incremental, 0, Some(note.to_string()))
        } else {
            (VacuumMode::Incremental, self.reclaim()?, None)
        };
        Ok(VacuumReport {
            path: self.path().to_path_buf(),
            mode,
            bytes_before,
            bytes_after: self.bytes_on_disk(),
            pages_freed,
            note,
        })
    }

    /// Refreshes the query planner's statistics (`ANALYZE`, then `PRAGMA optimize`).
    pub fn optimize(&self) -> Result<OptimizeReport> {
        let started = Instant::now();
        let conn = self.connection();
        conn.execute_batch("ANALYZE; PRAGMA optimize;")
            .map_err(|e| self.error(e))?;
        let tables_analyzed = conn
            .query_row("SELECT count(DISTINCT tbl) FROM sqlite_stat1", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_or(0, |n| n.unsigned_abs());
        Ok(OptimizeReport {
            path: self.path().to_path_buf(),
            tables_analyzed,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The database file plus its WAL, in bytes.
    pub fn bytes_on_disk(&self) -> u64 {
        fsys::file_len(self.path()) + fsys::file_len(&fsys::with_suffix(self.path(), "-wal"))
    }

    /// Checkpoints the WAL into the database and truncates it. Readers still in an older snapshot
    /// make this partial; that is not an error.
    pub fn truncate_wal(&self) -> Result<()> {
        truncate_wal(self.connection()).map_err(|e| self.error(e))
    }
}

/// `PRAGMA wal_checkpoint(TRUNCATE)` on any connection. See [`Store::truncate_wal`].
pub(crate) fn truncate_wal(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
}

fn freelist_count(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    conn.pragma_query_value(None, "freelist_count", |r| r.get::<_, i64>(0))
        .map(i64::unsigned_abs)
}

/// Frees up to [`RECLAIM_STEP`] pages; returns the free-list length before and after.
fn reclaim_step(tx: &rusqlite::Connection) -> rusqlite::Result<(u64, u64)> {
    let before = freelist_count(tx)?;
    let mut stmt = tx.prepare(&format!("PRAGMA incremental_vacuum({RECLAIM_STEP})"))?;
    let mut rows = stmt.query([])?;
    // Each step of the statement frees one page; run it to the end.
    while rows.next()?.is_some() {}
    drop(rows);
    drop(stmt);
    Ok((before, freelist_count(tx)?))
}

/// Checks the tool's existing database (read-only).
pub fn check(tool: &Tool, config: &OpenConfig) -> Result<CheckReport> {
    Store::open_existing(tool, config, Access::ReadOnly)?.check()
}

/// Vacuums the tool's existing database.
pub fn vacuum(tool: &Tool, config: &OpenConfig, full: bool) -> Result<VacuumReport> {
    Store::open_existing(tool, config, Access::ReadWrite)?.vacuum(full)
}

/// Optimizes the tool's existing database.
pub fn optimize(tool: &Tool, config: &OpenConfig) -> Result<OptimizeReport> {
    Store::open_existing(tool, config, Access::ReadWrite)?.optimize()
}
