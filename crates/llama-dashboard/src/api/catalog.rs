//! `/api/models…`, `/api/scan` and `/api/cleanup`: the catalog over HTTP. Every change is
//! published on the live event hub so open dashboards update without polling.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Body, Params, ok};
use crate::app::Shared;
use crate::db::{config, models};
use crate::error::{ApiError, ApiResult};
use crate::events::Topic;
use crate::scan::{self, ScanError};

/// The statuses a model may be given.
pub const STATUSES: [&str; 5] = ["idle", "loading", "loaded", "unloaded", "error"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    favorites: Option<bool>,
    status: Option<String>,
}

pub(super) async fn list(
    State(app): State<Shared>,
    Params(q): Params<ListQuery>,
) -> ApiResult<Response> {
    let rows = app
        .db
        .read(move |conn| {
            let rows = if q.favorites == Some(true) {
                models::get_favorites(conn)?
            } else {
                models::get_all(conn)?
            };
            Ok::<_, ApiError>(
                rows.into_iter()
                    .filter(|m| q.status.as_deref().is_none_or(|s| m.status == s))
                    .collect::<Vec<_>>(),
            )
        })
        .await?;
    Ok(ok(rows))
}

fn missing(id: &str) -> ApiError {
    ApiError::not_found(
        "model_not_found",
        format!("no model has the id `{id}`; GET /api/models lists them"),
    )
}

pub(super) async fn show(State(app): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let key = id.clone();
    let model = app
        .db
        .read(move |conn| models::get_by_id(conn, &key).map_err(ApiError::from))
        .await?;
    model.map(ok).ok_or_else(|| missing(&id))
}

/// Checks one field of a PATCH and returns the value to store.
fn checked(key: &str, value: &Value) -> ApiResult<Value> {
    let wrong = |what: &str| {
        Err(ApiError::bad_request(
            "invalid_field",
            format!("`{key}` must be {what}"),
        ))
    };
    match key {
        "name" | "type" => match value.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(value.clone()),
            _ => wrong("a non-empty string"),
        },
        "status" => match value.as_str() {
            Some(s) if STATUSES.contains(&s) => Ok(value.clone()),
            _ => wrong(&format!("one of {}", STATUSES.join(", "))),
        },
        "parameters" => match value {
            Value::Object(_) => Ok(Value::String(value.to_string())),
            Value::String(s) if serde_json::from_str::<Map<String, Value>>(s).is_ok() => {
                Ok(value.clone())
            }
            _ => wrong("a JSON object"),
        },
        "favorite" => match value {
            Value::Bool(b) => Ok(json!(i64::from(*b))),
            Value::Number(n) if matches!(n.as_i64(), Some(0 | 1)) => Ok(value.clone()),
            _ => wrong("true, false, 0 or 1"),
        },
        "params" | "quantization" => match value {
            Value::Null | Value::String(_) => Ok(value.clone()),
            _ => wrong("a string or null"),
        },
        "ctx_size" | "embedding_size" | "block_count" | "head_count" | "head_count_kv"
        | "ffn_dim" | "file_type" | "file_size" => match value.as_i64() {
            Some(n) if n >= 0 => Ok(value.clone()),
            _ => wrong("a whole number of 0 or more"),
        },
        "batch_size" | "threads" => match value.as_i64() {
            Some(n) if (1..=1_048_576).contains(&n) => Ok(value.clone()),
            _ => wrong("a whole number of 1 or more"),
        },
        "model_path" => Err(ApiError::bad_request(
            "read_only_field",
            "`model_path` is set by scans of the models folder and cannot be changed",
        )),
        "id" | "created_at" | "updated_at" => Err(ApiError::bad_request(
            "read_only_field",
            format!("`{key}` is kept by the dashboard and cannot be changed"),
        )),
        other => Err(ApiError::bad_request(
            "unknown_field",
            format!(
                "models have no field `{other}`; the fields are {}",
                models::COLUMNS.join(", ")
            ),
        )),
    }
}

async fn apply(app: &Shared, id: String, changes: Map<String, Value>) -> ApiResult<Response> {
    if changes.is_empty() {
        return Err(ApiError::bad_request(
            "empty_update",
            "send a JSON object with at least one field to change, e.g. {\"favorite\": true}",
        ));
    }
    let key = id.clone();
    let updated = app
        .db
        .write(move |tx| models::update(tx, &key, &changes).map_err(ApiError::from))
        .await?;
    let model = updated.ok_or_else(|| missing(&id))?;
    app.events
        .publish(Topic::Model, json!({"action": "updated", "model": &model}));
    Ok(ok(model))
}

pub(super) async fn update(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult<Response> {
    let changes = body
        .iter()
        .map(|(k, v)| Ok((k.clone(), checked(k, v)?)))
        .collect::<ApiResult<Map<String, Value>>>()?;
    apply(&app, id, changes).await
}

pub(super) async fn remove(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let key = id.clone();
    let deleted = app
        .db
        .write(move |tx| models::delete(tx, &key).map_err(ApiError::from))
        .await?;
    if !deleted {
        return Err(missing(&id));
    }
    app.events
        .publish(Topic::Model, json!({"action": "deleted", "id": &id}));
    Ok(ok(json!({"deleted": true, "id": id})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FavoriteBody {
    favorite: Option<bool>,
}

/// Sets `favorite` to the body's value, or toggles it when the body is empty.
pub(super) async fn favorite(
    State(app): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let wanted = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<FavoriteBody>(&body)
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_body",
                    format!("send {{\"favorite\": true|false}} or no body to toggle: {e}"),
                )
            })?
            .favorite
    };
    let key = id.clone();
    let current = app
        .db
        .read(move |conn| models::get_by_id(conn, &key).map_err(ApiError::from))
        .await?
        .ok_or_else(|| missing(&id))?;
    let value = wanted.unwrap_or(current.favorite == 0);
    let mut changes = Map::new();
    changes.insert("favorite".into(), json!(i64::from(value)));
    apply(&app, id, changes).await
}

/// Scans the configured models folder into the catalog (one scan at a time).
pub(super) async fn scan(State(app): State<Shared>) -> ApiResult<Response> {
    let _one_at_a_time = app.scan_lock.lock().await;
    let home = app.home.clone();
    let report = app
        .db
        .write(move |tx| {
            let root = config::models_dir(&config::get(tx, &home)?, &home);
            scan::scan(tx, &root, |_, _| {})
        })
        .await
        .map_err(|e| match e {
            ScanError::Root(path, io) => ApiError::new(
                422,
                "models_folder_unreadable",
                format!(
                    "cannot read the models folder {}: {io}; set baseModelsPath in the settings",
                    path.display()
                ),
            ),
            ScanError::Db(db) => ApiError::from(db),
        })?;
    app.counters
        .scans
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        source = "models",
        "scan found {} models in {} files: {} added, {} updated, {} unchanged, {} unreadable",
        report.models,
        report.files,
        report.added,
        report.updated,
        report.unchanged,
        report.failed.len()
    );
    app.events
        .publish(Topic::Catalog, json!({"action": "scan", "report": &report}));
    Ok(ok(report))
}

/// Removes the rows whose files are gone.
pub(super) async fn cleanup(State(app): State<Shared>) -> ApiResult<Response> {
    let removed = app
        .db
        .write(|tx| models::cleanup_missing_files(tx).map_err(ApiError::from))
        .await?;
    if removed > 0 {
        tracing::info!(
            source = "models",
            "cleanup removed {removed} models whose files are gone"
        );
    }
    app.events.publish(
        Topic::Catalog,
        json!({"action": "cleanup", "removed": removed}),
    );
    Ok(ok(json!({"removed": removed})))
}
