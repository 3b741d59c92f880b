//! Port Keeper: reserve, scan, check and free ports for local projects.
//!
//! The `portman` binary is a thin shell over this library. Reservations live in the seed's
//! documented SQLite schema ([`schema`], opened through the workspace's `store` crate); the truth
//! about what listens comes from the kernel's socket tables ([`sockets`]), joined with the
//! reservations at the moment of asking ([`live`]). [`request`] allocates ports atomically, [`kill`]
//! frees them by signalling only listeners, and [`transfer`] and [`legacy`] move reservations in and
//! out, including from the original Port Keeper.

pub mod cli;
pub mod commands;
pub mod configurations;
pub mod error;
pub mod history;
pub mod kill;
pub mod legacy;
pub mod live;
pub mod output;
pub mod port;
pub mod ports;
pub mod request;
pub mod scans;
pub mod schema;
pub mod sockets;
pub mod transfer;
pub mod ui;

pub use error::{Error, Result};
pub use port::{Port, PortRange};
pub use store::timestamp;
