//! The one error type of cpm, with the exit status each failure maps to.
//!
//! Every message says what went wrong, to what, and what to do next, because the CLI prints them as
//! they are; every variant has a stable machine `code` (used in JSON and YAML errors) and a sysexits
//! status, listed in [`EXIT_STATUS_HELP`].

use std::path::PathBuf;

pub use store::exit;

/// Result with cpm's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The exit statuses of `cpm`, shown in `--help` and the README.
pub const EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
  0   success
  1   failure not covered below (`git` failed; an SSH client was denied)
  64  the command line was wrong: unknown flag, invalid name
  65  bad data: an invalid SSH key, not a cpm database
  66  not found: no such user, organization, repository, key or server
  73  already exists: the name, key fingerprint or repository directory is taken
  74  input/output error
  75  busy: another writer kept the database locked; try again
  78  configuration error: bad config file, schema newer than this binary";

/// Everything that can go wrong in cpm.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The shared store failed (open, busy, migrations, I/O).
    #[error(transparent)]
    Store(#[from] store::Error),

    /// A name or value given on the command line is not acceptable.
    #[error("invalid_argument: {0}")]
    Invalid(String),

    /// Something named does not exist.
    #[error("not_found: {0}")]
    NotFound(String),

    /// The name (or key, or directory) is taken.
    #[error("already_exists: {0}")]
    Exists(String),

    /// An SSH key problem.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),

    /// The configuration file is wrong.
    #[error("config_error: {0}")]
    Config(String),

    /// A file operation failed.
    #[error("io_error: {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },

    /// An SSH client asked for something it may not have.
    #[error("denied: {0}")]
    Denied(String),

    /// `git` failed.
    #[error("git_failed: {0}")]
    Git(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(store::Error::from(e))
    }
}

impl Error {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Store(e) => e.code(),
            Error::Invalid(_) => "invalid_argument",
            Error::NotFound(_) => "not_found",
            Error::Exists(_) => "already_exists",
            Error::Key(e) => e.code(),
            Error::Config(_) => "config_error",
            Error::Io { .. } => "io_error",
            Error::Git(_) => "git_failed",
            Error::Denied(_) => "denied",
        }
    }

    /// The process exit status (see [`EXIT_STATUS_HELP`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Store(e) => e.exit_code(),
            Error::Invalid(_) => exit::USAGE,
            Error::NotFound(_) => exit::NO_INPUT,
            Error::Exists(_) => exit::CANT_CREATE,
            Error::Key(e) => e.exit_code(),
            Error::Config(_) => exit::CONFIG,
            Error::Io { .. } => exit::IO_ERR,
            Error::Git(_) | Error::Denied(_) => exit::FAILURE,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Turns a UNIQUE-constraint failure into [`Error::Exists`] with `what`, passing other errors on.
pub fn unique(e: rusqlite::Error, what: impl FnOnce() -> String) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Error::Exists(what())
        }
        _ => Error::from(e),
    }
}
