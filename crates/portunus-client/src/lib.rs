//! The Portunus edge node: the library behind `portunus-client` and `portunus-standalone`.
//!
//! A fleet client is enrolled once ([`enroll`]: an enrollment URI is redeemed for a credential
//! bundle, [`bundle`]), then runs ([`agent`]): it re-applies the rules it persisted last time
//! ([`state`]) before it even dials the server, holds one pinned TLS control session
//! ([`session`]), applies every new desired state the server pushes and reports traffic
//! ([`usage`]). Losing the server never stops forwarding; only an explicit revocation does.
//! `portunus-standalone` runs the same forwarder from a TOML file instead ([`standalone`]). The
//! forwarding itself lives in `portunus_core::forward`; this crate decides *what* runs.

pub mod agent;
pub mod atomic;
pub mod backoff;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod enroll;
pub mod events;
pub mod paths;
pub mod session;
pub mod signals;
pub mod standalone;
pub mod state;
pub mod status;
pub mod uri;
pub mod usage;

/// Exit statuses beyond those of [`store::exit`].
pub mod exit {
    pub use store::exit::*;

    /// Permission denied: the server refused this client for good (revoked, unknown token,
    /// invalid enrollment code, unsupported protocol version).
    pub const NO_PERM: u8 = 77;
    /// `portunus-standalone`: the configuration file is invalid.
    pub const INVALID_CONFIG: u8 = 2;
}
