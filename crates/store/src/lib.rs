//! The SQLite foundation every tool of the workspace keeps its state on.
//!
//! A tool describes itself once, in a `static` [`Tool`] (name, `application_id`, where its database
//! lives, its refinery migrations), and then opens its database with [`Store::open`]. The store owns
//! everything about the file so that no tool has to get it right on its own:
//!
//! * **Location**: `--db`/`--data-dir` flag, then the tool's environment variable, then its documented
//!   default ([`Location`]); directories are created 0700 and the file 0600 before SQLite touches it.
//! * **Safety checks**: network and memory filesystems are refused by `statfs` magic (opt-out:
//!   `<TOOL>_ALLOW_UNSUPPORTED_FS=1`); servers hold `<db>.lock` ([`InstanceLock`]) and a second one
//!   stops with exit 75; another tool's file is refused by `application_id`.
//! * **Schema**: migrations run with refinery inside one `BEGIN IMMEDIATE` transaction; a file newer
//!   than the binary is refused untouched (exit 78) and an edited applied migration is reported as
//!   drift, never re-run.
//! * **Transactions**: [`Store::write`] begins `IMMEDIATE` and waits out a busy database up to a
//!   deadline; `AsyncStore` (feature `tokio`) keeps SQLite off the async executor.
//! * **Operations**: backup, restore, reset, check, vacuum, optimize, migration status and
//!   retention ([`Prune`]), exposed to users through the [`cli::DbCommand`] subcommand with the exit
//!   codes of [`exit`].
//!
//! ```no_run
//! use store::{DefaultPath, Location, OpenConfig, Store, Tool};
//!
//! mod embedded {
//!     refinery::embed_migrations!("examples/notes_migrations");
//! }
//!
//! static NOTES: Tool = Tool {
//!     name: "notes",
//!     application_id: 0x4e4f_5445,
//!     location: Location {
//!         env_var: "NOTES_DB",
//!         flag: "--db",
//!         file_in_dir: None,
//!         default: DefaultPath::Home(".notes/notes.db"),
//!     },
//!     migrations: embedded::migrations::runner,
//!     adopt: None,
//! };
//!
//! # fn main() -> store::Result<()> {
//! let store = Store::open(&NOTES, &OpenConfig::resolve(&NOTES, None)?)?;
//! store.write(|tx| {
//!     tx.execute("INSERT INTO notes(body, created_at) VALUES (?1, unixepoch())", ["hello"])?;
//!     Ok::<_, store::Error>(())
//! })?;
//! # Ok(())
//! # }
//! ```

mod backup;
pub mod cli;
#[cfg(feature = "tokio")]
mod concurrent;
mod error;
mod fsys;
mod location;
mod lock;
mod maintenance;
mod migrate;
mod prune;
mod schema;
mod store;
pub mod timestamp;
mod tool;

pub use backup::{BackupReport, ResetReport, RestoreReport, backup, reset, restore};
#[cfg(feature = "tokio")]
pub use concurrent::AsyncStore;
pub use error::{Error, Result, exit};
pub use fsys::{
    SQLITE_HEADER, UNSUPPORTED_FILESYSTEMS, rename_no_replace, unsupported_filesystem, with_suffix,
};
pub use location::{DefaultPath, Location, Origin, Resolved};
pub use lock::InstanceLock;
pub use maintenance::{
    CheckReport, ForeignKeyViolation, OptimizeReport, VacuumMode, VacuumReport, check, optimize,
    vacuum,
};
pub use migrate::{
    AppliedMigration, HISTORY_TABLE, MigrationEntry, MigrationState, MigrationStatus,
};
pub use prune::{Prune, PruneReport, Retain};
pub use store::{DEFAULT_BUSY_DEADLINE, IfMissing, OpenConfig, Store};
pub use tool::{Adopter, Tool};

/// Re-exported so tools use the same versions the store was built with.
pub use refinery;
pub use rusqlite;
