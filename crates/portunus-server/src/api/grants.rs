//! `/v1/grants`: superadmins grant users port ranges on clients; revoking one removes the rules
//! it no longer allows and pushes the change to the client.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::api::{Body, Caller, Params, created, mutate, ok, read};
use crate::app::Shared;
use crate::error::Result;
use crate::model::grants::{self, Grant, NewGrant};

/// `GET /v1/grants` filters.
#[derive(Debug, Deserialize)]
pub struct Filter {
    user: Option<String>,
    client_id: Option<String>,
}

/// `GET /v1/grants?user=&client_id=`
pub async fn list(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Params(f): Params<Filter>,
) -> Result<Response> {
    Ok(ok(read(
        &app,
        &caller,
        "grant.list",
        "grants",
        move |conn, who| grants::list(conn, who, f.user.as_deref(), f.client_id.as_deref()),
    )
    .await?))
}

/// `POST /v1/grants`
pub async fn create(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Body(body): Body<NewGrant>,
) -> Result<Response> {
    let grant = mutate(
        &app,
        &caller,
        "grant.create",
        "grants",
        |g: &Grant| {
            (
                format!("grant:{}", g.id),
                json!({"user_id": g.user_id, "client_id": g.client_id,
                   "ports": format!("{}-{}", g.port_start, g.port_end), "protocols": g.protocols}),
            )
        },
        move |tx, who| {
            who.require_superadmin("grant ports")?;
            grants::create(tx, &body)
        },
    )
    .await?;
    Ok(created(grant))
}

/// `DELETE /v1/grants/{id}`: returns the grant and the rules it took with it.
pub async fn revoke(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let resource = format!("grant:{id}");
    let (grant, removed) = mutate(
        &app,
        &caller,
        "grant.revoke",
        &resource,
        |(g, r): &(Grant, Vec<String>)| {
            (
                format!("grant:{}", g.id),
                json!({"user_id": g.user_id, "client_id": g.client_id, "removed_rules": r}),
            )
        },
        move |tx, who| {
            who.require_superadmin("revoke grants")?;
            grants::revoke(tx, &id)
        },
    )
    .await?;
    if !removed.is_empty() {
        app.hub.notify(&grant.client_id);
    }
    Ok(ok(json!({"revoked": grant, "removed_rules": removed})))
}
