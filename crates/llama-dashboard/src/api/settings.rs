//! `/api/config` and `/api/metadata/{key}`: the configuration (documented defaults merged under
//! saved values, every change checked before anything is stored) and free-form JSON metadata.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{Body, ok};
use crate::app::Shared;
use crate::db::{config, metadata};
use crate::error::{ApiError, ApiResult};

/// Keys longer than this are refused.
const MAX_KEY: usize = 256;

fn invalid(e: config::UpdateError) -> ApiError {
    match e {
        config::UpdateError::Invalid(bad) => ApiError::bad_request("invalid_setting", bad.message),
        config::UpdateError::Db(db) => ApiError::from(db),
    }
}

pub(super) async fn get_config(State(app): State<Shared>) -> ApiResult<Response> {
    let home = app.home.clone();
    let config = app
        .db
        .read(move |conn| config::get(conn, &home).map_err(ApiError::from))
        .await?;
    Ok(ok(config))
}

/// Changes the settings the body names; the others keep their values.
pub(super) async fn patch_config(
    State(app): State<Shared>,
    Body(changes): Body<Map<String, Value>>,
) -> ApiResult<Response> {
    let home = app.home.clone();
    let config = app
        .db
        .write(move |tx| config::update(tx, &home, &changes).map_err(invalid))
        .await?;
    tracing::info!(source = "api", "settings changed");
    Ok(ok(config))
}

/// Replaces the whole configuration: settings the body leaves out return to their defaults.
pub(super) async fn put_config(
    State(app): State<Shared>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult<Response> {
    config::validate(&body).map_err(|bad| ApiError::bad_request("invalid_setting", bad.message))?;
    let home = app.home.clone();
    let config = app
        .db
        .write(move |tx| {
            let mut config = config::defaults(&home);
            config.extend(body);
            config::save(tx, &config)?;
            Ok::<_, ApiError>(config)
        })
        .await?;
    tracing::info!(source = "api", "settings replaced");
    Ok(ok(config))
}

fn check_key(key: &str) -> ApiResult<()> {
    if key.is_empty() || key.len() > MAX_KEY || key.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_key",
            format!("a metadata key is 1 to {MAX_KEY} printable characters"),
        ));
    }
    Ok(())
}

pub(super) async fn get_metadata(
    State(app): State<Shared>,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    check_key(&key)?;
    let name = key.clone();
    let value = app
        .db
        .read(move |conn| metadata::get(conn, &name, Value::Null).map_err(ApiError::from))
        .await?;
    Ok(ok(json!({"key": key, "value": value})))
}

pub(super) async fn put_metadata(
    State(app): State<Shared>,
    Path(key): Path<String>,
    Body(value): Body<Value>,
) -> ApiResult<Response> {
    check_key(&key)?;
    let (name, stored) = (key.clone(), value.clone());
    app.db
        .write(move |tx| metadata::set(tx, &name, &stored).map_err(ApiError::from))
        .await?;
    Ok(ok(json!({"key": key, "value": value})))
}
