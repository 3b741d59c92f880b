//! `portunus-server`: the Portunus control plane.
//!
//! [`store`] holds the server's state (`<data-dir>/state.db`, the seed's tables); [`model`] the
//! rules of the domain (users, grants, rules, clients, caps, quotas, settings) as functions over
//! a transaction; [`auth`] passwords, tokens, sessions and throttling; [`api`] the operator HTTP
//! API; [`audit`] the durable audit log and its batching writer; [`control`] the TLS listener
//! that `portunus-client` dials; [`serve`] starts it all; [`admin`] is the CLI over the API.
//! Types shared with the client live in `portunus-core`.

pub mod admin;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod control;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod serve;
pub mod store;
pub mod tls;
