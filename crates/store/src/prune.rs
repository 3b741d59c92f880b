//! Retention: deleting old rows from bounded tables (history, metrics, logs, audit) so that the file
//! actually shrinks.
//!
//! Rows go in batches, each its own short `BEGIN IMMEDIATE` transaction, so a prune of millions of
//! rows never holds the write lock for long and a crash loses at most the batch in flight (which
//! simply is not deleted). Afterwards the freed pages are handed back with [`Store::reclaim`].
//! Table and column names come from tool code, but are still checked against the schema and quoted.

use rusqlite::types::Value;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::schema;
use crate::store::Store;

/// Which rows a prune removes.
#[derive(Debug, Clone)]
pub enum Retain {
    /// Keep rows whose column is `>=` this value; delete the older ones. The value uses the
    /// table's own time encoding (unix seconds, RFC 3339 text, ...).
    Since(Value),
    /// Keep the newest N rows by the column (ties broken by rowid); delete the rest.
    Newest(u64),
}

/// A retention rule for one table.
#[derive(Debug, Clone)]
pub struct Prune<'a> {
    /// The table.
    pub table: &'a str,
    /// The column that orders rows by age.
    pub column: &'a str,
    /// What to keep.
    pub retain: Retain,
    /// Rows deleted per transaction.
    pub batch_size: u32,
}

/// What a prune did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// The table.
    pub table: String,
    /// Rows deleted, or that would be.
    pub rows: u64,
    /// True when nothing was deleted.
    pub dry_run: bool,
    /// Free pages handed back to the filesystem.
    pub pages_freed: u64,
    /// Database plus WAL size before.
    pub bytes_before: u64,
    /// Database plus WAL size after.
    pub bytes_after: u64,
}

impl<'a> Prune<'a> {
    /// Deletes rows of `table` whose `column` is older than `since`.
    pub fn older_than(table: &'a str, column: &'a str, since: impl Into<Value>) -> Prune<'a> {
        Prune {
            table,
            column,
            retain: Retain::Since(since.into()),
            batch_size: 5_000,
        }
    }

    /// Deletes all but the newest `keep` rows of `table`, by `column`.
    pub fn keep_newest(table: &'a str, column: &'a str, keep: u64) -> Prune<'a> {
        Prune {
            table,
            column,
            retain: Retain::Newest(keep),
            batch_size: 5_000,
        }
    }
}

impl Store {
    /// Applies a retention rule: counts only (`dry_run`), or deletes in batches and reclaims space.
    pub fn prune(&self, rule: &Prune<'_>, dry_run: bool) -> Result<PruneReport> {
        let (table, column) = self.checked_names(rule.table, rule.column)?;
        let bytes_before = self.bytes_on_disk();
        let sqlite = |e| self.error(e);
        let conn = self.connection();
        let matching = match &rule.retain {
            Retain::Since(value) => conn
                .query_row(
                    &format!("SELECT count(*) FROM {table} WHERE {column} < ?1"),
                    [value],
                    |r| r.get::<_, i64>(0),
                )
                .map(i64::unsigned_abs),
            Retain::Newest(keep) => conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n.unsigned_abs().saturating_sub(*keep)),
        }
        .map_err(sqlite)?;
        if dry_run {
            return Ok(PruneReport {
                table: rule.table.to_string(),
                rows: matching,
                dry_run: true,
                pages_freed: 0,
                bytes_before,
                bytes_after: bytes_before,
            });
        }

        let batch = i64::from(rule.batch_size.max(1));
        let delete = match &rule.retain {
            Retain::Since(_) => format!(
                "DELETE FROM {table} WHERE rowid IN
                   (SELECT rowid FROM {table} WHERE {column} < ?1 LIMIT ?2)"
            ),
            Retain::Newest(_) => format!(
                "DELETE FROM {table} WHERE rowid IN
                   (SELECT rowid FROM {table} ORDER BY {column} DESC, rowid DESC LIMIT ?2 OFFSET ?1)"
            ),
        };
        let bound: Value = match &rule.retain {
            Retain::Since(value) => value.clone(),
            Retain::Newest(keep) => Value::Integer(i64::try_from(*keep).unwrap_or(i64::MAX)),
        };
        let mut rows = 0u64;
        loop {
            let deleted = self.write(|tx| {
                tx.prepare_cached(&delete)
                    .and_then(|mut stmt| stmt.execute(rusqlite::params![bound, batch]))
                    .map_err(sqlite)
            })?;
            rows += deleted as u64;
            if (deleted as i64) < batch {
                break;
            }
        }
        let pages_freed = self.reclaim()?;
        Ok(PruneReport {
            table: rule.table.to_string(),
            rows,
            dry_run: false,
            pages_freed,
            bytes_before,
            bytes_after: self.bytes_on_disk(),
        })
    }

    /// Confirms `table` is a rowid table with `column`, and returns both quoted for SQL.
    fn checked_names(&self, table: &str, column: &str) -> Result<(String, String)> {
        let conn = self.connection();
        let invalid = |name: &str| Error::InvalidIdentifier {
            name: name.to_string(),
        };
        let sql: Option<String> = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .ok();
        match sql {
            Some(sql) if !sql.to_ascii_uppercase().contains("WITHOUT ROWID") => {}
            _ => return Err(invalid(table)),
        }
        let has_column: bool = conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
                [table, column],
                |r| r.get(0),
            )
            .map_err(|e| self.error(e))?;
        if !has_column {
            return Err(invalid(column));
        }
        Ok((schema::quote_ident(table), schema::quote_ident(column)))
    }
}
