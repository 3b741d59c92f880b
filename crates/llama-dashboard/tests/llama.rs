//! The dashboard driving a llama-server over real HTTP: `llama-dashboard serve` run as its own
//! process starts our stand-in (`llama-stand-in`, which answers llama-server's router API with
//! its shapes) from the saved settings, loads and unloads models through it, and proxies
//! OpenAI-style requests to it. `scripts/llama-dashboard-real.sh` runs the same path against the
//! real llama-server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::http::code;
use common::{Server, config_set, eventually, free_port, next_matching, subscribe};
use serde_json::{Value, json};

const STAND_IN: &str = env!("CARGO_BIN_EXE_llama-stand-in");

/// A dashboard over the four-model corpus whose llama-server is the stand-in, started when
/// the dashboard starts, with the stand-in's pace and faults from `env`.
fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    start_with(&[], env)
}

/// As [`start`], with settings saved first.
fn start_with(settings: &[(&str, &str)], env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let home = tempfile::tempdir().unwrap();
    common::corpus(&home.path().join("models"));
    for (key, value) in settings {
        config_set(home.path(), key, value);
    }
    config_set(home.path(), "serverPath", STAND_IN);
    config_set(home.path(), "llama_server_port", &free_port().to_string());
    let server = Server::start(home.path(), &[], env);
    let http = server.http();
    let (status, report) = http.call("POST", "/api/scan", None, None);
    assert_eq!(status, 200, "{report}");
    eventually(20, "llama-server ready", || {
        let (_, state) = http.call("GET", "/api/server", None, None);
        (state["server"]["state"] == "ready").then_some(())
    });
    (home, server)
}

fn model_id(server: &Server, name: &str) -> String {
    let (_, list) = server.http().call("GET", "/api/models", None, None);
    list.as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the catalog: {list}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn llama_server_logs(server: &Server) -> String {
    let (_, logs) = server.http().call(
        "GET",
        "/api/logs?source=llama-server&limit=1000",
        None,
        None,
    );
    logs.as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn loading_and_unloading_follow_what_llama_server_reports() {
    let (_home, server) = start(&[
        ("LLAMA_STAND_IN_LOAD_MS", "300"),
        ("LLAMA_STAND_IN_FAIL", "gemma-tiny.BF16"),
    ]);
    let http = server.http();
    let events = subscribe(&server.url, "?topics=model", "");
    let llama = model_id(&server, "llama-tiny.Q4_K_M.gguf");

    let (status, loaded) = http.call("POST", &format!("/api/models/{llama}/load"), None, None);
    assert_eq!(
        (status, &loaded["status"]),
        (200, &json!("loaded")),
        "{loaded}"
    );
    let loading = next_matching(&events, "model", 5, |e| e["model"]["id"] == llama.as_str());
    assert_eq!(
        loading["model"]["status"], "loading",
        "the row said `loading` first"
    );
    next_matching(&events, "model", 5, |e| {
        e["model"]["id"] == llama.as_str() && e["model"]["status"] == "loaded"
    });
    let (_, row) = http.call("GET", &format!("/api/models/{llama}"), None, None);
    assert_eq!(row["status"], "loaded");
    let (_, listed) = http.call("GET", "/api/models?status=loaded", None, None);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // Loading what is loaded is not an error.
    let (status, again) = http.call("POST", &format!("/api/models/{llama}/load"), None, None);
    assert_eq!(
        (status, &again["status"]),
        (200, &json!("loaded")),
        "{again}"
    );

    // A load llama-server reports as failed leaves `error` and says why.
    let gemma = model_id(&server, "gemma-tiny.BF16.gguf");
    let (status, error) = http.call("POST", &format!("/api/models/{gemma}/load"), None, None);
    assert_eq!((status, code(&error)), (502, "load_failed"), "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exited with code 1"),
        "{error}"
    );
    let failed = next_matching(&events, "model", 5, |e| {
        e["model"]["id"] == gemma.as_str() && e["model"]["status"] == "error"
    });
    assert!(
        failed["reason"].as_str().unwrap().contains("code 1"),
        "{failed}"
    );

    let (status, unloaded) = http.call("POST", &format!("/api/models/{llama}/unload"), None, None);
    assert_eq!(
        (status, &unloaded["status"]),
        (200, &json!("unloaded")),
        "{unloaded}"
    );

    // llama-server's own output is in the log, under its source.
    let output = eventually(5, "llama-server's output in the log", || {
        let text = llama_server_logs(&server);
        text.contains("loading model 'llama-tiny.Q4_K_M'")
            .then_some(text)
    });
    assert!(
        output.contains("failed to load model 'gemma-tiny.BF16'"),
        "{output}"
    );
    let (_, errors) = http.call(
        "GET",
        "/api/logs?source=llama-server&level=error&limit=100",
        None,
        None,
    );
    assert!(
        errors.to_string().contains("failed to load model"),
        "llama.cpp's `E` lines are errors: {errors}"
    );

    // A model llama-server loads by itself (here: through another client) shows up too.
    let (_, state) = http.call("GET", "/api/server", None, None);
    let upstream = common::http::Http::new(state["server"]["url"].as_str().unwrap());
    let (status, _) = upstream.call(
        "POST",
        "/models/load",
        None,
        Some(json!({"model": "qwen2-tiny.Q8_0"})),
    );
    assert_eq!(status, 200);
    let qwen = model_id(&server, "qwen2-tiny.Q8_0.gguf");
    eventually(10, "the reconciled status", || {
        let (_, row) = http.call("GET", &format!("/api/models/{qwen}"), None, None);
        (row["status"] == "loaded").then_some(())
    });
    assert_eq!(server.stop().code(), Some(0));
}

/// Sends a streamed chat completion over a raw connection; returns each body line with the
/// time it arrived, reading at most `limit` data lines.
fn stream_chat(url: &str, model: &str, tokens: u32, limit: usize) -> Vec<(Instant, String)> {
    let addr = url.trim_start_matches("http://");
    let mut socket = TcpStream::connect(addr).unwrap();
    let body = json!({"model": model, "stream": true, "max_tokens": tokens,
        "messages": [{"role": "user", "content": "Say hello"}]})
    .to_string();
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(socket).lines().map_while(Result::ok) {
        if let Some(data) = line.strip_prefix("data: ") {
            lines.push((Instant::now(), data.to_string()));
            if lines.len() >= limit {
                break;
            }
        }
    }
    lines
}

#[test]
fn the_proxy_streams_routes_records_and_cancels() {
    let (_home, server) = start(&[("LLAMA_STAND_IN_TOKEN_MS", "25")]);
    let http = server.http();
    let requests = subscribe(&server.url, "?topics=request,model", "");
    let samples = subscribe(&server.url, "?topics=metrics", "");

    let (status, models) = http.call("GET", "/v1/models", None, None);
    assert_eq!(status, 200);
    let names: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"llama-tiny.Q4_K_M.gguf"), "{models}");

    // Streamed chunk by chunk: 20 tokens 25 ms apart arrive spread out, not all at the end.
    let sent = Instant::now();
    let lines = stream_chat(&server.url, "llama-tiny.Q4_K_M", 20, 1000);
    let done = lines.last().unwrap().0;
    assert_eq!(lines.last().unwrap().1, "[DONE]");
    let contents: String = lines
        .iter()
        .filter_map(|(_, l)| serde_json::from_str::<Value>(l).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(
        contents.starts_with("The stand-in says hello"),
        "{contents}"
    );
    let first_token = lines[1].0;
    assert!(
        done.duration_since(first_token) >= Duration::from_millis(300),
        "tokens arrived together ({:?} apart), so the proxy buffered them",
        done.duration_since(first_token)
    );
    assert!(first_token.duration_since(sent) < done.duration_since(sent));
    // The model was loaded on demand, and the request was recorded.
    let record = next_matching(&requests, "request", 5, |r| r["cancelled"] == false);
    assert_eq!(record["tokens"], 20, "{record}");
    assert_eq!(record["model"], "llama-tiny.Q4_K_M");
    assert!(record["ttft_ms"].as_f64().unwrap() > 0.0, "{record}");
    assert!(
        record["tokens_per_second"].as_f64().unwrap() > 0.0,
        "{record}"
    );
    let llama = model_id(&server, "llama-tiny.Q4_K_M.gguf");
    let (_, row) = http.call("GET", &format!("/api/models/{llama}"), None, None);
    assert_eq!(row["status"], "loaded", "loaded on demand");
    // llama-server's /metrics is read into tokens per second, and its process tree measured.
    let sample = next_matching(&samples, "metrics", 10, |m| {
        m["tokens_per_second"].as_f64().unwrap() > 0.0
    });
    assert!(
        sample["llama_memory_used"].as_f64().unwrap() > 1.0,
        "{sample}"
    );

    // Routed by catalog id too; whole answers and other endpoints pass through.
    let (status, answer) = http.call(
        "POST",
        "/v1/completions",
        None,
        Some(json!({"model": llama, "prompt": "Once", "max_tokens": 3})),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["text"], "The stand-in");
    assert_eq!(answer["model"], "llama-tiny.Q4_K_M", "the router's own id");
    let (status, vectors) = http.call(
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "qwen2-tiny.Q8_0.gguf", "input": ["a", "b"]})),
    );
    assert_eq!(status, 200, "{vectors}");
    assert_eq!(vectors["data"].as_array().unwrap().len(), 2);
    let (status, error) = http.call(
        "POST",
        "/v1/chat/completions",
        None,
        Some(json!({"model": "no-such-model", "messages": []})),
    );
    assert_eq!((status, code(&error)), (404, "model_not_found"), "{error}");
    let (_, recent) = http.call("GET", "/api/requests", None, None);
    assert!(recent.as_array().unwrap().len() >= 3, "{recent}");

    // A client that goes away cancels the generation upstream.
    let partial = stream_chat(&server.url, "llama-tiny.Q4_K_M", 2000, 4);
    assert_eq!(partial.len(), 4);
    let cancelled = next_matching(&requests, "request", 10, |r| r["cancelled"] == true);
    assert!(cancelled["tokens"].is_null(), "{cancelled}");
    let output = eventually(10, "llama-server cancelling the task", || {
        let text = llama_server_logs(&server);
        text.contains("cancel task").then_some(text)
    });
    assert!(!output.contains("after 2000 of 2000"), "{output}");
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn the_server_is_controlled_and_its_state_published() {
    let (_home, server) = start(&[]);
    let http = server.http();
    let events = subscribe(&server.url, "?topics=server", "");
    let (_, before) = http.call("GET", "/api/server", None, None);
    let pid = before["server"]["pid"].as_u64().unwrap();

    let (status, stopped) = http.call("POST", "/api/server/stop", None, None);
    assert_eq!(status, 200, "{stopped}");
    next_matching(&events, "server", 10, |e| e["state"] == "stopped");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z"),
        "the stand-in (pid {pid}) still runs after stop"
    );
    let (status, error) = http.call(
        "POST",
        "/v1/completions",
        None,
        Some(json!({"prompt": "x"})),
    );
    assert_eq!((status, code(&error)), (400, "model_required"), "{error}");

    let (status, _) = http.call("POST", "/api/server/start", None, None);
    assert_eq!(status, 200);
    next_matching(&events, "server", 10, |e| e["state"] == "ready");
    let (status, _) = http.call("POST", "/api/server/restart", None, None);
    assert_eq!(status, 200);
    let ready = next_matching(&events, "server", 10, |e| e["state"] == "ready");
    let (_, after) = http.call("GET", "/api/server", None, None);
    assert_eq!(after["server"]["state"], "ready");
    assert_ne!(after["server"]["pid"].as_u64().unwrap(), pid, "{ready}");
    let child = after["server"]["pid"].as_u64().unwrap();
    assert_eq!(server.stop().code(), Some(0));
    eventually(5, "the stand-in to be gone with the dashboard", || {
        (!Path::new(&format!("/proc/{child}")).exists()).then_some(())
    });
}

fn statuses(server: &Server) -> Vec<(String, String)> {
    let (_, list) = server.http().call("GET", "/api/models", None, None);
    let mut pairs: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

fn loaded(server: &Server) -> Vec<String> {
    statuses(server)
        .into_iter()
        .filter(|(_, s)| s == "loaded")
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn the_maximum_of_loaded_models_holds_and_idle_models_are_unloaded() {
    let (_home, server) = start_with(
        &[("models_max", "2"), ("idle_unload_seconds", "2")],
        &[("LLAMA_STAND_IN_TOKEN_MS", "25")],
    );
    let http = server.http();
    for name in [
        "llama-tiny.Q4_K_M.gguf",
        "qwen2-tiny.Q8_0.gguf",
        "gemma-tiny.BF16.gguf",
    ] {
        let id = model_id(&server, name);
        let (status, row) = http.call("POST", &format!("/api/models/{id}/load"), None, None);
        assert_eq!(status, 200, "{row}");
    }
    // The third load made llama-server unload the least recently used one.
    assert_eq!(
        loaded(&server),
        ["gemma-tiny.BF16.gguf", "qwen2-tiny.Q8_0.gguf"],
        "{:?}",
        statuses(&server)
    );

    // A request streaming for longer than the idle limit keeps its model loaded.
    let streaming = {
        let url = server.url.clone();
        std::thread::spawn(move || stream_chat(&url, "qwen2-tiny.Q8_0", 140, 1000))
    };
    let unused = eventually(10, "the unused model unloaded", || {
        let now = loaded(&server);
        (now == ["qwen2-tiny.Q8_0.gguf"]).then_some(now)
    });
    assert_eq!(unused, ["qwen2-tiny.Q8_0.gguf"]);
    let lines = streaming.join().unwrap();
    assert_eq!(lines.last().unwrap().1, "[DONE]", "the stream was not cut");
    // Once it is done and the limit passes, it goes too.
    eventually(10, "the last model unloaded after its request", || {
        loaded(&server).is_empty().then_some(())
    });
    let (_, logs) = http.call("GET", "/api/logs?source=models&limit=100", None, None);
    assert!(
        logs.to_string().contains("unused for"),
        "the reason is logged: {logs}"
    );
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn requests_while_llama_server_starts_wait_for_it() {
    let home = tempfile::tempdir().unwrap();
    common::corpus(&home.path().join("models"));
    config_set(home.path(), "serverPath", STAND_IN);
    config_set(home.path(), "llama_server_port", &free_port().to_string());
    let server = Server::start(home.path(), &[], &[("LLAMA_STAND_IN_STARTUP_MS", "1500")]);
    let http = server.http();
    let (status, report) = http.call("POST", "/api/scan", None, None);
    assert_eq!(status, 200, "{report}");
    let (_, state) = http.call("GET", "/api/server", None, None);
    assert_eq!(state["server"]["state"], "starting", "{state}");
    // Several clients at once, while the autostarted llama-server is not ready yet.
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let url = server.url.clone();
            std::thread::spawn(move || {
                common::http::Http::new(&url).call(
                    "POST",
                    "/v1/completions",
                    None,
                    Some(
                        json!({"model": "phi3-tiny.IQ4_XS.gguf", "prompt": "Hi", "max_tokens": 2}),
                    ),
                )
            })
        })
        .collect();
    for client in clients {
        let (status, answer) = client.join().unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["choices"][0]["text"], "The stand");
    }
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn the_proxy_follows_catalog_changes_made_by_other_processes() {
    let (home, server) = start(&[]);
    let http = server.http();
    let ask = || {
        http.call(
            "POST",
            "/v1/completions",
            None,
            Some(json!({"model": "qwen2-tiny.Q8_0.gguf", "prompt": "Hi", "max_tokens": 2})),
        )
    };
    let (status, answer) = ask();
    assert_eq!(status, 200, "{answer}");

    // Removed by the CLI while the server runs: the proxy stops knowing it within seconds.
    let id = model_id(&server, "qwen2-tiny.Q8_0.gguf");
    common::cli(home.path(), &["models", "remove", &id]);
    eventually(10, "the removed model refused", || {
        let (status, error) = ask();
        (status == 404 && code(&error) == "model_not_found").then_some(())
    });

    // Scanned back by the CLI: the very next request finds it (an unknown name is looked up
    // afresh before it is refused).
    common::cli(home.path(), &["scan"]);
    let (status, answer) = ask();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["text"], "The stand");
    assert_eq!(server.stop().code(), Some(0));
}
