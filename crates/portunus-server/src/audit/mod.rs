//! The durable audit log: every mutation and every denial, with actor, action, resource and
//! outcome.
//!
//! Handlers call [`AuditLog::record`], which never blocks and never touches SQLite: events go
//! into a bounded queue that a dedicated writer thread drains in batches, one transaction per
//! batch. When the queue is full the *oldest* queued event is dropped and counted (the original
//! dropped the newest). [`AuditLog::flush`] waits until everything recorded before it is on disk,
//! which the audit API uses so a caller always reads its own writes.

pub mod query;
pub mod retention;
mod writer;

pub use writer::{AuditLog, AuditStats};

use serde::Serialize;

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused: not authenticated, not allowed, throttled.
    Denied,
    /// Attempted and failed (validation, conflict, internal error).
    Error,
}

impl Outcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// One audit event.
#[derive(Debug, Clone)]
pub struct Event {
    /// When it happened (Unix ms).
    pub at: i64,
    /// Who: a user id, `client:<id>`, `anonymous`, or `system`.
    pub actor: String,
    /// What, e.g. `rule.create`.
    pub action: String,
    /// On what, e.g. `rule:rul_…`.
    pub resource: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Anything else worth keeping (a JSON object).
    pub details: serde_json::Value,
}

impl Event {
    /// An event happening now.
    pub fn now(
        actor: impl Into<String>,
        action: impl Into<String>,
        resource: impl Into<String>,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Event {
        Event {
            at: crate::ids::now_ms(),
            actor: actor.into(),
            action: action.into(),
            resource: resource.into(),
            outcome,
            details,
        }
    }
}
