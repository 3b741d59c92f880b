//! `/api/metrics/latest|history`, `/api/logs` and the Prometheus export at `/metrics`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Params, limit, ok};
use crate::app::Shared;
use crate::db::{logs, metrics};
use crate::error::{ApiError, ApiResult};
use crate::sampler;

/// The newest sample: the one just taken when the sampler runs, else the newest stored row,
/// else `null`.
pub(super) async fn latest(State(app): State<Shared>) -> ApiResult<Response> {
    if let Some(sample) = app.latest() {
        return Ok(ok(sample));
    }
    let stored = app
        .db
        .read(|conn| metrics::get_latest(conn).map_err(ApiError::from))
        .await?;
    Ok(ok(stored))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    limit: Option<u32>,
}

/// Stored samples, newest first (`limit` 1–10000, default 100).
pub(super) async fn history(
    State(app): State<Shared>,
    Params(q): Params<HistoryQuery>,
) -> ApiResult<Response> {
    let n = limit(q.limit, metrics::DEFAULT_HISTORY, 10_000)?;
    let rows = app
        .db
        .read(move |conn| metrics::get_history(conn, n).map_err(ApiError::from))
        .await?;
    Ok(ok(rows))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsQuery {
    limit: Option<u32>,
    /// Comma-separated levels.
    level: Option<String>,
    source: Option<String>,
    after_id: Option<i64>,
}

/// Log entries, newest first, filtered by level(s), source and `after_id`.
pub(super) async fn logs(
    State(app): State<Shared>,
    Params(q): Params<LogsQuery>,
) -> ApiResult<Response> {
    let n = limit(q.limit, logs::DEFAULT_LIMIT, 10_000)?;
    let filter = logs::Filter {
        levels: match q.level.as_deref() {
            Some(text) => {
                logs::parse_levels(text).map_err(|m| ApiError::bad_request("invalid_level", m))?
            }
            None => Vec::new(),
        },
        source: q.source.filter(|s| !s.is_empty()),
        after_id: q.after_id,
    };
    let rows = app
        .db
        .read(move |conn| logs::query(conn, &filter, n).map_err(ApiError::from))
        .await?;
    Ok(ok(rows))
}

/// Deletes every log entry.
pub(super) async fn clear_logs(State(app): State<Shared>) -> ApiResult<Response> {
    let deleted = app
        .db
        .write(|tx| logs::clear(tx).map_err(ApiError::from))
        .await?;
    Ok(ok(json!({"deleted": deleted})))
}

/// The most recent proxied requests, newest first.
pub(super) async fn requests(State(app): State<Shared>) -> Response {
    let kept: Vec<crate::proxy::meter::RequestRecord> = app
        .requests
        .lock()
        .map(|k| k.iter().rev().cloned().collect())
        .unwrap_or_default();
    ok(kept)
}

/// The Prometheus text export: the latest sample and the server's counters.
pub(super) async fn prometheus(State(app): State<Shared>) -> Response {
    let mut out = String::with_capacity(4096);
    let sample = app.latest().unwrap_or_default();
    sampler::prometheus_text(
        &sample,
        u32::try_from(app.gpu_devices.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
        &mut out,
    );
    let c = &app.counters;
    let counters = [
        (
            "llama_dashboard_http_responses_2xx_total",
            "API answers with a 2xx or 3xx status.",
            &c.requests_2xx,
        ),
        (
            "llama_dashboard_http_responses_4xx_total",
            "API answers with a 4xx status.",
            &c.requests_4xx,
        ),
        (
            "llama_dashboard_http_responses_5xx_total",
            "API answers with a 5xx status.",
            &c.requests_5xx,
        ),
        (
            "llama_dashboard_http_refused_total",
            "Requests refused for a missing or wrong API key or a foreign Host header.",
            &c.unauthorized,
        ),
        (
            "llama_dashboard_scans_total",
            "Scans of the models folder.",
            &c.scans,
        ),
        (
            "llama_dashboard_samples_total",
            "Metrics samples taken.",
            &c.samples,
        ),
        (
            "llama_dashboard_samples_stored_total",
            "Metrics samples stored in the metrics table.",
            &c.samples_stored,
        ),
        (
            "llama_dashboard_metrics_pruned_total",
            "Metrics rows deleted by retention.",
            &c.metrics_pruned,
        ),
        (
            "llama_dashboard_proxy_requests_total",
            "Requests proxied to llama-server.",
            &c.proxied,
        ),
        (
            "llama_dashboard_proxy_cancelled_total",
            "Proxied requests whose client disconnected before the end.",
            &c.proxy_cancelled,
        ),
        (
            "llama_dashboard_proxy_tokens_total",
            "Tokens generated through the proxy.",
            &c.tokens,
        ),
        (
            "llama_dashboard_log_entries_written_total",
            "Log entries stored.",
            &app.log_stats.written,
        ),
        (
            "llama_dashboard_log_entries_dropped_total",
            "Log entries dropped because the queue was full or the database failed.",
            &app.log_stats.dropped,
        ),
        (
            "llama_dashboard_log_entries_pruned_total",
            "Log entries deleted by retention.",
            &app.log_stats.pruned,
        ),
    ];
    for (name, help, counter) in counters {
        sampler::prometheus_counter(&mut out, name, help, counter.load(Ordering::Relaxed));
    }
    sampler::prometheus_gauge(
        &mut out,
        "llama_dashboard_event_streams",
        "Open live event streams.",
        app.events.subscribers() as f64,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
