//! `llama-stand-in`: a small stand-in for llama.cpp's `llama-server` in router mode, so the
//! dashboard's lifecycle, load/unload, proxy and metrics can be tested (and tried out) where no
//! real llama-server or model is at hand. It answers the API the dashboard uses with the shapes
//! the real server gives — `/health`, `GET /models`, `POST /models/load|unload`, streamed
//! and whole chat and text completions with `timings` and `usage`, embeddings, and the
//! Prometheus `/metrics` per model — and "generates" a fixed text at a set pace instead of
//! running a model. A client that disconnects mid-stream cancels its generation, as in
//! llama-server, and the cancellation is printed like llama-server prints it.
//!
//! It takes llama-server's own flags (`--models-dir`, `--model`, `--host`, `--port`,
//! `--metrics`, `--models-max`, `--no-models-autoload`; others are accepted and ignored), and
//! reads its pace and faults from the environment:
//!
//! - `LLAMA_STAND_IN_TOKEN_MS`: milliseconds per generated token (default 2);
//! - `LLAMA_STAND_IN_LOAD_MS`: milliseconds a load takes (default 100);
//! - `LLAMA_STAND_IN_STARTUP_MS`: milliseconds `/health` answers 503 after start (default 0);
//! - `LLAMA_STAND_IN_FAIL`: comma-separated model ids whose load fails (exit code 1).
//!
//! Unlike the real server it serves embeddings without `--embeddings`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What a model is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Unloaded,
    Loading,
    Loaded,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Unloaded => "unloaded",
            Status::Loading => "loading",
            Status::Loaded => "loaded",
        }
    }
}

/// Prometheus counters of one model, as llama-server keeps them.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    prompt_tokens: u64,
    prompt_seconds: f64,
    predicted_tokens: u64,
    predicted_seconds: f64,
    decodes: u64,
    processing: u64,
}

#[derive(Debug)]
struct Entry {
    path: PathBuf,
    status: Status,
    failed: bool,
    last_used: Instant,
    counters: Counters,
}

#[derive(Debug)]
struct Options {
    models_dir: Option<PathBuf>,
    model: Option<PathBuf>,
    alias: Option<String>,
    host: String,
    port: u16,
    metrics: bool,
    models_max: usize,
    autoload: bool,
}

#[derive(Debug)]
struct Pace {
    token: Duration,
    load: Duration,
    startup: Duration,
    failing: Vec<String>,
}

struct Server {
    models: Mutex<BTreeMap<String, Entry>>,
    options: Options,
    pace: Pace,
    started: Instant,
    program: String,
    next_task: Mutex<u64>,
}

type Shared = Arc<Server>;

fn main() -> std::process::ExitCode {
    let options = match parse_args(std::env::args().skip(1).collect()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return std::process::ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::from(1)
        }
    }
}

fn parse_args(args: Vec<String>) -> Result<Options, String> {
    let mut options = Options {
        models_dir: None,
        model: None,
        alias: None,
        host: "127.0.0.1".into(),
        port: 8080,
        metrics: false,
        models_max: 4,
        autoload: true,
    };
    let mut args = args.into_iter().peekable();
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--models-dir" => options.models_dir = Some(PathBuf::from(value(&flag)?)),
            "-m" | "--model" => options.model = Some(PathBuf::from(value(&flag)?)),
            "-a" | "--alias" => options.alias = Some(value(&flag)?),
            "--host" => options.host = value(&flag)?,
            "--port" => {
                let text = value(&flag)?;
                options.port = text
                    .parse()
                    .map_err(|_| format!("--port: `{text}` is not a port"))?;
            }
            "--models-max" => {
                let text = value(&flag)?;
                options.models_max = text
                    .parse()
                    .map_err(|_| format!("--models-max: `{text}` is not a number"))?;
            }
            "--metrics" => options.metrics = true,
            "--models-autoload" => options.autoload = true,
            "--no-models-autoload" => options.autoload = false,
            other if other.starts_with('-') => {
                // A flag of llama-server's we do not act on; skip its value, if any.
                if args.peek().is_some_and(|next| !next.starts_with('-')) {
                    args.next();
                }
            }
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    if options.models_dir.is_none() && options.model.is_none() {
        return Err("give --models-dir DIR (router mode) or --model FILE".into());
    }
    Ok(options)
}

fn env_ms(name: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default),
    )
}

/// The models a models folder holds, named as the router names them: a file at the top by its
/// stem, a sub-folder by the folder's name (its model being the first shard or the one file
/// that is not a multimodal projector).
fn discover(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    let is_model = |p: &Path| {
        p.extension().is_some_and(|e| e == "gguf")
            && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("mmproj"))
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| is_model(p))
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            if let Some(first) = files.into_iter().next() {
                found.insert(entry.file_name().to_string_lossy().into_owned(), first);
            }
        } else if is_model(&path)
            && !path.to_string_lossy().contains("-of-0")
            && let Some(stem) = path.file_stem()
        {
            found.insert(stem.to_string_lossy().into_owned(), path);
        }
    }
    found
}

async fn serve(options: Options) -> Result<(), String> {
    let mut models = BTreeMap::new();
    let single = options.model.clone();
    if let Some(dir) = &options.models_dir {
        for (id, path) in discover(dir) {
            models.insert(id, entry(path, Status::Unloaded));
        }
    }
    if let Some(path) = &single {
        let id = options.alias.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        models.insert(id, entry(path.clone(), Status::Loaded));
    }
    let pace = Pace {
        token: env_ms("LLAMA_STAND_IN_TOKEN_MS", 2),
        load: env_ms("LLAMA_STAND_IN_LOAD_MS", 100),
        startup: env_ms("LLAMA_STAND_IN_STARTUP_MS", 0),
        failing: std::env::var("LLAMA_STAND_IN_FAIL")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    let listener = tokio::net::TcpListener::bind((options.host.as_str(), options.port))
        .await
        .map_err(|e| {
            format!(
                "couldn't bind HTTP server socket, hostname: {}, port: {}: {e}",
                options.host, options.port
            )
        })?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("main: stand-in for llama-server, {} models", models.len());
    let server = Arc::new(Server {
        models: Mutex::new(models),
        options,
        pace,
        started: Instant::now(),
        program: std::env::args().next().unwrap_or_default(),
        next_task: Mutex::new(0),
    });
    let app = Router::new()
        .route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/models", get(list_models))
        .route("/v1/models", get(list_models))
        .route("/models/load", post(load))
        .route("/models/unload", post(unload))
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completion))
        .route("/completions", post(completion))
        .route("/v1/embeddings", post(embeddings))
        .route("/embeddings", post(embeddings))
        .route("/metrics", get(metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "File Not Found", "not_found_error") })
        .with_state(server);
    eprintln!("main: server is listening on http://{address} - starting the main loop");
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(terminated())
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("srv    operator(): cleaning up before exit...");
    Ok(())
}

async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

fn entry(path: PathBuf, status: Status) -> Entry {
    Entry {
        path,
        status,
        failed: false,
        last_used: Instant::now(),
        counters: Counters::default(),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn error(status: StatusCode, message: &str, kind: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": status.as_u16(), "message": message, "type": kind}})),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, message, "invalid_request_error")
}

impl Server {
    fn models(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.models.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn task_id(&self) -> u64 {
        let mut next = self.next_task.lock().unwrap_or_else(|e| e.into_inner());
        *next += 1;
        *next
    }

    /// Starts loading a model, evicting the least recently used loaded one when at the
    /// maximum. The load completes (or fails) after the load time.
    fn begin_load(self: &Arc<Self>, id: &str) {
        {
            let mut models = self.models();
            let busy = models
                .values()
                .filter(|e| e.status != Status::Unloaded)
                .count();
            if self.options.models_max > 0 && busy >= self.options.models_max {
                let oldest = models
                    .iter()
                    .filter(|(_, e)| e.status == Status::Loaded)
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest
                    && let Some(e) = models.get_mut(&oldest)
                {
                    e.status = Status::Unloaded;
                    eprintln!("srv      load: models_max reached, unloading '{oldest}'");
                }
            }
            if let Some(e) = models.get_mut(id) {
                e.status = Status::Loading;
                e.failed = false;
                e.last_used = Instant::now();
            }
        }
        eprintln!("srv      load: loading model '{id}'");
        let server = Arc::clone(self);
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(server.pace.load).await;
            let fails = server.pace.failing.contains(&id);
            let mut models = server.models();
            if let Some(e) = models.get_mut(&id) {
                if e.status != Status::Loading {
                    return;
                }
                if fails {
                    e.status = Status::Unloaded;
                    e.failed = true;
                    eprintln!("E srv      load: failed to load model '{id}': exit code 1");
                } else {
                    e.status = Status::Loaded;
                    e.counters = Counters::default();
                    eprintln!("srv      load: model '{id}' is loaded");
                }
            }
        });
    }
}

async fn health(State(server): State<Shared>) -> Response {
    if server.started.elapsed() < server.pace.startup {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Loading model",
            "unavailable_error",
        );
    }
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn list_models(State(server): State<Shared>) -> Response {
    let created = now_secs();
    let data: Vec<Value> = server
        .models()
        .iter()
        .map(|(id, e)| {
            let mut status = json!({
                "value": e.status.name(),
                "args": [server.program, "--host", "127.0.0.1", "--port", "0",
                         "--alias", id, "--model", e.path.display().to_string()],
            });
            if e.failed {
                status["failed"] = json!(true);
                status["exit_code"] = json!(1);
            }
            json!({"id": id, "aliases": [], "tags": [], "object": "model",
                   "owned_by": "llamacpp", "created": created, "status": status})
        })
        .collect();
    axum::Json(json!({"data": data, "object": "list"})).into_response()
}

fn model_field(body: &Value) -> Option<String> {
    body["model"].as_str().map(str::to_string)
}

async fn load(State(server): State<Shared>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = model_field(&body) else {
        return invalid("model name is missing from the request");
    };
    let status = server.models().get(&id).map(|e| e.status);
    match status {
        None => error(StatusCode::NOT_FOUND, "File Not Found", "not_found_error"),
        Some(Status::Loading | Status::Loaded) => invalid("model is already running"),
        Some(Status::Unloaded) => {
            server.begin_load(&id);
            axum::Json(json!({"success": true})).into_response()
        }
    }
}

async fn unload(State(server): State<Shared>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = model_field(&body) else {
        return invalid("model name is missing from the request");
    };
    let mut models = server.models();
    match models.get_mut(&id) {
        None => error(StatusCode::NOT_FOUND, "File Not Found", "not_found_error"),
        Some(e) if e.status == Status::Unloaded => invalid("model is not running"),
        Some(e) => {
            e.status = Status::Unloaded;
            eprintln!("srv    unload: model '{id}' unloaded");
            axum::Json(json!({"success": true})).into_response()
        }
    }
}

/// Waits until a model can serve a request, loading it first when autoload is on.
async fn ready_model(server: &Shared, body: &Value) -> Result<String, Response> {
    let Some(id) = model_field(body) else {
        return Err(invalid("model name is missing from the request"));
    };
    let status = server.models().get(&id).map(|e| e.status);
    match status {
        None => return Err(invalid(&format!("model '{id}' not found"))),
        Some(Status::Unloaded) if !server.options.autoload => {
            return Err(invalid(&format!("model '{id}' is not loaded")));
        }
        Some(Status::Unloaded) => server.begin_load(&id),
        _ => {}
    }
    let deadline = Instant::now() + server.pace.load * 5 + Duration::from_secs(5);
    loop {
        let (status, failed) = match server.models().get(&id) {
            Some(e) => (e.status, e.failed),
            None => return Err(invalid(&format!("model '{id}' not found"))),
        };
        match status {
            Status::Loaded => break,
            Status::Unloaded if failed => {
                return Err(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("model '{id}' failed to load"),
                    "server_error",
                ));
            }
            _ if Instant::now() > deadline => {
                return Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Loading model",
                    "unavailable_error",
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    if let Some(e) = server.models().get_mut(&id) {
        e.last_used = Instant::now();
    }
    Ok(id)
}

/// The fixed words the stand-in "generates", in turn.
const WORDS: [&str; 12] = [
    "The", " stand", "-in", " says", " hello", ",", " one", " token", " at", " a", " time", ".",
];

fn prompt_tokens(body: &Value) -> u64 {
    let text = match (&body["messages"], &body["prompt"]) {
        (Value::Array(messages), _) => messages
            .iter()
            .map(|m| m["content"].as_str().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" "),
        (_, Value::String(prompt)) => prompt.clone(),
        _ => String::new(),
    };
    (text.split_whitespace().count() as u64).max(1) + 4
}

fn wanted_tokens(body: &Value) -> u64 {
    body["max_tokens"]
        .as_u64()
        .or_else(|| body["n_predict"].as_u64())
        .or_else(|| body["max_completion_tokens"].as_u64())
        .unwrap_or(16)
        .clamp(1, 100_000)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Chat,
    Text,
}

async fn chat(State(server): State<Shared>, body: Bytes) -> Response {
    generate(server, body, Kind::Chat).await
}

async fn completion(State(server): State<Shared>, body: Bytes) -> Response {
    generate(server, body, Kind::Text).await
}

/// One piece of a stream (or the whole answer), in llama-server's shapes.
fn chunk(kind: Kind, id: &str, model: &str, text: Option<&str>, finish: Option<&str>) -> Value {
    let (object, choice) = match kind {
        Kind::Chat => {
            let delta = match text {
                Some(t) => json!({"content": t}),
                None if finish.is_none() => json!({"role": "assistant", "content": null}),
                None => json!({}),
            };
            (
                "chat.completion.chunk",
                json!({"finish_reason": finish, "index": 0, "delta": delta}),
            )
        }
        Kind::Text => (
            "text_completion",
            json!({"text": text.unwrap_or(""), "index": 0, "logprobs": null,
                   "finish_reason": finish}),
        ),
    };
    json!({"choices": [choice], "created": now_secs(), "id": id, "model": model,
           "system_fingerprint": "b0-stand-in", "object": object})
}

fn timings(prompt_n: u64, prompt_ms: f64, predicted_n: u64, predicted_ms: f64) -> Value {
    let per_second = |n: u64, ms: f64| {
        if ms > 0.0 {
            n as f64 * 1000.0 / ms
        } else {
            0.0
        }
    };
    json!({
        "cache_n": 0,
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_second": per_second(prompt_n, prompt_ms),
        "predicted_n": predicted_n,
        "predicted_ms": predicted_ms,
        "predicted_per_second": per_second(predicted_n, predicted_ms),
    })
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"completion_tokens": completion, "prompt_tokens": prompt,
           "total_tokens": prompt + completion})
}

async fn generate(server: Shared, body: Bytes, kind: Kind) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return invalid("the request body is not JSON");
    };
    let model = match ready_model(&server, &body).await {
        Ok(model) => model,
        Err(answer) => return answer,
    };
    let task = server.task_id();
    let prompt_n = prompt_tokens(&body);
    let wanted = wanted_tokens(&body);
    let stream = body["stream"].as_bool().unwrap_or(false);
    let id = format!("chatcmpl-stand-in-{task}");
    let started = Instant::now();
    // "Processing the prompt" takes one token's time.
    tokio::time::sleep(server.pace.token).await;
    let prompt_ms = started.elapsed().as_secs_f64() * 1000.0;
    count(&server, &model, |c| {
        c.prompt_tokens += prompt_n;
        c.prompt_seconds += prompt_ms / 1000.0;
        c.processing += 1;
    });
    if !stream {
        let mut text = String::new();
        for i in 0..wanted {
            tokio::time::sleep(server.pace.token).await;
            text.push_str(WORDS[(i as usize) % WORDS.len()]);
        }
        let predicted_ms = started.elapsed().as_secs_f64() * 1000.0 - prompt_ms;
        finish(&server, &model, wanted, predicted_ms);
        let mut answer = match kind {
            Kind::Chat => json!({"choices": [{"finish_reason": "length", "index": 0,
                "message": {"role": "assistant", "content": text}}],
                "object": "chat.completion"}),
            Kind::Text => json!({"choices": [{"finish_reason": "length", "index": 0,
                "text": text, "logprobs": null}], "object": "text_completion"}),
        };
        answer["created"] = json!(now_secs());
        answer["model"] = json!(model);
        answer["id"] = json!(id);
        answer["system_fingerprint"] = json!("b0-stand-in");
        answer["usage"] = usage(prompt_n, wanted);
        answer["timings"] = timings(prompt_n, prompt_ms, wanted, predicted_ms);
        return axum::Json(answer).into_response();
    }
    let (sender, receiver) = mpsc::channel::<Bytes>(1);
    let pace = server.pace.token;
    tokio::spawn(async move {
        let event = |value: Value| Bytes::from(format!("data: {value}\n\n"));
        let mut sent = 0;
        let mut open = match kind {
            Kind::Chat => sender
                .send(event(chunk(kind, &id, &model, None, None)))
                .await
                .is_ok(),
            Kind::Text => true,
        };
        while open && sent < wanted {
            tokio::time::sleep(pace).await;
            let word = WORDS[(sent as usize) % WORDS.len()];
            open = sender
                .send(event(chunk(kind, &id, &model, Some(word), None)))
                .await
                .is_ok();
            if open {
                sent += 1;
            }
        }
        let predicted_ms = started.elapsed().as_secs_f64() * 1000.0 - prompt_ms;
        finish(&server, &model, sent, predicted_ms);
        if !open {
            eprintln!(
                "srv  cancel_tasks: cancel task, id_task = {task} (after {sent} of {wanted} tokens)"
            );
            return;
        }
        let mut last = chunk(kind, &id, &model, None, Some("length"));
        last["usage"] = usage(prompt_n, sent);
        last["timings"] = timings(prompt_n, prompt_ms, sent, predicted_ms);
        if sender.send(event(last)).await.is_ok() {
            let _ = sender.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move {
            receiver
                .recv()
                .await
                .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), receiver))
        },
    ));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn count(server: &Shared, model: &str, change: impl FnOnce(&mut Counters)) {
    if let Some(e) = server.models().get_mut(model) {
        change(&mut e.counters);
    }
}

fn finish(server: &Shared, model: &str, tokens: u64, predicted_ms: f64) {
    count(server, model, |c| {
        c.predicted_tokens += tokens;
        c.predicted_seconds += predicted_ms / 1000.0;
        c.decodes += tokens;
        c.processing = c.processing.saturating_sub(1);
    });
}

async fn embeddings(State(server): State<Shared>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return invalid("the request body is not JSON");
    };
    let model = match ready_model(&server, &body).await {
        Ok(model) => model,
        Err(answer) => return answer,
    };
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect(),
        _ => return invalid("\"input\" must be a string or an array of strings"),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index, "embedding": embed(text)})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    axum::Json(json!({"object": "list", "model": model, "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
    .into_response()
}

/// A unit vector of 16 numbers that depends only on the text (FNV-1a seeded per dimension).
fn embed(text: &str) -> Vec<f64> {
    let raw: Vec<f64> = (0u64..16)
        .map(|dim| {
            let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ dim;
            for byte in text.bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
            (hash % 2001) as f64 / 1000.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    raw.into_iter().map(|x| x / norm).collect()
}

async fn metrics(
    State(server): State<Shared>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if !server.options.metrics {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "This server does not support metrics endpoint. Start it with `--metrics`",
            "not_supported_error",
        );
    }
    let single = server.options.models_dir.is_none();
    let counters = {
        let models = server.models();
        let chosen = match query.get("model") {
            Some(id) => models.get(id).map(|e| (id.clone(), e)),
            None if single => models.iter().next().map(|(k, e)| (k.clone(), e)),
            None => return invalid("model name is missing from the request"),
        };
        match chosen {
            Some((_, e)) if e.status == Status::Loaded => e.counters,
            Some((id, _)) => return invalid(&format!("model '{id}' is not loaded")),
            None => return invalid("model not found"),
        }
    };
    let per_second = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let lines = [
        (
            "prompt_tokens_total",
            "counter",
            counters.prompt_tokens as f64,
        ),
        ("prompt_seconds_total", "counter", counters.prompt_seconds),
        (
            "tokens_predicted_total",
            "counter",
            counters.predicted_tokens as f64,
        ),
        (
            "tokens_predicted_seconds_total",
            "counter",
            counters.predicted_seconds,
        ),
        ("n_decode_total", "counter", counters.decodes as f64),
        (
            "prompt_tokens_seconds",
            "gauge",
            per_second(counters.prompt_tokens, counters.prompt_seconds),
        ),
        (
            "predicted_tokens_seconds",
            "gauge",
            per_second(counters.predicted_tokens, counters.predicted_seconds),
        ),
        ("requests_processing", "gauge", counters.processing as f64),
        ("requests_deferred", "gauge", 0.0),
    ];
    let mut text = String::new();
    for (name, kind, value) in lines {
        text.push_str(&format!(
            "# HELP llamacpp:{name} {name}\n# TYPE llamacpp:{name} {kind}\nllamacpp:{name} {value}\n"
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
