//! API latency under concurrent load, against the real server binary on loopback: p50/p99 of a
//! rule push (`POST /v1/rules`, a full grant/overlap check and a write) and of an audit page
//! (`GET /v1/audit?since=…&limit=100`), each while other threads push and page at the same time.
//! The baseline in the same run is `GET /v1/health`, which does no authentication or SQLite work,
//! so the figures show what our work adds on top of HTTP on this machine.
//!
//! Run: `cargo bench -p portunus-server --bench api` (or `scripts/bench-portunus.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "../tests/common/mod.rs"]
mod common;

const THREADS: usize = 8;
const PER_THREAD: usize = 250;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `THREADS` threads, thread `t` calling `op(t, i)` `PER_THREAD` times; returns latencies.
fn load(
    op: impl Fn(&ureq::Agent, usize, usize) -> u16 + Send + Sync + 'static,
) -> (Vec<Duration>, Duration) {
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(THREADS));
    let started = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (op, barrier) = (op.clone(), barrier.clone());
            std::thread::spawn(move || {
                let agent = agent();
                barrier.wait();
                (0..PER_THREAD)
                    .map(|i| {
                        let at = Instant::now();
                        let status = op(&agent, t, i);
                        assert!(status < 300, "status {status}");
                        at.elapsed()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let wall = started.elapsed();
    all.sort();
    (all, wall)
}

fn main() {
    let json_out = std::env::args().any(|a| a == "--json");
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"));
    let api = server.api.clone();
    let setup = server.setup_token.clone().unwrap();
    let a = agent();
    let post = |path: &str, token: Option<&str>, body: Value| -> Value {
        let mut req = a.post(format!("{api}{path}"));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut r = req.send_json(body).unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    };
    let token = post(
        "/v1/setup",
        None,
        json!({"setup_token": setup, "username": "admin", "password": "benchmark password"}),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let client = post("/v1/clients", Some(&token), json!({"name": "bench"}))["client"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let base = api.clone();
    let (health, health_wall) = load(move |agent, _, _| {
        agent
            .get(format!("{base}/v1/health"))
            .call()
            .unwrap()
            .status()
            .as_u16()
    });

    // Rule pushes while the audit is paged by other threads.
    let (base, tok, cli) = (api.clone(), token.clone(), client.clone());
    let pager = {
        let (base, tok) = (api.clone(), token.clone());
        std::thread::spawn(move || {
            let agent = agent();
            let stop = Instant::now() + Duration::from_secs(120);
            let mut pages = 0u64;
            while Instant::now() < stop && pages < 400 {
                agent
                    .get(format!(
                        "{base}/v1/audit?since=1970-01-01T00:00:00Z&limit=100"
                    ))
                    .header("Authorization", &format!("Bearer {tok}"))
                    .call()
                    .unwrap();
                pages += 1;
            }
        })
    };
    let (push, push_wall) = load(move |agent, t, i| {
        let port = 1024 + t * PER_THREAD + i;
        agent
            .post(format!("{base}/v1/rules"))
            .header("Authorization", &format!("Bearer {tok}"))
            .send_json(json!({"client_id": cli, "listen": port.to_string(), "targets": [{"host": "127.0.0.1", "port": 80}]}))
            .unwrap()
            .status()
            .as_u16()
    });
    pager.join().unwrap();

    // Audit pages while rules are pushed by another thread.
    let (base, tok) = (api.clone(), token.clone());
    let pusher = {
        let (base, tok, cli) = (api.clone(), token.clone(), client.clone());
        std::thread::spawn(move || {
            let agent = agent();
            for port in 20_000..20_400 {
                agent
                    .post(format!("{base}/v1/rules"))
                    .header("Authorization", &format!("Bearer {tok}"))
                    .send_json(json!({"client_id": cli, "listen": port.to_string(), "targets": [{"host": "127.0.0.1", "port": 80}]}))
                    .unwrap();
            }
        })
    };
    let (page, page_wall) = load(move |agent, _, _| {
        agent
            .get(format!(
                "{base}/v1/audit?since=1970-01-01T00:00:00Z&limit=100"
            ))
            .header("Authorization", &format!("Bearer {tok}"))
            .call()
            .unwrap()
            .status()
            .as_u16()
    });
    pusher.join().unwrap();
    server.stop();

    let rows = [
        ("GET /v1/health (baseline)", &health, health_wall),
        ("POST /v1/rules (push)", &push, push_wall),
        ("GET /v1/audit page of 100", &page, page_wall),
    ];
    if json_out {
        let out: Vec<Value> = rows
            .iter()
            .map(|(name, l, wall)| {
                json!({"case": name, "requests": l.len(), "p50_ms": ms(percentile(l, 0.5)),
                       "p99_ms": ms(percentile(l, 0.99)), "per_s": l.len() as f64 / wall.as_secs_f64()})
            })
            .collect();
        println!("{}", json!({"threads": THREADS, "results": out}));
        return;
    }
    println!(
        "API latency, {THREADS} concurrent clients, {} requests per case",
        THREADS * PER_THREAD
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "case", "p50 ms", "p99 ms", "req/s"
    );
    for (name, l, wall) in rows {
        println!(
            "{name:<28} {:>10.2} {:>10.2} {:>10.0}",
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.99)),
            l.len() as f64 / wall.as_secs_f64()
        );
    }
}
