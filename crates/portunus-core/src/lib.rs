//! What the Portunus control plane and its edge clients agree on.
//!
//! `portunus-server` stores and validates forwarding rules; `portunus-client` receives them and
//! forwards traffic. Both use these types, so a rule the server accepted is a rule the client can
//! run: the checks (ports 1–65535, a listen range of at most 1,024 ports, 1 to 8 targets, known
//! protocols) live here, once.

pub mod rule;

pub use rule::{MAX_RANGE, MAX_TARGETS, PortRange, Protocol, ProxyProtocol, RuleError, Target};
