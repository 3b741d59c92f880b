//! Counters for the Prometheus endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters; gauges are read from the store at scrape time.
#[derive(Debug, Default)]
pub struct Metrics {
    /// API requests answered, by class.
    pub requests_ok: AtomicU64,
    /// API requests answered with a 4xx.
    pub requests_client_error: AtomicU64,
    /// API requests answered with a 5xx.
    pub requests_server_error: AtomicU64,
    /// Requests refused for authorization (403).
    pub denials: AtomicU64,
    /// Failed logins.
    pub login_failures: AtomicU64,
    /// Rule pushes accepted.
    pub rule_pushes: AtomicU64,
}

impl Metrics {
    /// Counts one answered request by status.
    pub fn count_status(&self, status: u16) {
        let counter = match status {
            500.. => &self.requests_server_error,
            400..=499 => &self.requests_client_error,
            _ => &self.requests_ok,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if status == 403 {
            self.denials.fetch_add(1, Ordering::Relaxed);
        }
    }
}
