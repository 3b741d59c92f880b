//! `/api/server…`: the llama-server the dashboard owns — its state, and start, stop and restart
//! from the saved settings.

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::ok;
use crate::app::Shared;
use crate::db::config;
use crate::error::{ApiError, ApiResult};
use crate::llama::launch;
use crate::llama::supervisor::SupervisorError;

fn state_body(app: &Shared) -> serde_json::Value {
    json!({"server": app.llama.state(), "uptime": app.llama.uptime()})
}

pub(super) async fn show(State(app): State<Shared>) -> Response {
    ok(state_body(&app))
}

/// Starts llama-server from the saved settings and waits until it is ready (or failed).
pub async fn start_llama(app: &Shared) -> ApiResult<()> {
    let home = app.home.clone();
    let settings = app
        .db
        .read(move |conn| config::get(conn, &home).map_err(ApiError::from))
        .await?;
    let launch = launch::from_config(&settings, &app.home)
        .map_err(|m| ApiError::new(422, "llama_server_unavailable", m))?;
    app.llama.start(launch).await.map_err(|e| match e {
        SupervisorError::AlreadyRunning => ApiError::new(409, "already_running", e.to_string()),
        SupervisorError::StartFailed(_) => ApiError::new(502, "start_failed", e.to_string()),
    })
}

pub(super) async fn start(State(app): State<Shared>) -> ApiResult<Response> {
    start_llama(&app).await?;
    Ok(ok(state_body(&app)))
}

pub(super) async fn stop(State(app): State<Shared>) -> ApiResult<Response> {
    let stopped = app.llama.stop().await;
    Ok(ok(json!({"stopped": stopped, "server": app.llama.state()})))
}

pub(super) async fn restart(State(app): State<Shared>) -> ApiResult<Response> {
    app.llama.stop().await;
    start_llama(&app).await?;
    Ok(ok(state_body(&app)))
}
