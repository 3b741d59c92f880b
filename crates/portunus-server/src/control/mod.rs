//! The control plane's side of the edge fleet: the TLS listener `portunus-client` dials, and the
//! hub through which changes to a client's rules reach its live session.
//!
//! The operator API never talks to clients directly: it writes the desired state, bumps the
//! client's generation and pokes the [`hub`]; the client's session in [`listener`] (if it is
//! connected) reads the state and pushes it, and a client that is offline gets it on its next
//! connect.

pub mod hub;
pub mod listener;

pub use listener::{desired_state, serve};
