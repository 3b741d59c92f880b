//! What the OpenAI-compatible proxy costs: streamed chat completions sent to the same upstream
//! (the stand-in llama-server, generating at a fixed pace) directly and through
//! `llama-dashboard serve`, in alternating rounds so both see the same machine load. For each
//! concurrency it reports time to first token (from sending the request to the first content
//! chunk) at p50 and p99, and token throughput over the round, proxy against direct.
//!
//! Both processes are release builds started here on loopback; the clients are plain threads
//! over raw sockets, the same code for both paths. `PROXY_BENCH_ROUNDS` (default 6) sets the
//! rounds per path and concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Tokens per stream.
const TOKENS: u32 = 64;
/// The upstream's pace, milliseconds per token.
const TOKEN_MS: &str = "10";
/// Concurrent streams per round.
const CONCURRENCY: [usize; 3] = [1, 16, 64];

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id())
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn dashboard(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llama-dashboard"));
    cmd.arg("--db")
        .arg(home.join("data/llama-dashboard.db"))
        .env("HOME", home)
        .env_remove("LLAMA_DASHBOARD_API_KEY")
        .env_remove("LLAMA_DASHBOARD_DB");
    cmd
}

fn wait_for(url: &str, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(url, path).is_none() {
        assert!(Instant::now() < deadline, "{url}{path} did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A GET over a fresh connection: the body, when the answer is 200.
fn get(url: &str, path: &str) -> Option<String> {
    let addr = url.trim_start_matches("http://");
    let mut socket = TcpStream::connect(addr).ok()?;
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut socket, &mut text).ok()?;
    text.starts_with("HTTP/1.1 200")
        .then(|| text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))
        .flatten()
}

/// One streamed chat completion: (time to first content chunk, tokens received).
fn stream(url: &str, model: &str) -> (Duration, u32) {
    let addr = url.trim_start_matches("http://");
    let body = json!({"model": model, "stream": true, "max_tokens": TOKENS,
        "messages": [{"role": "user", "content": "Count for me"}]})
    .to_string();
    let sent = Instant::now();
    let mut socket = TcpStream::connect(addr).unwrap();
    socket.set_nodelay(true).unwrap();
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = None;
    let mut tokens = 0;
    let mut other = Vec::new();
    for line in BufReader::new(socket).lines().map_while(Result::ok) {
        let Some(data) = line.strip_prefix("data: ") else {
            if other.len() < 12 {
                other.push(line);
            }
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        if chunk["choices"][0]["delta"]["content"].is_string() {
            first.get_or_insert_with(|| sent.elapsed());
            tokens += 1;
        }
    }
    assert!(tokens > 0, "no tokens from {url}: {other:?}");
    (first.unwrap_or_default(), tokens)
}

/// One round: `n` concurrent streams; their first-token times and the tokens per second of
/// the whole round.
fn round(url: &str, model: &str, n: usize) -> (Vec<Duration>, f64) {
    let started = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (url, model) = (url.to_string(), model.to_string());
            std::thread::spawn(move || stream(&url, &model))
        })
        .collect();
    let results: Vec<(Duration, u32)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let elapsed = started.elapsed().as_secs_f64();
    let tokens: u32 = results.iter().map(|r| r.1).sum();
    assert_eq!(tokens, TOKENS * n as u32, "every stream got every token");
    (
        results.into_iter().map(|r| r.0).collect(),
        f64::from(tokens) / elapsed,
    )
}

/// The smallest GGUF file the catalog takes: version 3, no tensors, the architecture key.
fn tiny_gguf() -> Vec<u8> {
    let mut file = b"GGUF".to_vec();
    file.extend(3u32.to_le_bytes());
    file.extend(0u64.to_le_bytes());
    file.extend(1u64.to_le_bytes());
    let (key, value) = ("general.architecture", "llama");
    file.extend((key.len() as u64).to_le_bytes());
    file.extend(key.as_bytes());
    file.extend(8u32.to_le_bytes());
    file.extend((value.len() as u64).to_le_bytes());
    file.extend(value.as_bytes());
    file
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rounds: usize = std::env::var("PROXY_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let home = tempfile::tempdir().unwrap();
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("bench-model.gguf"), tiny_gguf()).unwrap();
    let upstream_port = free_port();
    for (key, value) in [
        (
            "serverPath",
            env!("CARGO_BIN_EXE_llama-stand-in").to_string(),
        ),
        ("llama_server_port", upstream_port.to_string()),
        ("baseModelsPath", models.display().to_string()),
    ] {
        let out = dashboard(home.path())
            .args(["config", "set", key, &value])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let port = free_port();
    let _serve = Proc(
        dashboard(home.path())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("LLAMA_STAND_IN_TOKEN_MS", TOKEN_MS)
            .env("LLAMA_STAND_IN_LOAD_MS", "10")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let proxy = format!("http://127.0.0.1:{port}");
    let direct = format!("http://127.0.0.1:{upstream_port}");
    wait_for(&proxy, "/api/health");
    wait_for(&direct, "/health");
    // The catalog knows the model by file name; the stand-in by its stem.
    let scan = {
        let addr = proxy.trim_start_matches("http://");
        let mut socket = TcpStream::connect(addr).unwrap();
        write!(
            socket,
            "POST /api/scan HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut socket, &mut text).unwrap();
        text
    };
    assert!(scan.starts_with("HTTP/1.1 200"), "{scan}");
    // Warm both paths (and load the model).
    round(&proxy, "bench-model.gguf", 2);
    round(&direct, "bench-model", 2);

    println!(
        "Streamed chat completions, {TOKENS} tokens each at {TOKEN_MS} ms per token, {rounds} rounds per path, alternating\n"
    );
    println!(
        "| streams | path   | TTFT p50 ms | TTFT p99 ms | tokens/s | p99 added ms | throughput change |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in CONCURRENCY {
        let (mut direct_ttft, mut proxy_ttft) = (Vec::new(), Vec::new());
        let (mut direct_rate, mut proxy_rate) = (0.0, 0.0);
        for _ in 0..rounds {
            let (ttft, rate) = round(&direct, "bench-model", n);
            direct_ttft.extend(ttft);
            direct_rate += rate / rounds as f64;
            let (ttft, rate) = round(&proxy, "bench-model.gguf", n);
            proxy_ttft.extend(ttft);
            proxy_rate += rate / rounds as f64;
        }
        direct_ttft.sort();
        proxy_ttft.sort();
        let added = ms(percentile(&proxy_ttft, 0.99)) - ms(percentile(&direct_ttft, 0.99));
        let change = (proxy_rate / direct_rate - 1.0) * 100.0;
        for (path, ttft, rate) in [
            ("direct", &direct_ttft, direct_rate),
            ("proxy", &proxy_ttft, proxy_rate),
        ] {
            let extra = if path == "proxy" {
                format!("{added:+.2} | {change:+.2} %")
            } else {
                "| ".to_string()
            };
            println!(
                "| {n:>7} | {path:<6} | {:>11.2} | {:>11.2} | {rate:>8.0} | {extra} |",
                ms(percentile(ttft, 0.5)),
                ms(percentile(ttft, 0.99)),
            );
        }
    }
}
