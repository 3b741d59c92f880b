//! Per-owner caps, traffic quotas and usage, and server settings.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::api::{Body, Caller, Params, mutate, ok, read};
use crate::app::Shared;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::caps::{self, Caps};
use crate::model::quotas::{self, Quota, SetQuota};
use crate::model::{settings, users};

/// `GET /v1/users/{id}/caps`
pub async fn get_caps(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let resource = format!("user:{id}");
    Ok(ok(read(
        &app,
        &caller,
        "caps.read",
        &resource,
        move |conn, who| {
            let user = users::get_visible(conn, who, &id)?;
            caps::of_owner(conn, &user.id)
        },
    )
    .await?))
}

/// `PUT /v1/users/{id}/caps`: replaces the caps (all fields absent or null: no caps).
pub async fn put_caps(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(body): Body<caps::CapsInput>,
) -> Result<Response> {
    let resource = format!("user:{id}");
    let (user_id, set, clients) = mutate(
        &app,
        &caller,
        "caps.set",
        &resource,
        |(u, c, _): &(String, Caps, Vec<String>)| (format!("user:{u}"), json!({"caps": c})),
        move |tx, who| {
            who.require_superadmin("set caps")?;
            let user = users::resolve(tx, &id)?;
            let set = caps::set_owner(tx, &user.id, &Caps::from(body))?;
            // Clients enforce owner caps, so every client running this owner's rules changes.
            let clients = crate::model::rules::clients_of_owner(tx, &user.id)?;
            for client in &clients {
                crate::model::clients::bump_generation(tx, client)?;
            }
            Ok((user.id, set, clients))
        },
    )
    .await?;
    for client in &clients {
        app.hub.notify(client);
    }
    Ok(ok(json!({"user_id": user_id, "caps": set})))
}

/// `GET /v1/quotas` filters.
#[derive(Debug, Deserialize)]
pub struct QuotaFilter {
    user: Option<String>,
    client_id: Option<String>,
}

/// `GET /v1/quotas?user=&client_id=`
pub async fn list_quotas(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Params(f): Params<QuotaFilter>,
) -> Result<Response> {
    Ok(ok(read(
        &app,
        &caller,
        "quota.list",
        "quotas",
        move |conn, who| {
            let user = f.user.map(|u| users::resolve(conn, &u)).transpose()?;
            quotas::list(
                conn,
                Some(who),
                user.as_ref().map(|u| u.id.as_str()),
                f.client_id.as_deref(),
            )
        },
    )
    .await?))
}

/// `PUT /v1/quotas`
pub async fn put_quota(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Body(body): Body<SetQuota>,
) -> Result<Response> {
    let resource = format!("client:{}", body.client_id);
    let quota = mutate(
        &app,
        &caller,
        "quota.set",
        &resource,
        |q: &Quota| {
            (
                format!("quota:{}:{}", q.user_id, q.client_id),
                json!({"monthly_bytes": q.monthly_bytes}),
            )
        },
        move |tx, who| {
            who.require_superadmin("set quotas")?;
            quotas::set(tx, &body)
        },
    )
    .await?;
    app.hub.notify(&quota.client_id);
    Ok(ok(quota))
}

/// `GET /v1/usage` parameters.
#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    user: Option<String>,
    client_id: String,
    #[serde(default)]
    resolution: Option<String>,
    #[serde(default)]
    since: Option<String>,
}

/// `GET /v1/usage?client_id=&user=&resolution=1m|1h&since=RFC3339`
pub async fn usage(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Params(q): Params<UsageQuery>,
) -> Result<Response> {
    let resolution = q.resolution.unwrap_or_else(|| "1h".into());
    let since = match q.since.as_deref() {
        Some(text) => {
            crate::cli::parse_rfc3339(text).map_err(|m| Error::bad_request("invalid_since", m))?
        }
        None => ids::now_ms() - 30 * 86_400_000,
    };
    let resource = format!("client:{}", q.client_id);
    Ok(ok(read(&app, &caller, "usage.read", &resource, move |conn, who| {
        let user = match &q.user {
            Some(u) => users::resolve(conn, u)?.id,
            None => who.user_id.clone(),
        };
        let samples = quotas::samples(conn, who, &user, &q.client_id, &resolution, since)?;
        Ok(json!({"user_id": user, "client_id": q.client_id, "resolution": resolution, "samples": samples}))
    })
    .await?))
}

/// `GET /v1/settings`
pub async fn get_settings(State(app): State<Shared>, Caller(caller): Caller) -> Result<Response> {
    Ok(ok(read(
        &app,
        &caller,
        "settings.read",
        "settings",
        |conn, who| {
            who.require_superadmin("read settings")?;
            settings::all(conn)
        },
    )
    .await?))
}

/// `PATCH /v1/settings`: a JSON object of changes, applied all or nothing.
pub async fn patch_settings(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Body(body): Body<serde_json::Map<String, serde_json::Value>>,
) -> Result<Response> {
    let changed: Vec<String> = body.keys().cloned().collect();
    let all = mutate(
        &app,
        &caller,
        "settings.update",
        "settings",
        move |_| ("settings".to_string(), json!({"changed": changed})),
        move |tx, who| {
            who.require_superadmin("change settings")?;
            settings::update(tx, &body)
        },
    )
    .await?;
    Ok(ok(all))
}
