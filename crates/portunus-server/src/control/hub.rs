//! Which clients are connected, and how a change to a client's rules reaches its session.
//!
//! The API bumps a client's generation in the database and then calls [`Hub::notify`]; the
//! client's control session (if it is connected) wakes, reads the current desired state and
//! pushes it. A client that is offline simply gets the current state when it next connects, so
//! nothing depends on the client being connected when a rule is pushed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// What a session is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Nothing yet.
    Idle,
    /// The desired state changed (a counter, so every change is seen).
    Changed(u64),
    /// The client was revoked: close the session with a terminal error.
    Revoked,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, (u64, watch::Sender<Signal>)>,
    next_session: u64,
    changes: u64,
}

/// The registry of connected control sessions, by client id.
#[derive(Debug, Clone, Default)]
pub struct Hub {
    inner: Arc<Mutex<Inner>>,
}

/// A connected session's registration; dropping it unregisters.
#[derive(Debug)]
pub struct Registration {
    hub: Hub,
    client_id: String,
    session: u64,
    /// Signals for this session.
    pub signals: watch::Receiver<Signal>,
}

impl Hub {
    /// A new, empty hub.
    pub fn new() -> Hub {
        Hub::default()
    }

    /// Registers the session of `client_id`, replacing (and so ending) an older one.
    pub fn register(&self, client_id: &str) -> Registration {
        let (tx, rx) = watch::channel(Signal::Idle);
        let mut inner = self.lock();
        inner.next_session += 1;
        let session = inner.next_session;
        inner.sessions.insert(client_id.to_string(), (session, tx));
        Registration {
            hub: self.clone(),
            client_id: client_id.to_string(),
            session,
            signals: rx,
        }
    }

    /// Tells the client's session (if connected) that its desired state changed.
    pub fn notify(&self, client_id: &str) {
        let mut inner = self.lock();
        inner.changes += 1;
        let change = inner.changes;
        if let Some((_, tx)) = inner.sessions.get(client_id) {
            let _ = tx.send(Signal::Changed(change));
        }
    }

    /// Ends the client's session with a terminal "revoked" error.
    pub fn revoke(&self, client_id: &str) {
        if let Some((_, tx)) = self.lock().sessions.get(client_id) {
            let _ = tx.send(Signal::Revoked);
        }
    }

    /// Whether the client has a live control session.
    pub fn is_connected(&self, client_id: &str) -> bool {
        self.lock().sessions.contains_key(client_id)
    }

    /// How many clients are connected.
    pub fn connected(&self) -> usize {
        self.lock().sessions.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        if inner
            .sessions
            .get(&self.client_id)
            .is_some_and(|(s, _)| *s == self.session)
        {
            inner.sessions.remove(&self.client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_session_replaces_an_older_one_and_dropping_the_old_keeps_the_new() {
        let hub = Hub::new();
        let old = hub.register("cli_1");
        let new = hub.register("cli_1");
        drop(old);
        assert!(hub.is_connected("cli_1"));
        hub.notify("cli_1");
        assert!(matches!(*new.signals.borrow(), Signal::Changed(_)));
        drop(new);
        assert!(!hub.is_connected("cli_1"));
    }
}
