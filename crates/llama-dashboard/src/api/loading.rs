//! `POST /api/models/{id}/load` and `/unload`: load or unload a catalog model in the owned
//! llama-server (router mode), starting llama-server on demand. The model's `status` follows
//! what llama-server reports — `loading`, then `loaded`, or `error` with the reason in the
//! answer, the log and the live event — never a success that did not happen.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Map, json};

use super::ok;
use crate::app::Shared;
use crate::db::models::{self, Model};
use crate::error::{ApiError, ApiResult};
use crate::events::Topic;
use crate::llama::router;

/// How long a load may take before it is reported as failed.
const LOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an unload may take.
const UNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Sets a model's status, publishing the change (and the reason, for an error).
pub async fn set_status(
    app: &Shared,
    id: &str,
    status: &str,
    reason: Option<&str>,
) -> ApiResult<Option<Model>> {
    let mut changes = Map::new();
    changes.insert("status".into(), json!(status));
    let key = id.to_string();
    let updated = app
        .db
        .write(move |tx| models::update(tx, &key, &changes).map_err(ApiError::from))
        .await?;
    if let Some(model) = &updated {
        app.events.publish(
            Topic::Model,
            json!({"action": "updated", "model": model, "reason": reason}),
        );
    }
    Ok(updated)
}

pub(super) async fn load(State(app): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    app.activity.touch(&id);
    change(&app, &id, true).await.map(ok)
}

pub(super) async fn unload(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    change(&app, &id, false).await.map(ok)
}

/// Loads (`load = true`) or unloads a catalog model and waits until llama-server reports it
/// done; the row's status follows.
pub async fn change(app: &Shared, id: &str, load: bool) -> ApiResult<Model> {
    let key = id.to_string();
    let model = app
        .db
        .read(move |conn| models::get_by_id(conn, &key).map_err(ApiError::from))
        .await?
        .ok_or_else(|| {
            ApiError::not_found("model_not_found", format!("no model has the id `{id}`"))
        })?;
    let url = crate::proxy::ready_server(app).await?;
    let upstream = app.upstream(&url);
    let unreachable = |e: crate::llama::upstream::UpstreamError| {
        ApiError::new(502, "upstream_unreachable", e.to_string())
    };
    let listed = router::list(&upstream).await.map_err(unreachable)?;
    let entry = router::find(&listed, &model).cloned().ok_or_else(|| {
        ApiError::new(
            409,
            "not_in_router",
            format!(
                "llama-server does not list {}; it reads the models folder when it starts, so restart it (POST /api/server/restart) after adding files",
                model.name
            ),
        )
    })?;
    let verb = if load { "load" } else { "unload" };
    if load {
        set_status(app, id, "loading", None).await?;
    }
    tracing::info!(source = "models", "{verb}ing {}", model.name);
    let name = model.name.as_str();
    let fail = |reason: String| failed(app, id, name, load, reason);
    if let Err(reason) = router::command(&upstream, &entry.id, load).await {
        return Err(fail(reason).await);
    }
    let started = tokio::time::Instant::now();
    let limit = if load { LOAD_TIMEOUT } else { UNLOAD_TIMEOUT };
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = router::list(&upstream).await.map_err(unreachable)?;
        let Some(current) = router::find(&now, &model) else {
            return Err(fail("llama-server no longer lists it".into()).await);
        };
        let settled = match (load, current.catalog_status()) {
            (_, "error") => {
                let reason = current
                    .reason
                    .clone()
                    .unwrap_or_else(|| "llama-server reports the load failed".into());
                return Err(fail(reason).await);
            }
            (true, "loaded") | (false, "unloaded") => true,
            // Right after the request the router may not show `loading` yet.
            (true, "unloaded") if started.elapsed() > Duration::from_secs(5) => {
                return Err(fail("llama-server did not start loading it".into()).await);
            }
            _ => false,
        };
        if settled {
            break;
        }
        if started.elapsed() > limit {
            return Err(fail(format!("not {verb}ed within {} s", limit.as_secs())).await);
        }
    }
    let status = if load { "loaded" } else { "unloaded" };
    tracing::info!(source = "models", "{} is {status}", model.name);
    if load {
        // At its maximum of loaded models llama-server unloads the least recently used one.
        reconcile(app).await?;
    }
    set_status(app, id, status, None).await?.ok_or_else(|| {
        ApiError::not_found(
            "model_not_found",
            format!("model `{id}` was deleted meanwhile"),
        )
    })
}

/// Marks a failed load or unload: the row's status, the log, and the error to answer with.
async fn failed(app: &Shared, id: &str, name: &str, load: bool, reason: String) -> ApiError {
    let verb = if load { "load" } else { "unload" };
    tracing::error!(source = "models", "could not {verb} {name}: {reason}");
    let _ = set_status(app, id, "error", Some(&reason)).await;
    ApiError::new(
        502,
        if load { "load_failed" } else { "unload_failed" },
        reason,
    )
}

/// Makes catalog statuses match what llama-server reports: every model it lists takes its
/// state, and when it is not running nothing is loaded. Returns how many rows changed.
pub async fn reconcile(app: &Shared) -> ApiResult<usize> {
    let all = app
        .db
        .read(|conn| models::get_all(conn).map_err(ApiError::from))
        .await?;
    let listed = match app.llama.state() {
        crate::llama::supervisor::State::Ready { url, .. } => {
            router::list(&app.upstream(&url)).await.ok()
        }
        _ => Some(Vec::new()),
    };
    let Some(listed) = listed else {
        return Ok(0);
    };
    let mut changed = 0;
    for model in all {
        let wanted = match router::find(&listed, &model) {
            Some(entry) => {
                app.remember_route(&model.id, &entry.id);
                entry.catalog_status()
            }
            None if matches!(model.status.as_str(), "loaded" | "loading") => "unloaded",
            None => continue,
        };
        // A load in progress owns the row until it settles.
        if model.status == "loading" && wanted == "unloaded" && !listed.is_empty() {
            continue;
        }
        if model.status != wanted && !(model.status == "idle" && wanted == "unloaded") {
            set_status(app, &model.id, wanted, None).await?;
            changed += 1;
        }
    }
    Ok(changed)
}
