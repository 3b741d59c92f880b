//! The one error type of Port Keeper, with the exit status each failure maps to.
//!
//! Scripts branch on `portman`'s exit status, so every failure has a documented sysexits code (the
//! table is [`EXIT_STATUS_HELP`], shown in `--help` and the README) and a stable machine `code` used in
//! `--json` errors. Messages say what went wrong, to what, and what to do next, because the CLI prints
//! them as they are.

use std::path::PathBuf;

pub use store::exit;

use crate::port::Port;

/// Result with Port Keeper's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `check` exit status when the port is reserved and nothing listens on it.
pub const CHECK_RESERVED: u8 = 2;
/// `check` exit status when something listens on the port (reserved or not).
pub const CHECK_IN_USE: u8 = 3;
/// Permission denied: a process we may not signal, or one `kill` refuses to touch (sysexits `EX_NOPERM`).
pub const NO_PERMISSION: u8 = 77;

/// The exit statuses of `portman`, shown in `--help` and the README.
pub const EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
  0   success; for `check`: the port is free
  1   failure not covered below (e.g. a port still in use after `kill`)
  2   `check`: the port is reserved and nothing listens on it
  3   `check`: something listens on the port
  64  the command line was wrong: unknown flag, port 0 or above 65535, unknown status
  65  bad data: malformed import file, wrong checksum, not a Port Keeper database
  66  not found: the import file, or a port/project with nothing to release
  69  unavailable: `request` found too few free ports in the range
  73  conflict: the port is reserved by another project
  74  input/output error
  75  busy: another writer kept the database locked; try again
  77  permission denied: `kill` may not signal that process (or refuses PID 1 and itself)
  78  the database schema is newer than this binary, or its filesystem is unsupported";

/// Everything that can go wrong in a Port Keeper command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The shared store failed (open, busy, migrations, I/O).
    #[error(transparent)]
    Store(#[from] store::Error),

    /// A value on the command line is not acceptable.
    #[error("invalid_argument: {0}")]
    Usage(String),

    /// The port is held by another project.
    #[error(
        "port_reserved: port {port} is reserved by project '{project}'{since}; release it first (`portman release {port}`) or pick another port (`portman request -n <project>`)"
    )]
    Reserved {
        /// The port asked for.
        port: Port,
        /// The project holding it.
        project: String,
        /// " since <time>" or empty.
        since: String,
    },

    /// The change conflicts with what is there now (an import over other projects' ports, a port in use).
    #[error("conflict: {0}")]
    Conflict(String),

    /// Not enough free ports in the requested range.
    #[error("no_free_ports: {0}")]
    NoFreePorts(String),

    /// Something asked for does not exist.
    #[error("not_found: {0}")]
    NotFound(String),

    /// An input file is malformed, fails its checksum, or holds invalid entries.
    #[error("invalid_data: {0}")]
    InvalidData(String),

    /// `kill` may not, or will not, signal a process.
    #[error("permission_denied: {0}")]
    Permission(String),

    /// A port stayed in use after `kill`.
    #[error("still_in_use: {0}")]
    StillInUse(String),

    /// The kernel's socket tables could not be read.
    #[error("scan_failed: {0}")]
    Scan(String),

    /// Reading or writing a file failed.
    #[error("io_error: {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },

    /// Anything else, with a message that says what to do.
    #[error("failed: {0}")]
    Other(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(store::Error::from(e))
    }
}

impl Error {
    /// The stable machine code (`port_reserved`), as in `--json` errors.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Store(e) => e.code(),
            Error::Usage(_) => "invalid_argument",
            Error::Reserved { .. } => "port_reserved",
            Error::Conflict(_) => "conflict",
            Error::NoFreePorts(_) => "no_free_ports",
            Error::NotFound(_) => "not_found",
            Error::InvalidData(_) => "invalid_data",
            Error::Permission(_) => "permission_denied",
            Error::StillInUse(_) => "still_in_use",
            Error::Scan(_) => "scan_failed",
            Error::Io { .. } => "io_error",
            Error::Other(_) => "failed",
        }
    }

    /// The process exit status for this error (see [`EXIT_STATUS_HELP`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Store(e) => e.exit_code(),
            Error::Usage(_) => exit::USAGE,
            Error::Reserved { .. } | Error::Conflict(_) => exit::CANT_CREATE,
            Error::NoFreePorts(_) => exit::UNAVAILABLE,
            Error::NotFound(_) => exit::NO_INPUT,
            Error::InvalidData(_) => exit::DATA_ERR,
            Error::Permission(_) => NO_PERMISSION,
            Error::StillInUse(_) | Error::Other(_) => exit::FAILURE,
            Error::Scan(_) | Error::Io { .. } => exit::IO_ERR,
        }
    }

    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
