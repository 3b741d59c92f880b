//! The running server's shared state: the store, the audit log, the control hub, metrics and
//! the facts about this server that responses need (its TLS pin, its public control address).

use std::sync::Arc;

use crate::audit::{AuditLog, Event};
use crate::control::hub::Hub;
use crate::metrics::Metrics;

/// Everything a request handler or control session may need.
#[derive(Debug)]
pub struct App {
    /// `<data-dir>/state.db`; SQLite runs on its writer thread or the blocking pool, never on
    /// async threads.
    pub db: store::AsyncStore,
    /// The batching audit writer.
    pub audit: AuditLog,
    /// Connected control sessions.
    pub hub: Hub,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// `sha256:<hex>` of the server certificate, put into enrollment URIs.
    pub pin: String,
    /// `host:port` clients dial, put into enrollment URIs.
    pub public_control: String,
    /// Whether the API is served over TLS (sets the cookie's `Secure` flag).
    pub api_tls: bool,
}

/// The shared handle.
pub type Shared = Arc<App>;

impl App {
    /// Records an audit event (never blocks).
    pub fn audit(&self, event: Event) {
        self.audit.record(event);
    }
}
