//! The REST API and live events over real HTTP, against `llama-dashboard serve` run as its own
//! process on a real database, with a models folder written by llama.cpp's own GGUF writer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::http::code;
use common::{Server, eventually, next_event, next_matching, subscribe};
use serde_json::{Value, json};

/// The messages of a JSON array of log entries.
fn messages(logs: &Value) -> Vec<&str> {
    logs.as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect()
}

fn start_with_models() -> (tempfile::TempDir, Server, Value) {
    let home = tempfile::tempdir().unwrap();
    let manifest = common::corpus(&home.path().join("models"));
    let server = Server::start(home.path(), &[], &[]);
    (home, server, manifest)
}

#[test]
fn the_catalog_is_scanned_listed_changed_and_cleaned_over_http() {
    let (home, server, _) = start_with_models();
    let http = server.http();
    let events = subscribe(&server.url, "?topics=model,catalog", "");

    let (status, report) = http.call("POST", "/api/scan", None, None);
    assert_eq!(status, 200, "{report}");
    let found = report["models"].as_u64().unwrap();
    assert!(found >= 4, "{report}");
    assert_eq!(report["added"], found);
    assert_eq!(next_event(&events, "catalog", 5)["report"]["added"], found);

    let (status, again) = http.call("POST", "/api/scan", None, None);
    assert_eq!(status, 200);
    assert_eq!(
        again["unchanged"], found,
        "an unchanged rescan reads nothing: {again}"
    );

    let (_, list) = http.call("GET", "/api/models", None, None);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len() as u64, found);
    let first = &list[0];
    let id = first["id"].as_str().unwrap();
    assert!(id.starts_with("model_"), "{id}");
    assert!(first["quantization"].is_string(), "{first}");
    assert!(first["block_count"].as_i64().unwrap() > 0, "{first}");

    let (status, shown) = http.call("GET", &format!("/api/models/{id}"), None, None);
    assert_eq!((status, &shown), (200, first));

    // A valid change is stored, bumps updated_at's row and reaches live streams.
    let (status, changed) = http.call(
        "PATCH",
        &format!("/api/models/{id}"),
        None,
        Some(json!({"status": "loaded", "threads": 8, "parameters": {"temp": 0.7}})),
    );
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["status"], "loaded");
    assert_eq!(changed["threads"], 8);
    assert_eq!(changed["parameters"], "{\"temp\":0.7}");
    let event = next_event(&events, "model", 5);
    assert_eq!(event["action"], "updated");
    assert_eq!(event["model"]["id"], id);

    // Bad changes are refused with a reason, and change nothing.
    for (body, expected) in [
        (json!({"status": "flying"}), "invalid_field"),
        (json!({"threads": 0}), "invalid_field"),
        (json!({"model_path": "/etc/passwd"}), "read_only_field"),
        (json!({"id": "model_1_x"}), "read_only_field"),
        (json!({"colour": "red"}), "unknown_field"),
        (json!({}), "empty_update"),
        (json!([1, 2]), "invalid_body"),
    ] {
        let (status, error) = http.call("PATCH", &format!("/api/models/{id}"), None, Some(body));
        assert_eq!((status, code(&error)), (400, expected), "{error}");
    }
    let (_, after) = http.call("GET", &format!("/api/models/{id}"), None, None);
    assert_eq!(after, changed);

    // Favorite: set, toggle, listed by name.
    let (status, fav) = http.call(
        "POST",
        &format!("/api/models/{id}/favorite"),
        None,
        Some(json!({"favorite": true})),
    );
    assert_eq!((status, fav["favorite"].as_i64()), (200, Some(1)));
    let (_, favorites) = http.call("GET", "/api/models?favorites=true", None, None);
    assert_eq!(favorites.as_array().unwrap().len(), 1);
    let (_, toggled) = http.call("POST", &format!("/api/models/{id}/favorite"), None, None);
    assert_eq!(toggled["favorite"], 0);
    let (_, loaded) = http.call("GET", "/api/models?status=loaded", None, None);
    assert_eq!(loaded.as_array().unwrap().len(), 1);

    // Unknown ids and endpoints use the envelope.
    let (status, error) = http.call("GET", "/api/models/model_0_nothing", None, None);
    assert_eq!((status, code(&error)), (404, "model_not_found"));
    let (status, error) = http.call("GET", "/api/nothing/here", None, None);
    assert_eq!((status, code(&error)), (404, "no_such_endpoint"));

    // Delete, then cleanup removes rows whose files are gone.
    let (status, _) = http.call("DELETE", &format!("/api/models/{id}"), None, None);
    assert_eq!(status, 200);
    let deleted = next_matching(&events, "model", 5, |e| e["action"] == "deleted");
    assert_eq!(deleted["id"], id);
    let (status, _) = http.call("DELETE", &format!("/api/models/{id}"), None, None);
    assert_eq!(status, 404);
    let victim = list[1]["model_path"].as_str().unwrap().to_string();
    std::fs::remove_file(&victim).unwrap();
    let (status, cleaned) = http.call("POST", "/api/cleanup", None, None);
    assert_eq!((status, cleaned["removed"].as_u64()), (200, Some(1)));
    let (_, list) = http.call("GET", "/api/models", None, None);
    assert_eq!(list.as_array().unwrap().len() as u64, found - 2);

    // The scan and cleanup were logged by our own tracing layer, with their source.
    let (_, logs) = http.call("GET", "/api/logs?source=models", None, None);
    let messages = messages(&logs);
    assert!(
        messages.iter().any(|m| m.starts_with("scan found")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("cleanup removed 1")),
        "{messages:?}"
    );
    drop(home);
}

#[test]
fn settings_metadata_metrics_and_logs_over_http() {
    let (_home, server, _) = start_with_models();
    let http = server.http();

    let (status, config) = http.call("GET", "/api/config", None, None);
    assert_eq!(status, 200);
    assert_eq!(
        config["llama_server_host"], "127.0.0.1",
        "loopback, not the original's 0.0.0.0"
    );
    assert_eq!(config["ctx_size"], 2048);
    assert_eq!(
        config["baseModelsPath"],
        server.home.join("models").display().to_string()
    );

    let (status, patched) = http.call(
        "PATCH",
        "/api/config",
        None,
        Some(json!({"ctx_size": 8192, "threads": 2})),
    );
    assert_eq!(
        (status, &patched["ctx_size"], &patched["port"]),
        (200, &json!(8192), &json!(8080))
    );
    for (body, why) in [
        (json!({"port": 70000}), "port"),
        (json!({"threads": "many"}), "threads"),
        (json!({"colour": "red"}), "colour"),
        (json!({"host": ""}), "host"),
    ] {
        let (status, error) = http.call("PATCH", "/api/config", None, Some(body));
        assert_eq!((status, code(&error)), (400, "invalid_setting"));
        assert!(
            error["error"]["message"].as_str().unwrap().contains(why),
            "{error}"
        );
    }
    let (_, unchanged) = http.call("GET", "/api/config", None, None);
    assert_eq!(unchanged, patched, "refused changes store nothing");
    let (_, replaced) = http.call("PUT", "/api/config", None, Some(json!({"threads": 6})));
    assert_eq!(
        (&replaced["threads"], &replaced["ctx_size"]),
        (&json!(6), &json!(2048))
    );

    let (status, _) = http.call(
        "PUT",
        "/api/metadata/userPreferences",
        None,
        Some(json!({"theme": "dark"})),
    );
    assert_eq!(status, 200);
    let (_, stored) = http.call("GET", "/api/metadata/userPreferences", None, None);
    assert_eq!(stored["value"]["theme"], "dark");
    let (_, absent) = http.call("GET", "/api/metadata/never-set", None, None);
    assert_eq!(absent["value"], Value::Null);

    // The sampler stores samples on its interval; history is newest first.
    let history = eventually(10, "three stored samples", || {
        let (_, h) = http.call("GET", "/api/metrics/history?limit=3", None, None);
        (h.as_array().map_or(0, Vec::len) == 3).then_some(h)
    });
    let rows = history.as_array().unwrap();
    assert!(rows[0]["id"].as_i64() > rows[1]["id"].as_i64());
    for row in rows {
        let memory = row["memory_usage"].as_f64().unwrap();
        assert!(memory > 0.0 && memory <= 100.0, "{row}");
        assert!(
            (0.0..=100.0).contains(&row["disk_usage"].as_f64().unwrap()),
            "{row}"
        );
    }
    let (_, latest) = http.call("GET", "/api/metrics/latest", None, None);
    assert!(latest["memory_usage"].as_f64().unwrap() > 0.0, "{latest}");
    assert_eq!(
        latest["uptime"], 0.0,
        "llama-server's uptime: it is not running"
    );
    let (status, error) = http.call("GET", "/api/metrics/history?limit=0", None, None);
    assert_eq!((status, code(&error)), (400, "invalid_limit"));

    // A live stream gets the latest sample at once, then new ones.
    let events = subscribe(&server.url, "?topics=metrics", "");
    let first = next_event(&events, "metrics", 5);
    let second = next_event(&events, "metrics", 5);
    assert!(first["memory_usage"].as_f64().unwrap() > 0.0);
    assert!(second["timestamp"].as_i64() >= first["timestamp"].as_i64());

    let metrics = ureq::get(&format!("{}/metrics", server.url))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    for name in [
        "llama_dashboard_memory_usage_percent",
        "llama_dashboard_gpu_memory_used_bytes",
        "llama_dashboard_samples_total",
        "llama_dashboard_log_entries_written_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{metrics}"
        );
    }

    // Logs: filters, a refused level, clearing.
    let (_, logs) = http.call("GET", "/api/logs?level=info&limit=5", None, None);
    assert!(
        logs.as_array()
            .unwrap()
            .iter()
            .all(|l| l["level"] == "info")
    );
    assert!(
        !logs.as_array().unwrap().is_empty(),
        "the settings changes were logged"
    );
    let (status, error) = http.call("GET", "/api/logs?level=loud", None, None);
    assert_eq!((status, code(&error)), (400, "invalid_level"));
    let (status, cleared) = http.call("DELETE", "/api/logs", None, None);
    assert!(
        status == 200 && cleared["deleted"].as_u64().unwrap() > 0,
        "{cleared}"
    );
}

#[test]
fn beyond_loopback_every_request_needs_the_api_key() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &["--listen", "0.0.0.0:0"], &[]);
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let http = common::http::Http::new(&format!("http://127.0.0.1:{port}"));
    let key_file = home.path().join("data/api-key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(server.stderr_text().contains("event=startup.api_key"));
    assert!(
        !server.stderr_text().contains(&key),
        "the key is never printed"
    );

    let (status, error) = http.call("GET", "/api/models", None, None);
    assert_eq!((status, code(&error)), (401, "api_key_required"));
    let (status, error) = http.call("GET", "/api/models", Some("wrong-key-wrong-key"), None);
    assert_eq!((status, code(&error)), (401, "invalid_api_key"));
    let (status, _) = http.call("GET", "/api/models", Some(&key), None);
    assert_eq!(status, 200);
    let headers = vec![("X-API-Key".to_string(), key.clone())];
    assert_eq!(http.raw("GET", "/api/config", &headers, None).0, 200);
    let (status, _) = http.call("GET", "/api/health", None, None);
    assert_eq!(status, 200, "health needs no key");
    let refused = ureq::get(&format!("http://127.0.0.1:{port}/metrics")).call();
    assert!(refused.is_err(), "metrics need the key too");
    // An event stream without the key is refused before it starts.
    let mut stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    write!(
        stream,
        "GET /api/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = String::new();
    stream.read_to_string(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
}

#[test]
fn on_loopback_a_foreign_host_header_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &[], &[]);
    let http = server.http();
    let foreign = vec![("Host".to_string(), "attacker.example:3000".to_string())];
    let (status, error, _) = http.raw("GET", "/api/config", &foreign, None);
    assert_eq!((status, code(&error)), (403, "foreign_host"));
    let local = vec![("Host".to_string(), "localhost:3000".to_string())];
    assert_eq!(http.raw("GET", "/api/config", &local, None).0, 200);
}

#[test]
fn one_server_per_database_and_a_clean_stop() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &[], &[]);
    let second = common::bin()
        .arg("--db")
        .arg(&server.db)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(
        second.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("event=startup.store_in_use"));

    let db = server.db.clone();
    let status = server.stop();
    assert_eq!(status.code(), Some(0));
    // The last words were stored before exit, and samples were kept.
    let out = common::bin()
        .arg("--db")
        .arg(&db)
        .args(["logs", "--json"])
        .output()
        .unwrap();
    let logs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let messages = messages(&logs);
    assert_eq!(
        messages.first().copied(),
        Some("shutting down"),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("listening on http://127.0.0.1:")),
        "{messages:?}"
    );
}

#[test]
fn bad_serve_flags_are_refused_with_usage_status() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        vec!["serve", "--listen", "nowhere"],
        vec!["serve", "--sample-interval", "0"],
        vec!["serve", "--log-level", "loud"],
    ] {
        let out = common::bin()
            .arg("--db")
            .arg(home.path().join("d.db"))
            .args(&args)
            .env("HOME", home.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("event=startup.invalid_argument"));
    }
}

#[test]
fn the_server_runs_retention_on_logs_and_metrics() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("data/llama-dashboard.db");
    let made = common::bin()
        .arg("--db")
        .arg(&db)
        .args(["config", "get"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(made.status.success());
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        for i in 0..30 {
            conn.execute("INSERT INTO logs (level, message, source, timestamp) VALUES ('info', ?1, 'old', strftime('%s','now') - 40 * 86400)", [format!("old {i}")]).unwrap();
            conn.execute("INSERT INTO metrics (cpu_usage, timestamp) VALUES (1, strftime('%s','now') - 3600)", []).unwrap();
        }
    }
    let server = Server::start(home.path(), &["--metrics-keep", "10"], &[]);
    let http = server.http();
    // Retention runs at startup, then every minute.
    let metrics = eventually(10, "retention at startup", || {
        let text = ureq::get(&format!("{}/metrics", server.url))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        let value = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        // 30 aged log entries; at least the 20 metrics rows beyond the 10 kept (one more if a
        // sample was stored before the first pass).
        (value("llama_dashboard_log_entries_pruned_total") == 30
            && value("llama_dashboard_metrics_pruned_total") >= 20)
            .then_some(text)
    });
    assert!(metrics.contains("llama_dashboard_samples_total"));
    let (_, old) = http.call("GET", "/api/logs?source=old", None, None);
    assert_eq!(old, json!([]), "entries older than 30 days are deleted");
    let (_, history) = http.call("GET", "/api/metrics/history?limit=10000", None, None);
    assert!(history.as_array().unwrap().len() <= 12, "{history}");
}
