//! Backup, restore and reset: the operations that must never lose data.
//!
//! * **Backup** copies a live database (WAL and all, without stopping anyone) with `VACUUM INTO` into a
//!   hidden 0600 file beside the destination, checks the copy (`quick_check`, our `application_id`),
//!   flushes it and only then renames it into place, refusing to replace anything. A crash leaves at
//!   most a hidden partial file, which the next backup removes once its writer is gone.
//! * **Restore** validates the artefact read-only first (header, size, `quick_check`,
//!   `application_id`, schema not newer than this build, no migration drift), takes the instance
//!   lock, refuses to replace data without `--force`, copies and migrates a temporary file, and
//!   swaps it in with one rename. Every refusal and failure happens before the live file is touched.
//! * **Reset** removes the database, `-wal` and `-shm` and nothing else, only after checking the
//!   SQLite header (a mistyped path never deletes a document) and the `application_id` (nor another
//!   tool's database), under the instance lock; without `confirm` it only says what it would remove.
//!   The `.lock` file stays: a process may hold it open, and deleting it would let a second holder
//!   lock a new file of the same name while the first still believes it is alone.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::error::{Error, Result};
use crate::fsys::{self, Header};
use crate::lock::InstanceLock;
use crate::maintenance::truncate_wal;
use crate::migrate::{self, Identity, Inspection};
use crate::schema;
use crate::store::{Access, IfMissing, OpenConfig, Store, connect, missing_database};
use crate::tool::Tool;

/// What a backup wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The database that was copied.
    pub source: PathBuf,
    /// The backup file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The schema version it holds.
    pub schema_version: Option<i64>,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The live database that now holds the restored data.
    pub path: PathBuf,
    /// The backup it came from.
    pub from: PathBuf,
    /// The schema version of the backup.
    pub backup_schema_version: Option<i64>,
    /// The schema version after migrating it.
    pub schema_version: Option<i64>,
    /// Migrations applied to bring the backup up to date.
    pub migrations_applied: Vec<i64>,
    /// Whether an existing database was replaced.
    pub replaced: bool,
}

/// What a reset removed, or would remove.
#[derive(Debug, Clone, Serialize)]
pub struct ResetReport {
    /// The database.
    pub path: PathBuf,
    /// True when nothing was removed because `confirm` was not given.
    pub dry_run: bool,
    /// The files removed (or that would be).
    pub files: Vec<PathBuf>,
}

impl Store {
    /// Writes a verified copy of this database to `out` (a file that must not exist, or a directory,
    /// in which case the file is named `<tool>-<UTC timestamp>.db`).
    pub fn backup_to(&self, out: &Path) -> Result<BackupReport> {
        // `--out dir/` and an existing directory both mean "a new file in that directory".
        let into_directory = out.as_os_str().as_encoded_bytes().ends_with(b"/") || out.is_dir();
        let out = std::path::absolute(out).map_err(|e| Error::io("resolve", out, e))?;
        let (dir, target) = if into_directory {
            let stamp = OffsetDateTime::now_utc()
                .format(format_description!(
                    "[year][month][day]T[hour][minute][second]Z"
                ))
                .unwrap_or_else(|_| "backup".to_string());
            let target = out.join(format!("{}-{stamp}.db", self.tool().name));
            (out, target)
        } else {
            (fsys::parent_dir(&out).to_path_buf(), out)
        };
        if !dir.is_dir() {
            return Err(Error::NotFound {
                what: "backup directory",
                path: dir,
                hint: "create it first, or choose another --out".to_string(),
            });
        }
        if fs::symlink_metadata(&target).is_ok() {
            return Err(Error::TargetExists {
                path: target,
                hint: "backups never overwrite; choose a new file name or a directory",
            });
        }
        fsys::remove_stale_siblings(&target, "partial");
        let temp = fsys::temp_sibling(&target, "partial");
        fsys::remove_temp_database(&temp);
        fsys::create_private_file(&temp)?;

        let result = (|| {
            vacuum_into(self.connection(), &temp).map_err(|e| self.error(e))?;
            let copy = verify_copy(self.tool(), &temp)?;
            fsys::fsync_file(&temp)?;
            fsys::rename_no_replace(&temp, &target).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Error::TargetExists {
                        path: target.clone(),
                        hint: "it appeared while the backup ran; nothing was overwritten",
                    }
                } else {
                    Error::io("move the backup into place at", &target, e)
                }
            })?;
            fsys::fsync_dir(&dir)?;
            Ok(copy.version())
        })();
        match result {
            Ok(schema_version) => Ok(BackupReport {
                source: self.path().to_path_buf(),
                bytes: fsys::file_len(&target),
                path: target,
                schema_version,
            }),
            Err(e) => {
                fsys::remove_temp_database(&temp);
                Err(e)
            }
        }
    }
}

/// Backs up the tool's existing database to `out`. See [`Store::backup_to`].
pub fn backup(tool: &Tool, config: &OpenConfig, out: &Path) -> Result<BackupReport> {
    Store::open_existing(tool, config, Access::ReadOnly)?.backup_to(out)
}

/// Replaces the tool's database with the backup at `input`, migrated to this build's schema.
pub fn restore(
    tool: &Tool,
    config: &OpenConfig,
    input: &Path,
    force: bool,
) -> Result<RestoreReport> {
    let input = std::path::absolute(input).map_err(|e| Error::io("resolve", input, e))?;
    if !input.is_file() {
        return Err(Error::NotFound {
            what: "backup file",
            path: input,
            hint: "check the path given to --in".to_string(),
        });
    }
    let artefact = validate_artefact(tool, &input)?;

    let live = config.path().to_path_buf();
    let dir = fsys::parent_dir(&live).to_path_buf();
    if !config.allow_unsupported_fs {
        fsys::check_filesystem(&dir, &tool.filesystem_opt_out_var())?;
    }
    fsys::ensure_private_dir(&dir)?;
    let _lock = InstanceLock::acquire(&live)?;
    let replaced = live.exists();
    if replaced {
        refuse_to_replace(tool, &live, force)?;
    }

    fsys::remove_stale_siblings(&live, "restore");
    let temp = fsys::temp_sibling(&live, "restore");
    fsys::remove_temp_database(&temp);
    let result = (|| {
        fsys::create_private_file(&temp)?;
        let source = connect(&input, Access::ReadOnly, config.busy_deadline)?;
        vacuum_into(&source, &temp).map_err(|e| Error::sqlite(&input, e))?;
        drop(source);

        let migrated = {
            let temp_config = OpenConfig {
                location: crate::Resolved {
                    path: temp.clone(),
                    origin: crate::Origin::Default,
                },
                if_missing: IfMissing::Fail,
                instance_lock: false,
                allow_unsupported_fs: true,
                busy_deadline: config.busy_deadline,
            };
            let store = Store::open(tool, &temp_config)?;
            // Leave a self-contained file: everything in the main file, no -wal to carry along.
            store.truncate_wal()?;
            store
                .read(|c| c.pragma_update_and_check(None, "journal_mode", "DELETE", |_| Ok(())))
                .map_err(|e| Error::sqlite(&temp, e))?;
            (store.schema_version()?, store.migrations_applied().to_vec())
        };
        fsys::fsync_file(&temp)?;

        if replaced {
            // Fold the live WAL into the file it belongs to, so no stale frames outlive the swap.
            let conn = connect(&live, Access::ReadWrite, config.busy_deadline)?;
            truncate_wal(&conn).map_err(|e| Error::sqlite(&live, e))?;
        }
        fs::rename(&temp, &live)
            .map_err(|e| Error::io("move the restored database to", &live, e))?;
        for stale in &sqlite_files(&live)[1..] {
            fsys::remove_if_exists(stale)?;
        }
        fsys::fsync_dir(&dir)?;
        Ok(migrated)
    })();
    match result {
        Ok((schema_version, migrations_applied)) => Ok(RestoreReport {
            path: live,
            from: input,
            backup_schema_version: artefact.version(),
            schema_version,
            migrations_applied,
            replaced,
        }),
        Err(e) => {
            fsys::remove_temp_database(&temp);
            Err(e)
        }
    }
}

/// Removes the tool's database files, or with `confirm == false` only lists them.
pub fn reset(tool: &Tool, config: &OpenConfig, confirm: bool) -> Result<ResetReport> {
    let path = config.path().to_path_buf();
    if !path.exists() {
        return Err(missing_database(tool, config, "Nothing to reset."));
    }
    match fsys::read_header(&path)? {
        Header::Other(detail) => {
            return Err(Error::NotSqlite {
                path,
                detail,
                hint: "reset only removes SQLite databases; check the path. Nothing was removed",
            });
        }
        Header::Sqlite { application_id, .. }
            if application_id != 0 && application_id != tool.application_id =>
        {
            return Err(Error::ForeignDatabase {
                tool: tool.name,
                path,
                found: application_id,
                expected: tool.application_id,
            });
        }
        _ => {}
    }
    // The lock file goes too (the seed's `reset` wipes `state.db.lock`); it is removed while held,
    // so no server can start on the half-removed database in between.
    let files: Vec<PathBuf> = sqlite_files(&path)
        .into_iter()
        .chain([InstanceLock::path_for(&path)])
        .filter(|p| p.exists())
        .collect();
    if !confirm {
        InstanceLock::ensure_free(&path)?;
        return Ok(ResetReport {
            path,
            dry_run: true,
            files,
        });
    }
    let lock = InstanceLock::acquire(&path)?;
    for file in &files {
        fsys::remove_if_exists(file)?;
    }
    drop(lock);
    fsys::fsync_dir(fsys::parent_dir(&path))?;
    Ok(ResetReport {
        path,
        dry_run: false,
        files,
    })
}

/// A database and its companions: `[db, db-wal, db-shm]`.
fn sqlite_files(db: &Path) -> [PathBuf; 3] {
    [
        db.to_path_buf(),
        fsys::with_suffix(db, "-wal"),
        fsys::with_suffix(db, "-shm"),
    ]
}

/// Copies the database behind `conn` into the empty file `target` (consistent, WAL included).
fn vacuum_into(conn: &rusqlite::Connection, target: &Path) -> rusqlite::Result<()> {
    let target = target
        .to_str()
        .ok_or_else(|| rusqlite::Error::InvalidPath(target.to_path_buf()))?;
    conn.execute("VACUUM INTO ?1", [target])?;
    Ok(())
}

/// Runs `quick_check` and confirms a copy is ours; returns what it holds.
fn verify_copy(tool: &Tool, path: &Path) -> Result<Inspection> {
    let conn = connect(path, Access::ReadOnly, crate::DEFAULT_BUSY_DEADLINE)?;
    quick_check(&conn, path)?;
    let found = Inspection::read(&conn).map_err(|e| Error::sqlite(path, e))?;
    migrate::identify(tool, path, &found)?;
    Ok(found)
}

fn quick_check(conn: &rusqlite::Connection, path: &Path) -> Result<()> {
    let problems = (|| {
        let mut stmt = conn.prepare("PRAGMA quick_check(20)")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
    })()
    .map_err(|e| match Error::sqlite(path, e) {
        error if error.code() == "corrupt" => Error::Corrupt {
            path: path.to_path_buf(),
            problems: vec![error.to_string()],
        },
        error => error,
    })?;
    if problems.len() == 1 && problems[0] == "ok" {
        Ok(())
    } else {
        Err(Error::Corrupt {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// Checks, without changing anything, that `input` is a usable backup of this tool.
fn validate_artefact(tool: &Tool, input: &Path) -> Result<Inspection> {
    const HINT: &str = "choose a file written by `db backup`; nothing was changed";
    match fsys::read_header(input)? {
        Header::Empty => {
            return Err(Error::NotSqlite {
                path: input.to_path_buf(),
                detail: "the file is empty".to_string(),
                hint: HINT,
            });
        }
        Header::Other(detail) => {
            return Err(Error::NotSqlite {
                path: input.to_path_buf(),
                detail,
                hint: HINT,
            });
        }
        Header::Sqlite {
            len,
            declared: Some((page_size, pages)),
            ..
        } if page_size * pages > len => {
            return Err(Error::Corrupt {
                path: input.to_path_buf(),
                problems: vec![format!(
                    "truncated: its header declares {} bytes but the file has {len}",
                    page_size * pages
                )],
            });
        }
        Header::Sqlite { .. } => {}
    }
    let conn = connect(input, Access::ReadOnly, crate::DEFAULT_BUSY_DEADLINE)?;
    quick_check(&conn, input)?;
    let found = Inspection::read(&conn).map_err(|e| Error::sqlite(input, e))?;
    match migrate::identify(tool, input, &found)? {
        Identity::Fresh => {
            return Err(Error::ForeignDatabase {
                tool: tool.name,
                path: input.to_path_buf(),
                found: found.application_id,
                expected: tool.application_id,
            });
        }
        Identity::Ours | Identity::Legacy => {}
    }
    migrate::pending(tool, input, &found, &migrate::embedded(tool))?;
    Ok(found)
}

/// Refuses to replace a live file that is not ours, and one holding data unless forced.
fn refuse_to_replace(tool: &Tool, live: &Path, force: bool) -> Result<()> {
    match fsys::read_header(live)? {
        Header::Empty => return Ok(()),
        Header::Other(detail) => {
            return Err(Error::NotSqlite {
                path: live.to_path_buf(),
                detail,
                hint: "refusing to replace a file that is not a database; move it away first",
            });
        }
        Header::Sqlite { .. } => {}
    }
    let conn = connect(live, Access::ReadOnly, crate::DEFAULT_BUSY_DEADLINE)?;
    let found = Inspection::read(&conn).map_err(|e| Error::sqlite(live, e))?;
    migrate::identify(tool, live, &found)?;
    if force {
        return Ok(());
    }
    let seeded = migrate::seeded_row_counts(tool, found.version()).unwrap_or_default();
    let holding = tables_with_data(&conn, &seeded).map_err(|e| Error::sqlite(live, e))?;
    if holding.is_empty() {
        Ok(())
    } else {
        Err(Error::NotEmpty {
            path: live.to_path_buf(),
            detail: format!("rows in {}", holding.join(", ")),
        })
    }
}

/// User tables (not SQLite's, not the migration history) holding more rows than the migrations
/// seed into a fresh database.
fn tables_with_data(
    conn: &rusqlite::Connection,
    seeded: &[(String, i64)],
) -> rusqlite::Result<Vec<String>> {
    let mut holding = Vec::new();
    for name in schema::user_tables(conn)? {
        let seeded = seeded
            .iter()
            .find(|(table, _)| *table == name)
            .map_or(0, |(_, n)| *n);
        // Count no further than needed to know the table holds more than its seed.
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM {} LIMIT ?1)",
            schema::quote_ident(&name)
        );
        let rows: i64 = conn.query_row(&sql, [seeded + 1], |r| r.get(0))?;
        if rows > seeded {
            holding.push(name);
        }
    }
    Ok(holding)
}
