//! The OpenAI-compatible proxy on the dashboard's own port: `/v1/models` lists the catalog,
//! and `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings` are forwarded to the
//! llama-server the dashboard owns, routed by the request's `model` (a catalog name or id),
//! starting llama-server on demand. Responses stream back frame by frame as they arrive; a
//! client that disconnects drops the upstream request with it, which makes llama-server stop
//! generating. Each request's time to first token, tokens and tokens per second are recorded
//! ([`meter`]) and published to live dashboards.

pub mod catalog;
pub mod meter;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::app::Shared;
use crate::db::models::{self, Model};
use crate::error::{ApiError, ApiResult};
use crate::llama::supervisor::State as ServerState;
use meter::{Metered, RequestRecord};

/// Largest request body accepted (prompts with long contexts, base64 images).
pub const MAX_BODY: usize = 32 << 20;

/// The `/v1` routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// The name to send when llama-server's model list cannot be read: the file name without
/// `.gguf` (and, for a split model, without the shard suffix).
pub fn router_id(model: &Model) -> String {
    model
        .name
        .strip_suffix(".gguf")
        .unwrap_or(&model.name)
        .to_string()
}

async fn list_models(State(app): State<Shared>) -> ApiResult<Response> {
    let rows = app
        .db
        .read(|conn| models::get_all(conn).map_err(ApiError::from))
        .await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|m| {
            json!({
                "id": m.name,
                "object": "model",
                "created": m.created_at.unwrap_or(0),
                "owned_by": "llama-dashboard",
                "meta": {"id": m.id, "status": m.status, "quantization": m.quantization,
                         "ctx_size": m.ctx_size, "file_size": m.file_size},
            })
        })
        .collect();
    Ok(crate::api::ok(json!({"object": "list", "data": data})))
}

async fn chat(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    forward(app, "/v1/chat/completions", &headers, &body).await
}

async fn completions(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    forward(app, "/v1/completions", &headers, &body).await
}

async fn embeddings(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    forward(app, "/v1/embeddings", &headers, &body).await
}

/// A request body's top-level fields, each value kept as the client wrote it: only `model` is
/// read and replaced, so a long prompt is copied once and never parsed into a tree, and numbers
/// reach llama-server digit for digit.
type Fields<'a> = BTreeMap<String, &'a RawValue>;

/// The body's fields and the model it names.
fn read_request(body: &[u8]) -> ApiResult<(Fields<'_>, String)> {
    let fields: Fields<'_> = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("send a JSON object as in the OpenAI API: {e}"),
        )
    })?;
    let model = fields
        .get("model")
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "model_required",
                "name the model in `model` (GET /v1/models lists them)",
            )
        })?;
    Ok((fields, model))
}

/// The body to send upstream: the client's fields with `model` set to `routed`.
fn with_model(fields: &Fields<'_>, routed: &str) -> ApiResult<Vec<u8>> {
    let size: usize = fields
        .iter()
        .map(|(k, v)| k.len() + v.get().len() + 4)
        .sum();
    let mut body = Vec::with_capacity(size + routed.len() + 16);
    let write = |body: &mut Vec<u8>, text: &str| {
        serde_json::to_writer(body, text)
            .map_err(|e| ApiError::internal("building the upstream request", e))
    };
    body.extend_from_slice(b"{\"model\":");
    write(&mut body, routed)?;
    for (key, value) in fields.iter().filter(|(key, _)| *key != "model") {
        body.push(b',');
        write(&mut body, key)?;
        body.push(b':');
        body.extend_from_slice(value.get().as_bytes());
    }
    body.push(b'}');
    Ok(body)
}

/// The catalog model a request names: by id, by name, or by name without `.gguf`.
async fn resolve(app: &Shared, requested: &str) -> ApiResult<Arc<Model>> {
    let found = catalog::resolve(app, requested).await?;
    found.ok_or_else(|| {
        ApiError::not_found(
            "model_not_found",
            format!("no model `{requested}` in the catalog; GET /v1/models lists them (scan first if it is missing)"),
        )
    })
}

/// How long a request waits for a llama-server that is starting.
const START_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The address of a ready llama-server, starting it if it is not running.
pub async fn ready_server(app: &Shared) -> ApiResult<String> {
    if let ServerState::Ready { url, .. } = app.llama.state() {
        return Ok(url);
    }
    match crate::api::start_llama(app).await {
        Ok(())
        | Err(ApiError {
            code: "already_running",
            ..
        }) => {}
        Err(e) => return Err(e),
    }
    // Another request (or the autostart) may have started it: wait for that start to settle.
    let mut changes = app.llama.subscribe();
    let settled = tokio::time::timeout(START_WAIT, async {
        loop {
            if !matches!(&*changes.borrow_and_update(), ServerState::Starting { .. }) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    let _ = settled.await;
    match app.llama.state() {
        ServerState::Ready { url, .. } => Ok(url),
        other => Err(ApiError::new(
            503,
            "llama_server_unavailable",
            format!(
                "llama-server is not ready ({}); see GET /api/server",
                json!(other)
            ),
        )),
    }
}

/// Headers that belong to one connection and are not passed on.
const HOP_BY_HOP: [header::HeaderName; 4] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
];

async fn forward(
    app: Shared,
    endpoint: &'static str,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    if body.len() > MAX_BODY {
        return Err(ApiError::new(
            413,
            "body_too_large",
            format!("request bodies are limited to {MAX_BODY} bytes"),
        ));
    }
    let (request, requested) = read_request(body)?;
    let model = resolve(&app, &requested).await?;
    app.activity.touch(&model.id);
    let url = ready_server(&app).await?;
    let upstream = app.upstream(&url);
    // A model the catalog has as loaded goes straight to the router id last seen for it;
    // anything else asks the router first (its id, and whether it must load).
    let cached = (model.status == "loaded")
        .then(|| app.route(&model.id))
        .flatten();
    let (routed, loads_on_demand) = match cached {
        Some(id) => (Some(id), false),
        None => {
            let entry = match crate::llama::router::list(&upstream).await {
                Ok(listed) => crate::llama::router::find(&listed, &model).cloned(),
                Err(_) => None,
            };
            // llama-server loads a model on demand; the row says so while it does, and takes
            // the router's word once the answer starts.
            let loads = entry
                .as_ref()
                .is_some_and(|e| e.catalog_status() != "loaded");
            if loads {
                crate::api::set_status(&app, &model.id, "loading", None).await?;
            }
            if let Some(e) = &entry {
                app.remember_route(&model.id, &e.id);
            }
            (entry.map(|e| e.id), loads)
        }
    };
    let rewritten = with_model(&request, &routed.unwrap_or_else(|| router_id(&model)))?;
    let mut forwarded = Request::post(endpoint)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(rewritten))
        .map_err(|e| ApiError::internal("building the upstream request", e))?;
    if let Some(accept) = headers.get(header::ACCEPT) {
        forwarded
            .headers_mut()
            .insert(header::ACCEPT, accept.clone());
    }
    let started = Instant::now();
    let response = upstream
        .send(forwarded)
        .await
        .map_err(|e| ApiError::new(502, "upstream_unreachable", e.to_string()));
    if loads_on_demand {
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::api::reconcile(&app).await {
                tracing::warn!(source = "models", "could not read model states: {e}");
            }
        });
    }
    let (mut parts, incoming) = response?.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    parts.headers.insert(
        "x-llama-dashboard-model",
        HeaderValue::from_str(&model.id).unwrap_or(HeaderValue::from_static("")),
    );
    let record = RequestRecord {
        endpoint: endpoint.to_string(),
        model: requested,
        status: parts.status.as_u16(),
        started_at: models::now(),
        ..RequestRecord::default()
    };
    app.activity.begin(&model.id);
    let recorder = Arc::clone(&app);
    let finish: meter::Finish = Arc::new(move |r| {
        recorder.activity.end(&model.id);
        recorder.record_request(r);
    });
    Ok(Response::from_parts(
        parts,
        Body::new(Metered::new(incoming, started, record, finish)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_model_is_rewritten_and_every_other_value_is_sent_as_written() {
        let body = br#"{"model":"llama.gguf","temperature":0.1000000000000000055511151231257827,
            "seed":123456789012345678901234567890,"messages":[{"role":"user","content":"caf\u00e9 \"quoted\""}],
            "mo\u0064e":1}"#;
        let (fields, model) = read_request(body).unwrap();
        assert_eq!(model, "llama.gguf");
        let sent = with_model(&fields, "llama").unwrap();
        let sent = String::from_utf8(sent).unwrap();
        assert!(sent.contains(r#""model":"llama""#), "{sent}");
        assert!(!sent.contains("llama.gguf"), "{sent}");
        for kept in [
            r#""temperature":0.1000000000000000055511151231257827"#,
            r#""seed":123456789012345678901234567890"#,
            r#""content":"caf\u00e9 \"quoted\"""#,
            r#""mode":1"#,
        ] {
            assert!(sent.contains(kept), "{kept} in {sent}");
        }
        let parsed: Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(parsed["messages"][0]["content"], "café \"quoted\"");
    }

    #[test]
    fn a_body_that_is_not_an_object_naming_a_model_is_refused() {
        for (body, code) in [
            (&br#"["model"]"#[..], "invalid_body"),
            (b"{\"model\": ", "invalid_body"),
            (br#"{"prompt":"hi"}"#, "model_required"),
            (br#"{"model":7}"#, "model_required"),
        ] {
            let error = read_request(body).unwrap_err();
            assert_eq!((error.status, error.code), (400, code), "{body:?}");
        }
    }
}
