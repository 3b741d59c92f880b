//! The one error type of the store.
//!
//! Every variant names what went wrong, to which file, and what the user can do about it, because
//! tools print these messages as they are. Each also carries a stable machine `code` (used in
//! `--json` output and as the suffix of server startup events such as `startup.store_in_use`) and a
//! sysexits exit status, so scripts can tell "someone else holds it" (75) from "your binary is too
//! old" (78) without parsing text.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Result with the store's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit statuses, from BSD's sysexits, shared by every tool of the workspace.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A failure with no more specific status.
    pub const FAILURE: u8 = 1;
    /// The command was used wrongly.
    pub const USAGE: u8 = 64;
    /// Input data was wrong: not a database, a foreign database, corruption, migration drift.
    pub const DATA_ERR: u8 = 65;
    /// An input file does not exist.
    pub const NO_INPUT: u8 = 66;
    /// A service or resource is unavailable.
    pub const UNAVAILABLE: u8 = 69;
    /// An output file could not be created (or would have been overwritten).
    pub const CANT_CREATE: u8 = 73;
    /// An input/output error.
    pub const IO_ERR: u8 = 74;
    /// In use or busy: another process holds the store; try again later.
    pub const TEMP_FAIL: u8 = 75;
    /// Configuration error, including a schema newer than this binary.
    pub const CONFIG: u8 = 78;
}

/// Everything that can go wrong opening, changing or maintaining a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process holds the single-instance lock.
    #[error(
        "store_in_use: {lock} is held by {holder}; stop that process or use a different database path"
    )]
    InUse {
        /// The lock file.
        lock: PathBuf,
        /// Who holds it, as well as we can tell ("pid 123" or "another process").
        holder: String,
    },

    /// Another writer kept the database locked past the deadline.
    #[error(
        "busy: {path} stayed locked by another writer for {waited:?}; try again, or stop the process that keeps it busy"
    )]
    Busy {
        /// The database file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },

    /// The file was migrated by a newer build of the tool.
    #[error(
        "schema_version_too_new on_disk={on_disk} target={target}: {path} was written by a newer {tool}; upgrade {tool}, or restore a backup made by this version. The file was not changed."
    )]
    SchemaTooNew {
        /// The tool's name.
        tool: &'static str,
        /// The database file.
        path: PathBuf,
        /// Newest migration recorded in the file.
        on_disk: i64,
        /// Newest migration this binary knows.
        target: i64,
    },

    /// An applied migration differs from the one compiled into this binary.
    #[error(
        "migration_drift: {path} records migration V{version}__{name} {detail}; it was migrated by a different build of {tool}. Use the build that made it, or restore a backup; nothing was re-run."
    )]
    MigrationDrift {
        /// The tool's name.
        tool: &'static str,
        /// The database file.
        path: PathBuf,
        /// The migration's version.
        version: i64,
        /// The migration's name as recorded in the file.
        name: String,
        /// How it differs ("with checksum 1 but this build has 2").
        detail: String,
    },

    /// The database lives on a filesystem where SQLite's durability or locking is not real.
    #[error(
        "unsupported_filesystem: {path} is on {filesystem}, where SQLite's locking or durability cannot be trusted; move it to a local disk, or set {opt_out}=1 if you accept the risk"
    )]
    UnsupportedFilesystem {
        /// The directory that was checked.
        path: PathBuf,
        /// The filesystem's name.
        filesystem: &'static str,
        /// The environment variable that overrides the check.
        opt_out: String,
    },

    /// A file that must exist does not.
    #[error("not_found: {what} {path} does not exist; {hint}")]
    NotFound {
        /// What was looked for ("database", "backup file").
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What to do.
        hint: String,
    },

    /// A file that should be an SQLite database is not one.
    #[error("not_sqlite: {path} is not an SQLite database ({detail}); {hint}")]
    NotSqlite {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
        /// What to do.
        hint: &'static str,
    },

    /// The database belongs to another application (its `application_id` differs).
    #[error(
        "foreign_database: {path} is not a {tool} database (application_id {found:#010x}, expected {expected:#010x}); check the path"
    )]
    ForeignDatabase {
        /// The tool's name.
        tool: &'static str,
        /// The file.
        path: PathBuf,
        /// Its `application_id`.
        found: i32,
        /// Ours.
        expected: i32,
    },

    /// Integrity checks failed.
    #[error("corrupt: {path} failed its integrity check: {}", problems.join("; "))]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the checks reported (at most a handful).
        problems: Vec<String>,
    },

    /// A destination exists and the operation never overwrites.
    #[error("target_exists: {path} already exists; {hint}")]
    TargetExists {
        /// The destination.
        path: PathBuf,
        /// What to do.
        hint: &'static str,
    },

    /// `restore` found data in the live database and was not told `--force`.
    #[error(
        "not_empty: {path} holds data ({detail}); pass --force to replace it, or take a backup first"
    )]
    NotEmpty {
        /// The live database.
        path: PathBuf,
        /// What it holds.
        detail: String,
    },

    /// SQLite could not switch the file to write-ahead logging.
    #[error(
        "wal_unavailable: {path} cannot use write-ahead logging (SQLite kept journal_mode={mode}); keep the database on a local disk with shared-memory support"
    )]
    WalUnavailable {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite reported.
        mode: String,
    },

    /// The home directory is needed for the default location and is unknown.
    #[error(
        "no_home: cannot find the home directory to place the default database; set HOME, {hint}"
    )]
    NoHome {
        /// Which flag or variable to use instead.
        hint: String,
    },

    /// A filesystem operation failed.
    #[error("io: could not {action} {path}: {source}")]
    Io {
        /// What we were doing ("create directory", "read").
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// SQLite reported an error.
    #[error("sqlite: {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },

    /// A tool's own statement failed (inside [`Store::write`](crate::Store::write) and friends).
    #[error("sqlite: {0}")]
    Query(#[from] rusqlite::Error),

    /// A migration failed to apply; the transaction was rolled back.
    #[error(
        "migration_failed: {path}: {detail}; the database was left as it was before the attempt"
    )]
    Migration {
        /// The database file.
        path: PathBuf,
        /// refinery's description.
        detail: String,
    },

    /// The store's writer thread has stopped (the server is shutting down).
    #[error("store_closed: {path} is closed; the server is shutting down")]
    Closed {
        /// The database file.
        path: PathBuf,
    },

    /// A caller passed an identifier that is not a plain SQL name of an existing table/column.
    #[error("invalid_identifier: {name:?} is not a table or column of this database")]
    InvalidIdentifier {
        /// The identifier.
        name: String,
    },
}

impl Error {
    /// A stable, machine-readable name for the error, used in `--json` output and log events.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InUse { .. } => "store_in_use",
            Error::Busy { .. } => "busy",
            Error::SchemaTooNew { .. } => "schema_version_too_new",
            Error::MigrationDrift { .. } => "migration_drift",
            Error::UnsupportedFilesystem { .. } => "unsupported_filesystem",
            Error::NotFound { .. } => "not_found",
            Error::NotSqlite { .. } => "not_sqlite",
            Error::ForeignDatabase { .. } => "foreign_database",
            Error::Corrupt { .. } => "corrupt",
            Error::TargetExists { .. } => "target_exists",
            Error::NotEmpty { .. } => "not_empty",
            Error::NoHome { .. } => "no_home",
            Error::WalUnavailable { .. } => "wal_unavailable",
            Error::Io { .. } => "io",
            Error::Sqlite { source, .. } | Error::Query(source) => match sqlite_class(source) {
                SqliteClass::Busy => "busy",
                SqliteClass::Corrupt => "corrupt",
                SqliteClass::Io => "io",
                SqliteClass::CantOpen => "cannot_open",
                SqliteClass::Other => "sqlite",
            },
            Error::Migration { .. } => "migration_failed",
            Error::InvalidIdentifier { .. } => "invalid_identifier",
            Error::Closed { .. } => "store_closed",
        }
    }

    /// The sysexits status a command should exit with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::InUse { .. } | Error::Busy { .. } => exit::TEMP_FAIL,
            Error::SchemaTooNew { .. }
            | Error::UnsupportedFilesystem { .. }
            | Error::NoHome { .. }
            | Error::WalUnavailable { .. } => exit::CONFIG,
            Error::MigrationDrift { .. }
            | Error::NotSqlite { .. }
            | Error::ForeignDatabase { .. }
            | Error::Corrupt { .. } => exit::DATA_ERR,
            Error::NotFound { .. } => exit::NO_INPUT,
            Error::TargetExists { .. } | Error::NotEmpty { .. } => exit::CANT_CREATE,
            Error::Io { .. } => exit::IO_ERR,
            Error::Sqlite { source, .. } | Error::Query(source) => match sqlite_class(source) {
                SqliteClass::Busy => exit::TEMP_FAIL,
                SqliteClass::Corrupt => exit::DATA_ERR,
                SqliteClass::Io => exit::IO_ERR,
                SqliteClass::CantOpen => exit::CANT_CREATE,
                SqliteClass::Other => exit::FAILURE,
            },
            Error::Migration { .. } | Error::InvalidIdentifier { .. } => exit::FAILURE,
            Error::Closed { .. } => exit::UNAVAILABLE,
        }
    }

    /// True when the error means "another process is using it; try again later".
    pub fn is_busy(&self) -> bool {
        self.exit_code() == exit::TEMP_FAIL
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sqlite(path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        Error::Sqlite {
            path: path.into(),
            source,
        }
    }
}

enum SqliteClass {
    Busy,
    Corrupt,
    Io,
    CantOpen,
    Other,
}

fn sqlite_class(error: &rusqlite::Error) -> SqliteClass {
    use rusqlite::ErrorCode as C;
    match error.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => SqliteClass::Busy,
        Some(C::DatabaseCorrupt | C::NotADatabase) => SqliteClass::Corrupt,
        Some(C::SystemIoFailure | C::DiskFull) => SqliteClass::Io,
        Some(C::CannotOpen | C::ReadOnly | C::PermissionDenied) => SqliteClass::CantOpen,
        _ => SqliteClass::Other,
    }
}

/// True when SQLite says another connection holds the lock we need.
pub(crate) fn is_sqlite_busy(error: &rusqlite::Error) -> bool {
    matches!(sqlite_class(error), SqliteClass::Busy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_failures_map_to_documented_exit_codes() {
        let in_use = Error::InUse {
            lock: "/x/state.db.lock".into(),
            holder: "pid 1".into(),
        };
        assert_eq!(in_use.exit_code(), 75);
        assert!(
            in_use
                .to_string()
                .starts_with("store_in_use: /x/state.db.lock")
        );

        let too_new = Error::SchemaTooNew {
            tool: "portunus",
            path: "/x/state.db".into(),
            on_disk: 7,
            target: 5,
        };
        assert_eq!(too_new.exit_code(), 78);
        assert!(
            too_new
                .to_string()
                .starts_with("schema_version_too_new on_disk=7 target=5")
        );
        assert_eq!(too_new.code(), "schema_version_too_new");
    }

    #[test]
    fn sqlite_busy_is_reported_as_busy_not_failure() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        let error = Error::sqlite("/x.db", busy);
        assert_eq!(error.exit_code(), 75);
        assert_eq!(error.code(), "busy");
        assert!(error.is_busy());
    }
}
