//! Opening a tool's database and running transactions on it.
//!
//! [`Store::open`] is the one way every tool opens its file, in an order that matters: directory
//! 0700 and file 0600 before SQLite sees them; the filesystem check; the optional instance lock;
//! the header, identity and schema-version checks on a file we have not yet changed; then, for a new
//! file only, `auto_vacuum=INCREMENTAL` *before* WAL (afterwards it is silently ignored); then the
//! migrations, inside one immediate transaction.
//!
//! Writes go through [`Store::write`], which begins `IMMEDIATE` (a deferred transaction that reads
//! then writes fails at once with "database is locked", busy timeout or not) and waits for a busy
//! database up to a deadline before reporting "busy", never corruption.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{Error, Result, is_sqlite_busy};
use crate::fsys::{self, Header};
use crate::location::{Origin, Resolved};
use crate::lock::InstanceLock;
use crate::migrate::{self, Inspection, MigrationStatus};
use crate::tool::Tool;

/// How long writers wait for a busy database by default.
pub const DEFAULT_BUSY_DEADLINE: Duration = Duration::from_secs(10);

/// What to do when the database file does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// Create it (and its directory): a tool's normal first run.
    Create,
    /// Fail with "not found": admin commands, so a mistyped path never yields a new empty store.
    Fail,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct OpenConfig {
    /// The database file and where that path came from.
    pub location: Resolved,
    /// Create the file, or refuse when it is missing.
    pub if_missing: IfMissing,
    /// Hold `<db>.lock` exclusively while open (servers), refusing with exit 75 if someone has it.
    pub instance_lock: bool,
    /// Skip the filesystem check (see [`Tool::filesystem_opt_out_var`]).
    pub allow_unsupported_fs: bool,
    /// How long a writer waits for another writer before giving up with "busy".
    pub busy_deadline: Duration,
}

impl OpenConfig {
    /// Opens the database the tool's [`Location`](crate::Location) picks, given the value of its flag.
    pub fn resolve(tool: &Tool, flag_value: Option<&Path>) -> Result<OpenConfig> {
        Ok(OpenConfig::at(tool, tool.location.resolve(flag_value)?))
    }

    /// A configuration for a resolved location, with defaults: create if missing, no instance lock,
    /// the filesystem check on unless the tool's opt-out variable is set to a non-empty value other
    /// than `0`.
    pub fn at(tool: &Tool, location: Resolved) -> OpenConfig {
        let opt_out = std::env::var(tool.filesystem_opt_out_var())
            .map(|v| !v.is_empty() && v != "0")
            .unwrap_or(false);
        OpenConfig {
            location,
            if_missing: IfMissing::Create,
            instance_lock: false,
            allow_unsupported_fs: opt_out,
            busy_deadline: DEFAULT_BUSY_DEADLINE,
        }
    }

    /// A configuration for an explicit path (as if given by flag).
    pub fn for_path(tool: &Tool, path: impl Into<PathBuf>) -> OpenConfig {
        let path = path.into();
        let path = std::path::absolute(&path).unwrap_or(path);
        OpenConfig::at(
            tool,
            Resolved {
                path,
                origin: Origin::Flag(tool.location.flag),
            },
        )
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.location.path
    }
}

/// An open database of one tool.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    tool: Tool,
    busy_deadline: Duration,
    lock: Option<InstanceLock>,
    applied: Vec<i64>,
}

/// Whether a connection may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    ReadOnly,
    ReadWrite,
}

impl Store {
    /// Opens (creating if configured) the tool's database and brings its schema up to date.
    pub fn open(tool: &Tool, config: &OpenConfig) -> Result<Store> {
        let path = config.path().to_path_buf();
        let dir = fsys::parent_dir(&path).to_path_buf();
        let exists = path.exists();
        if !exists && config.if_missing == IfMissing::Fail {
            return Err(missing_database(tool, config, "Nothing was created."));
        }
        if !config.allow_unsupported_fs {
            fsys::check_filesystem(&dir, &tool.filesystem_opt_out_var())?;
        }
        fsys::ensure_private_dir(&dir)?;
        let lock = if config.instance_lock {
            Some(InstanceLock::acquire(&path)?)
        } else {
            None
        };
        fsys::create_private_file(&path)?;
        refuse_unless_sqlite(&path)?;

        let conn = connect(&path, Access::ReadWrite, config.busy_deadline)?;
        let sqlite = |e| Error::sqlite(&path, e);
        // Everything up to the migration transaction only reads, so refusals leave the file as it was.
        let found = Inspection::read(&conn).map_err(sqlite)?;
        let identity = migrate::identify(tool, &path, &found)?;
        if identity == migrate::Identity::Legacy {
            // Ask the adopter in a transaction that is rolled back, before anything else touches
            // the file: a database it does not recognise is refused byte for byte unchanged.
            recognised_by_adopter(tool, &path, &conn, &found)?;
        }
        let pending = migrate::pending(tool, &path, &found, &migrate::embedded(tool))?;

        let page_count: i64 = conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .map_err(sqlite)?;
        if page_count == 0 {
            // Only a brand-new file accepts auto_vacuum without a VACUUM, and only before WAL.
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(sqlite)?;
        }
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::WalUnavailable { path, mode });
        }

        let mut store = Store {
            conn,
            path,
            tool: *tool,
            busy_deadline: config.busy_deadline,
            lock,
            applied: Vec::new(),
        };
        let needs_migration = !pending.is_empty()
            || identity != migrate::Identity::Ours
            || found.application_id != tool.application_id;
        if needs_migration {
            store.applied = store.write(|tx| migrate::apply(tool, &store.path, tx))?;
        }
        Ok(store)
    }

    /// Opens an existing database for maintenance: no creation, no migration, no journal change.
    /// Refuses another tool's file; `ReadWrite` also refuses a schema newer than this build.
    pub(crate) fn open_existing(tool: &Tool, config: &OpenConfig, access: Access) -> Result<Store> {
        let path = config.path().to_path_buf();
        if !path.exists() {
            return Err(missing_database(tool, config, "Nothing was created."));
        }
        if !config.allow_unsupported_fs {
            fsys::check_filesystem(fsys::parent_dir(&path), &tool.filesystem_opt_out_var())?;
        }
        refuse_unless_sqlite(&path)?;
        let conn = connect(&path, access, config.busy_deadline)?;
        let found = Inspection::read(&conn).map_err(|e| Error::sqlite(&path, e))?;
        migrate::identify(tool, &path, &found)?;
        if access == Access::ReadWrite {
            migrate::pending(tool, &path, &found, &migrate::embedded(tool))?;
        }
        Ok(Store {
            conn,
            path,
            tool: *tool,
            busy_deadline: config.busy_deadline,
            lock: None,
            applied: Vec::new(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tool this store belongs to.
    pub fn tool(&self) -> &Tool {
        &self.tool
    }

    /// The migrations this open applied (empty when the schema was already current).
    pub fn migrations_applied(&self) -> &[i64] {
        &self.applied
    }

    /// The instance lock, when this store holds one.
    pub fn instance_lock(&self) -> Option<&InstanceLock> {
        self.lock.as_ref()
    }

    /// Runs `f` with the connection, outside any explicit transaction: for single-statement reads.
    /// Anything that writes belongs in [`Store::write`].
    pub fn read<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E> {
        f(&self.conn)
    }

    /// Runs `f` inside a read transaction: every statement sees the same snapshot.
    pub fn snapshot<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)
            .map_err(|e| E::from(self.error(e)))?;
        let value = f(&tx)?;
        tx.commit().map_err(|e| E::from(self.error(e)))?;
        Ok(value)
    }

    /// Runs `f` inside a `BEGIN IMMEDIATE` transaction and commits if it returns `Ok`. A busy
    /// database is waited for up to the configured deadline, then reported as [`Error::Busy`].
    pub fn write<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.begin_immediate()?;
        let value = f(&tx)?;
        tx.commit().map_err(|e| E::from(self.error(e)))?;
        Ok(value)
    }

    fn begin_immediate(&self) -> Result<Transaction<'_>> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate) {
                Ok(tx) => return Ok(tx),
                Err(e) if is_sqlite_busy(&e) => {
                    // SQLite's own busy handler already waited `busy_timeout`; some paths (WAL
                    // recovery, a snapshot conflict) return busy at once, so keep trying until the
                    // deadline.
                    let waited = started.elapsed();
                    if waited >= self.busy_deadline {
                        return Err(Error::Busy {
                            path: self.path.clone(),
                            waited,
                        });
                    }
                    thread::sleep(pause.min(self.busy_deadline - waited));
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    /// The newest migration applied to this database.
    pub fn schema_version(&self) -> Result<Option<i64>> {
        Ok(self.inspect()?.version())
    }

    /// Where this database stands against the build's migrations.
    pub fn migration_status(&self) -> Result<MigrationStatus> {
        Ok(MigrationStatus::of(
            &self.inspect()?,
            &migrate::embedded(&self.tool),
        ))
    }

    pub(crate) fn inspect(&self) -> Result<Inspection> {
        Inspection::read(&self.conn).map_err(|e| self.error(e))
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn busy_deadline(&self) -> Duration {
        self.busy_deadline
    }

    pub(crate) fn error(&self, e: rusqlite::Error) -> Error {
        Error::sqlite(&self.path, e)
    }
}

/// Refuses a file that is neither empty nor an SQLite database, before SQLite opens it.
fn refuse_unless_sqlite(path: &Path) -> Result<()> {
    match fsys::read_header(path)? {
        Header::Other(detail) => Err(Error::NotSqlite {
            path: path.to_path_buf(),
            detail,
            hint: "check the path; the file was not changed",
        }),
        Header::Empty | Header::Sqlite { .. } => Ok(()),
    }
}

/// Opens a connection with the pragmas every connection gets.
pub(crate) fn connect(path: &Path, access: Access, busy: Duration) -> Result<Connection> {
    let flags = match access {
        Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
        Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| Error::sqlite(path, e))?;
    configure(&conn, busy).map_err(|e| Error::sqlite(path, e))?;
    Ok(conn)
}

fn configure(conn: &Connection, busy: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "trusted_schema", "OFF")?;
    Ok(())
}

/// "No database at PATH", saying where the path came from and what to check.
pub(crate) fn missing_database(tool: &Tool, config: &OpenConfig, outcome: &str) -> Error {
    let check = match &config.location.origin {
        Origin::Flag(flag) => format!("check the path given to {flag}"),
        Origin::Env(var) => format!("check ${var}"),
        Origin::Default => format!(
            "that is the default location for {}; pass {} or set ${} if the database is elsewhere",
            tool.name, tool.location.flag, tool.location.env_var
        ),
    };
    Error::NotFound {
        what: "database",
        path: config.path().to_path_buf(),
        hint: format!("{check}. {outcome}"),
    }
}

/// Runs the tool's adopter on `conn` inside a transaction that is always rolled back; refuses
/// the file as foreign when the adopter does not recognise it.
fn recognised_by_adopter(
    tool: &Tool,
    path: &Path,
    conn: &Connection,
    found: &Inspection,
) -> Result<()> {
    let Some(adopt) = tool.adopt else {
        return Ok(());
    };
    let sqlite = |e| Error::sqlite(path, e);
    conn.execute_batch("BEGIN").map_err(sqlite)?;
    let verdict = adopt(conn);
    conn.execute_batch("ROLLBACK").map_err(sqlite)?;
    match verdict.map_err(sqlite)? {
        Some(_) => Ok(()),
        None => Err(Error::ForeignDatabase {
            tool: tool.name,
            path: path.to_path_buf(),
            found: found.application_id,
            expected: tool.application_id,
        }),
    }
}
