//! The REST API under `/api`, the Prometheus export at `/metrics`, and the live event stream at
//! `/api/events`. JSON in and out with one error envelope (`{"error":{"code","message"}}`).
//!
//! Access: when the server has an API key (always, when it listens beyond loopback), every
//! request but `/api/health` must carry it as `Authorization: Bearer KEY` or `X-API-Key: KEY`.
//! Without a key the server is on loopback only, and it answers only requests whose `Host`
//! names a loopback address, so a web page on another site cannot reach it by DNS rebinding.

mod catalog;
mod loading;
mod observe;
mod server;
mod settings;
mod stream;

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::json;

pub use loading::{change as change_model, reconcile, set_status};
pub use server::start_llama;

use crate::app::Shared;
use crate::error::ApiError;

/// The whole HTTP surface over the shared state.
pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/models", get(catalog::list))
        .route(
            "/api/models/{id}",
            get(catalog::show)
                .patch(catalog::update)
                .delete(catalog::remove),
        )
        .route("/api/models/{id}/favorite", post(catalog::favorite))
        .route("/api/models/{id}/load", post(loading::load))
        .route("/api/models/{id}/unload", post(loading::unload))
        .route("/api/scan", post(catalog::scan))
        .route("/api/cleanup", post(catalog::cleanup))
        .route(
            "/api/config",
            get(settings::get_config)
                .put(settings::put_config)
                .patch(settings::patch_config),
        )
        .route(
            "/api/metadata/{key}",
            get(settings::get_metadata).put(settings::put_metadata),
        )
        .route("/api/metrics/latest", get(observe::latest))
        .route("/api/metrics/history", get(observe::history))
        .route("/api/logs", get(observe::logs).delete(observe::clear_logs))
        .route("/api/server", get(server::show))
        .route("/api/server/start", post(server::start))
        .route("/api/server/stop", post(server::stop))
        .route("/api/server/restart", post(server::restart))
        .route("/api/events", get(stream::events))
        .route("/api/requests", get(observe::requests))
        .route("/metrics", get(observe::prometheus))
        .merge(crate::proxy::routes())
        .merge(crate::web::routes())
        .route("/api/{*rest}", axum::routing::any(no_such_endpoint))
        .fallback(no_such_endpoint)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})).into_response()
}

async fn no_such_endpoint() -> ApiError {
    ApiError::not_found(
        "no_such_endpoint",
        "no such endpoint; see the README's API table",
    )
}

/// Whether a `Host` header names this machine's loopback (any port).
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Checks access, then counts the answer by status.
async fn guard(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let refused = check_access(&app, &request);
    let response = match refused {
        Some(error) => {
            app.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            let mut response = error.into_response();
            if response.status() == 401 {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
        None => next.run(request).await,
    };
    app.counters.count_status(response.status().as_u16());
    response
}

fn check_access(app: &Shared, request: &Request) -> Option<ApiError> {
    let path = request.uri().path();
    match &app.api_key {
        _ if path == "/api/health" => None,
        // The page holds no data; it asks for the key itself.
        Some(_) if crate::web::is_public(path) => None,
        Some(expected) => match presented_key(request.headers()) {
            Some(given) if same_secret(given, expected) => None,
            Some(_) => Some(ApiError::new(
                401,
                "invalid_api_key",
                "the API key is wrong; use the key from the file the server printed at startup",
            )),
            None => Some(ApiError::new(
                401,
                "api_key_required",
                "send the API key as `Authorization: Bearer KEY` or `X-API-Key: KEY`",
            )),
        },
        None if app.loopback => {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            (!loopback_host(host)).then(|| {
                ApiError::new(
                    403,
                    "foreign_host",
                    "this dashboard answers only requests addressed to localhost; to reach it \
                     from elsewhere, serve it with an API key",
                )
            })
        }
        None => None,
    }
}

/// A JSON request body whose rejections use the error envelope.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::bad_request(
                "invalid_body",
                "send the body as JSON with Content-Type: application/json",
            )),
            Err(other) => Err(ApiError::bad_request(
                "invalid_body",
                format!("the request body is not valid here: {}", other.body_text()),
            )),
        }
    }
}

/// Query-string parameters whose rejections use the error envelope.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Params(value))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// 200 with a JSON body.
pub fn ok<T: serde::Serialize>(value: T) -> Response {
    axum::Json(value).into_response()
}

/// A `limit` query parameter: default when absent, refused outside `1..=max`.
pub fn limit(given: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match given {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit {n} is out of range; use 1 to {max}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_host_names_pass() {
        for host in [
            "localhost",
            "localhost:3000",
            "127.0.0.1:3000",
            "127.9.9.9",
            "[::1]:3000",
            "app.localhost",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:3000",
            "10.0.0.1",
            "",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
    }
}
