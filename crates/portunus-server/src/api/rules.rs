//! `/v1/rules`: push, list, show and remove forwarding rules. Every push is checked against the
//! owner's grants; accepted changes reach the client through the control hub.

use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::api::{Body, Caller, Params, created, mutate, ok, read};
use crate::app::Shared;
use crate::error::Result;
use crate::model::rules::{self, NewRule, Rule};

/// `GET /v1/rules` filter.
#[derive(Debug, Deserialize)]
pub struct Filter {
    client_id: Option<String>,
}

/// `GET /v1/rules?client_id=`
pub async fn list(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Params(f): Params<Filter>,
) -> Result<Response> {
    let resource = f
        .client_id
        .as_ref()
        .map_or_else(|| "rules".to_string(), |c| format!("client:{c}"));
    Ok(ok(read(
        &app,
        &caller,
        "rule.list",
        &resource,
        move |conn, who| rules::list(conn, who, f.client_id.as_deref()),
    )
    .await?))
}

/// `POST /v1/rules`
pub async fn create(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Body(body): Body<NewRule>,
) -> Result<Response> {
    let resource = format!("client:{}", body.client_id);
    let rule = mutate(
        &app,
        &caller,
        "rule.create",
        &resource,
        |r: &Rule| {
            (
                format!("rule:{}", r.id),
                json!({"client_id": r.client_id, "owner_id": r.owner_id, "protocol": r.protocol,
                   "listen": r.listen.to_string(), "targets": r.targets.len()}),
            )
        },
        move |tx, who| rules::create(tx, who, &body),
    )
    .await?;
    app.metrics.rule_pushes.fetch_add(1, Ordering::Relaxed);
    app.hub.notify(&rule.client_id);
    Ok(created(rule))
}

/// `GET /v1/rules/{id}`
pub async fn show(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let resource = format!("rule:{id}");
    Ok(ok(read(
        &app,
        &caller,
        "rule.read",
        &resource,
        move |conn, who| rules::get_visible(conn, who, &id),
    )
    .await?))
}

/// `DELETE /v1/rules/{id}`
pub async fn remove(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let resource = format!("rule:{id}");
    let rule = mutate(
        &app,
        &caller,
        "rule.delete",
        &resource,
        |r: &Rule| (format!("rule:{}", r.id), json!({"client_id": r.client_id})),
        move |tx, who| rules::delete(tx, who, &id),
    )
    .await?;
    app.hub.notify(&rule.client_id);
    Ok(ok(json!({"deleted": rule})))
}
