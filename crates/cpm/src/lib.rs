//! cpm: a self-hosted git repository manager.
//!
//! Users with SSH keys, organizations with members and roles, bare repositories owned by
//! organizations, per-repository access levels, cpm's own key pairs and the servers it replicates
//! to — the seed's data model, in its documented SQLite schema ([`schema`]) opened through the
//! workspace's `store` crate. One module per table family holds the queries; [`access`] decides
//! who may do what; [`disk`] keeps the repository directories in step with the rows. The `cpm`
//! binary is a thin shell over this library, and part 2's SSH server is another front door to it.

pub mod access;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod disk;
pub mod dispatch;
pub mod error;
pub mod keys;
pub mod names;
pub mod neighbors;
pub mod orgs;
pub mod output;
pub mod replicate;
pub mod repos;
pub mod schema;
pub mod serve;
pub mod servers;
pub mod ssh_keys;
pub mod users;

pub use error::{Error, Result};
