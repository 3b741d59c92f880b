//! The state every request handler and background task shares: the store, the live event hub,
//! the latest metrics sample, counters for the Prometheus export, and the security settings the
//! server was started with.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use store::AsyncStore;
use tokio::sync::Mutex;

use crate::db::metrics::Metrics;
use crate::events::Events;
use crate::logging::LogStats;

/// Shared state; cheap to clone.
pub type Shared = Arc<App>;

/// The server's state.
#[derive(Debug)]
pub struct App {
    /// The database.
    pub db: Arc<AsyncStore>,
    /// Live events for SSE streams.
    pub events: Events,
    /// The home directory the documented `baseModelsPath` default is relative to.
    pub home: String,
    /// The key every request must carry, when one is set.
    pub api_key: Option<String>,
    /// Whether the listener is on a loopback address (then Host headers must name loopback too).
    pub loopback: bool,
    /// One scan at a time.
    pub scan_lock: Mutex<()>,
    /// The most recent sample, for `/metrics` and `/api/metrics/latest` between stored rows.
    pub latest: std::sync::Mutex<Option<Metrics>>,
    /// NVIDIA GPUs seen by the sampler.
    pub gpu_devices: AtomicU64,
    /// Counters.
    pub counters: Counters,
    /// Log writer counters.
    pub log_stats: Arc<LogStats>,
    /// When the server started.
    pub started: Instant,
    /// The most recent proxied requests, newest last.
    pub requests: std::sync::Mutex<std::collections::VecDeque<crate::proxy::meter::RequestRecord>>,
    /// The client for the running llama-server (kept for its connection pool).
    pub upstream_client: std::sync::Mutex<Option<crate::llama::upstream::Upstream>>,
    /// The catalog rows the proxy resolves model names against.
    pub catalog: crate::proxy::catalog::Catalog,
    /// The router's id for each catalog model (by catalog id), as last listed.
    pub routes: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// When each model was last used, for idle unload.
    pub activity: crate::idle::Activity,
    /// The llama-server the dashboard owns.
    pub llama: crate::llama::supervisor::Supervisor,
    /// Turns true when the server is stopping; live streams and tasks end then.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// API requests answered, by class.
    pub requests_2xx: AtomicU64,
    /// 4xx answers.
    pub requests_4xx: AtomicU64,
    /// 5xx answers.
    pub requests_5xx: AtomicU64,
    /// Requests refused for a missing or wrong API key, or a foreign Host.
    pub unauthorized: AtomicU64,
    /// Scans run.
    pub scans: AtomicU64,
    /// Samples taken.
    pub samples: AtomicU64,
    /// Samples stored.
    pub samples_stored: AtomicU64,
    /// Metrics rows deleted by retention.
    pub metrics_pruned: AtomicU64,
    /// Requests proxied to llama-server.
    pub proxied: AtomicU64,
    /// Proxied requests whose client went away first.
    pub proxy_cancelled: AtomicU64,
    /// Tokens generated through the proxy.
    pub tokens: AtomicU64,
}

impl Counters {
    /// Counts an answer by its status.
    pub fn count_status(&self, status: u16) {
        let counter = match status {
            500.. => &self.requests_5xx,
            400.. => &self.requests_4xx,
            _ => &self.requests_2xx,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl App {
    /// The latest sample, if one was taken.
    pub fn latest(&self) -> Option<Metrics> {
        self.latest.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Requests kept for `/api/requests`.
    pub const KEPT_REQUESTS: usize = 200;

    /// Records a finished proxied request: counters, the recent list, live streams.
    pub fn record_request(&self, record: crate::proxy::meter::RequestRecord) {
        self.counters.proxied.fetch_add(1, Ordering::Relaxed);
        if record.cancelled {
            self.counters
                .proxy_cancelled
                .fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .tokens
            .fetch_add(record.tokens.unwrap_or(0), Ordering::Relaxed);
        // Only a dashboard that is open wants it, and the JSON is made for it alone.
        if self.events.subscribers() > 0 {
            self.events
                .publish(crate::events::Topic::Request, serde_json::json!(record));
        }
        if let Ok(mut kept) = self.requests.lock() {
            if kept.len() == App::KEPT_REQUESTS {
                kept.pop_front();
            }
            kept.push_back(record);
        }
    }

    /// The router's id for a catalog model, as last listed.
    pub fn route(&self, model: &str) -> Option<String> {
        self.routes.lock().ok()?.get(model).cloned()
    }

    /// Notes the router's id for a catalog model.
    pub fn remember_route(&self, model: &str, router_id: &str) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(model.to_string(), router_id.to_string());
        }
    }

    /// Forgets every router id (llama-server changed state, so its list may differ).
    pub fn forget_routes(&self) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.clear();
        }
    }

    /// The client for llama-server at `base`, reusing its connections.
    pub fn upstream(&self, base: &str) -> crate::llama::upstream::Upstream {
        let Ok(mut slot) = self.upstream_client.lock() else {
            return crate::llama::upstream::Upstream::new(base);
        };
        match slot.as_ref() {
            Some(client) if client.base() == base.trim_end_matches('/') => client.clone(),
            _ => {
                let client = crate::llama::upstream::Upstream::new(base);
                *slot = Some(client.clone());
                client
            }
        }
    }

    /// Replaces the latest sample.
    pub fn set_latest(&self, sample: Metrics) {
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(sample);
        }
    }
}

/// Resolves once the server is stopping (at once if it already is).
pub async fn until_stopped(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopped| *stopped).await;
}
