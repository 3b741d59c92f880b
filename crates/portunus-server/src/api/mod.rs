//! The operator HTTP API under `/v1`: JSON in and out, one error envelope
//! (`{"error":{"code":…,"message":…}}`), authentication by bearer token or session cookie (with
//! CSRF), and an audit row for every mutation and every denial.
//!
//! Handlers are thin: they authenticate, then run a closure from [`crate::model`] on the store's
//! writer thread ([`mutate`]) or on a pooled read connection ([`read`]); those two helpers are
//! the single place where outcomes are audited, so no handler can forget.

mod audit;
mod caller;
mod clients;
mod grants;
mod limits;
mod rules;
mod session;
mod users;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rusqlite::{Connection, Transaction};
use serde::de::DeserializeOwned;
use serde_json::json;

pub use caller::Caller;

use crate::app::Shared;
use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{Error, Kind, Result};

/// The `/v1` router over the shared state.
pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/setup", post(session::setup))
        .route("/v1/login", post(session::login))
        .route("/v1/logout", post(session::logout))
        .route("/v1/me", get(session::me))
        .route(
            "/v1/tokens",
            get(session::list_tokens).post(session::create_token),
        )
        .route(
            "/v1/tokens/{id}",
            axum::routing::delete(session::revoke_token),
        )
        .route("/v1/users", get(users::list).post(users::create))
        .route(
            "/v1/users/{id}",
            get(users::show).patch(users::update).delete(users::remove),
        )
        .route(
            "/v1/users/{id}/caps",
            get(limits::get_caps).put(limits::put_caps),
        )
        .route("/v1/clients", get(clients::list).post(clients::create))
        .route(
            "/v1/clients/{id}",
            get(clients::show)
                .patch(clients::rename)
                .delete(clients::revoke),
        )
        .route("/v1/clients/{id}/enrollments", post(clients::enroll))
        .route("/v1/grants", get(grants::list).post(grants::create))
        .route("/v1/grants/{id}", axum::routing::delete(grants::revoke))
        .route("/v1/rules", get(rules::list).post(rules::create))
        .route("/v1/rules/{id}", get(rules::show).delete(rules::remove))
        .route(
            "/v1/quotas",
            get(limits::list_quotas).put(limits::put_quota),
        )
        .route("/v1/usage", get(limits::usage))
        .route(
            "/v1/settings",
            get(limits::get_settings).patch(limits::patch_settings),
        )
        .route("/v1/audit", get(audit::list))
        .route("/v1/{*rest}", axum::routing::any(no_such_endpoint))
        .layer(middleware::from_fn_with_state(app.clone(), count_status))
        .with_state(app)
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn no_such_endpoint() -> Error {
    Error::new(
        Kind::NotFound,
        "no_such_endpoint",
        "no such API endpoint; see the README's API table",
    )
}

async fn count_status(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    app.metrics.count_status(response.status().as_u16());
    response
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(value) = self
            .retry_after
            .and_then(|wait| HeaderValue::from_str(&wait.to_string()).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
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
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(Error::bad_request(
                "invalid_body",
                match rejection {
                    JsonRejection::MissingJsonContentType(_) => {
                        "send the body as JSON with Content-Type: application/json".to_string()
                    }
                    other => format!("the request body is not valid here: {}", other.body_text()),
                },
            )),
        }
    }
}

/// Query-string parameters whose rejections use the error envelope.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Error> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Params(value))
            .map_err(|e| Error::bad_request("invalid_query", e.body_text()))
    }
}

/// 200 with a JSON body.
pub fn ok<T: serde::Serialize>(value: T) -> Response {
    axum::Json(value).into_response()
}

/// 201 with a JSON body.
pub fn created<T: serde::Serialize>(value: T) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

fn outcome_of(e: &Error) -> Outcome {
    match e.kind {
        Kind::Unauthorized | Kind::Forbidden | Kind::TooMany => Outcome::Denied,
        _ => Outcome::Error,
    }
}

/// Audits a denial or failure that happened before any store work.
pub fn audit_error(app: &Shared, actor: &str, action: &str, resource: &str, e: &Error) {
    app.audit(Event::now(
        actor,
        action,
        resource,
        outcome_of(e),
        json!({"code": e.code, "message": e.message}),
    ));
}

/// Runs a change in one `BEGIN IMMEDIATE` transaction as `caller`, and audits its outcome:
/// `ok` with the resource `resource_of` names, or `denied`/`error` with the error's code.
pub async fn mutate<T, F, R>(
    app: &Shared,
    caller: &Principal,
    action: &str,
    resource: &str,
    resource_of: R,
    f: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Transaction<'_>, &Principal) -> Result<T> + Send + 'static,
    R: FnOnce(&T) -> (String, serde_json::Value),
{
    let result = match caller.require_write() {
        Ok(()) => {
            let who = caller.clone();
            app.db.write(move |tx| f(tx, &who)).await
        }
        Err(e) => Err(e),
    };
    match &result {
        Ok(value) => {
            let (resource, details) = resource_of(value);
            app.audit(Event::now(
                &caller.user_id,
                action,
                resource,
                Outcome::Ok,
                details,
            ));
        }
        Err(e) => audit_error(app, &caller.user_id, action, resource, e),
    }
    result
}

/// Runs a read as `caller`; a denial is audited (successful reads are not).
pub async fn read<T, F>(
    app: &Shared,
    caller: &Principal,
    action: &str,
    resource: &str,
    f: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &Principal) -> Result<T> + Send + 'static,
{
    let who = caller.clone();
    let result = app.db.read(move |conn| f(conn, &who)).await;
    if let Err(e) = &result
        && outcome_of(e) == Outcome::Denied
    {
        audit_error(app, &caller.user_id, action, resource, e);
    }
    result
}

/// The remote address of a request, for throttling and audit.
pub fn remote(addr: Option<SocketAddr>) -> String {
    addr.map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Renders the Prometheus text exposition of the server's counters and gauges.
pub async fn prometheus(app: &Shared) -> String {
    let gauges = app
        .db
        .read(|conn| -> Result<(i64, i64, i64, i64)> {
            let one = |sql: &str| -> Result<i64> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
            Ok((
                one("SELECT count(*) FROM users")?,
                one("SELECT count(*) FROM clients WHERE revoked_at IS NULL")?,
                one("SELECT count(*) FROM rules")?,
                one("SELECT count(*) FROM audit")?,
            ))
        })
        .await
        .unwrap_or((0, 0, 0, 0));
    let m = &app.metrics;
    let stats = app.audit.stats();
    let mut out = String::new();
    let mut line = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    line(
        "portunus_api_requests_total",
        "counter",
        "API requests answered, by status class.",
        &[
            ("{class=\"2xx\"}", m.requests_ok.load(Ordering::Relaxed)),
            (
                "{class=\"4xx\"}",
                m.requests_client_error.load(Ordering::Relaxed),
            ),
            (
                "{class=\"5xx\"}",
                m.requests_server_error.load(Ordering::Relaxed),
            ),
        ],
    );
    line(
        "portunus_api_denials_total",
        "counter",
        "Requests refused with 403.",
        &[("", m.denials.load(Ordering::Relaxed))],
    );
    line(
        "portunus_login_failures_total",
        "counter",
        "Failed password logins.",
        &[("", m.login_failures.load(Ordering::Relaxed))],
    );
    line(
        "portunus_rule_pushes_total",
        "counter",
        "Rules accepted.",
        &[("", m.rule_pushes.load(Ordering::Relaxed))],
    );
    line(
        "portunus_audit_events_recorded_total",
        "counter",
        "Audit events handed to the writer.",
        &[("", stats.recorded)],
    );
    line(
        "portunus_audit_events_written_total",
        "counter",
        "Audit events stored.",
        &[("", stats.written)],
    );
    line(
        "portunus_audit_events_dropped_total",
        "counter",
        "Audit events dropped because the queue was full (oldest first).",
        &[("", stats.dropped)],
    );
    line(
        "portunus_audit_queue_depth",
        "gauge",
        "Audit events waiting for the writer.",
        &[("", stats.queued)],
    );
    line("portunus_users", "gauge", "Users.", &[("", n(gauges.0))]);
    line(
        "portunus_clients",
        "gauge",
        "Clients not revoked.",
        &[("", n(gauges.1))],
    );
    line(
        "portunus_clients_connected",
        "gauge",
        "Clients with a live control session.",
        &[("", app.hub.connected() as u64)],
    );
    line("portunus_rules", "gauge", "Rules.", &[("", n(gauges.2))]);
    line(
        "portunus_audit_rows",
        "gauge",
        "Rows in the audit table.",
        &[("", n(gauges.3))],
    );
    out
}

/// The metrics listener's router: `GET /metrics`.
pub fn metrics_router(app: Shared) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(app): State<Shared>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    prometheus(&app).await,
                )
            }),
        )
        .with_state(app)
}
