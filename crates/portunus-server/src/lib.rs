//! `portunus-server`: the Portunus control plane.
//!
//! This crate holds the server's state ([`store`]: `<data-dir>/state.db`, the seed's tables) and
//! its admin commands. The HTTP API, RBAC, audit writer and the control listener that
//! `portunus-client` dials build on these; the types shared with the client live in
//! `portunus-core`.

pub mod cli;
pub mod commands;
pub mod store;
