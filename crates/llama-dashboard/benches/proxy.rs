//! What the OpenAI-compatible proxy costs: streamed chat completions sent to the same upstream
//! (the stand-in llama-server, generating at a fixed pace) directly, through
//! `llama-dashboard serve` and, when installed, through nginx, in alternating rounds so every
//! path sees the same machine load. Two loads, each at every concurrency:
//!
//! - a burst: n streams sent at the same instant, every answer the same length, so their first
//!   tokens also come back together (the worst case for any proxy: it takes the n requests in,
//!   and forwards the n first chunks, one after another);
//! - steady: n clients, each sending its next request as soon as its previous answer ends, the
//!   answers' lengths varying, so requests arrive while the other clients' streams flow, as
//!   they do when many clients use one server.
//!
//! For each it reports time to first token (from sending the request to the first content
//! chunk) at p50 and p99, and token throughput over the round, each proxy against direct.
//!
//! Both processes are release builds started here on loopback. The client is one thread driving
//! every stream over raw sockets, the same code for every path: a thread per stream would put
//! dozens of runnable threads beside the servers on a small machine and measure the scheduler
//! more than the proxy. `PROXY_BENCH_ROUNDS` (default 6) sets the rounds per path and
//! concurrency (four times as many for a single stream's burst); `PROXY_BENCH_STREAMS` (default
//! `1,16,64`) the concurrencies; `PROXY_BENCH_LOADS` (default `burst,steady`) the loads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// Tokens per stream.
const TOKENS: u32 = 64;
/// The upstream's pace, milliseconds per token.
const TOKEN_MS: &str = "10";
/// Concurrent streams per round, unless `PROXY_BENCH_STREAMS` lists others (`64`, `1,8`).
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
    let mut socket = std::net::TcpStream::connect(addr).ok()?;
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

/// One streamed chat completion: (time to first content chunk, tokens received). A token is a
/// `data:` line whose delta carries text (`"content":"`); the role chunk's `null` is not one.
async fn stream(url: String, model: String, wanted: u32) -> (Duration, u32) {
    let addr = url.trim_start_matches("http://").to_string();
    let body = json!({"model": model, "stream": true, "max_tokens": wanted,
        "messages": [{"role": "user", "content": "Count for me"}]})
    .to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let sent = Instant::now();
    let mut socket = TcpStream::connect(&addr).await.unwrap();
    socket.set_nodelay(true).unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut first = None;
    let mut tokens = 0;
    let mut other = Vec::new();
    let mut lines = BufReader::new(socket).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Some(data) = line.strip_prefix("data: ") else {
            if other.len() < 12 {
                other.push(line);
            }
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        if data.contains("\"content\":\"") {
            first.get_or_insert_with(|| sent.elapsed());
            tokens += 1;
        }
    }
    assert!(tokens > 0, "no tokens from {url}: {other:?}");
    (first.unwrap_or_default(), tokens)
}

/// One round: `n` concurrent streams from one client thread; their first-token times and the
/// tokens per second of the whole round.
fn round(client: &Runtime, url: &str, model: &str, n: usize) -> (Vec<Duration>, f64) {
    let started = Instant::now();
    let results = all_at_once(client, n, |_| {
        stream(url.to_string(), model.to_string(), TOKENS)
    });
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
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
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
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    round(&client, &proxy, "bench-model.gguf", 2);
    round(&client, &direct, "bench-model", 2);

    // nginx, when installed, as a reference: the same upstream behind a proxy built for this,
    // so the figures show what any extra hop costs on this machine.
    let reference = nginx(home.path(), upstream_port);
    let mut paths = vec![
        Target {
            name: "direct",
            url: direct,
            model: "bench-model",
        },
        Target {
            name: "proxy",
            url: proxy,
            model: "bench-model.gguf",
        },
    ];
    match &reference {
        Some((_, url)) => {
            wait_for(url, "/health");
            round(&client, url, "bench-model", 2);
            paths.push(Target {
                name: "nginx",
                url: url.clone(),
                model: "bench-model",
            });
        }
        None => println!("(nginx is not installed: no reference proxy measured)\n"),
    }

    let streams: Vec<usize> = std::env::var("PROXY_BENCH_STREAMS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or(CONCURRENCY.to_vec());
    // Each proxy keeps a pool of connections to the upstream; one round as wide as the widest
    // measured opens them, so no measured round pays for connections a long-running proxy
    // would already hold.
    let widest = streams.iter().copied().max().unwrap_or(1);
    for path in &paths {
        round(&client, &path.url, path.model, widest);
    }
    let loads = std::env::var("PROXY_BENCH_LOADS").unwrap_or_else(|_| "burst,steady".into());
    if loads.contains("burst") {
        burst(&client, &paths, &streams, rounds);
    }
    if loads.contains("steady") {
        steady_load(&client, &paths, &streams, rounds);
    }
}

/// The burst table: rounds of `n` streams sent at once.
fn burst(client: &Runtime, paths: &[Target], streams: &[usize], rounds: usize) {
    println!(
        "Burst: n streamed chat completions sent at once, {TOKENS} tokens each at {TOKEN_MS} ms per token, {rounds} rounds per path ({} for one stream), alternating\n",
        rounds * 4
    );
    table(paths, streams, rounds, |path, n, _| {
        round(client, &path.url, path.model, n)
    });
}

/// The steady table: rounds of `n` clients sending one request after another.
fn steady_load(client: &Runtime, paths: &[Target], streams: &[usize], rounds: usize) {
    println!(
        "\nSteady load: each of n clients streams one completion after another ({SHORTEST} to {} tokens) for {STEADY_MS} ms, {rounds} rounds per path ({} for one client), alternating\n",
        SHORTEST + SPREAD - 1,
        rounds * 4
    );
    table(paths, streams, rounds, |path, n, r| {
        steady(client, &path.url, path.model, n, r)
    });
}

/// Measures every concurrency in `streams` with `measure` (path, concurrency, round number),
/// the paths taking turns round by round, and prints a table of the results.
fn table(
    paths: &[Target],
    streams: &[usize],
    rounds: usize,
    measure: impl Fn(&Target, usize, u64) -> (Vec<Duration>, f64),
) {
    println!(
        "| streams | path   | TTFT p50 ms | TTFT p99 ms | tokens/s | p99 added ms | throughput change |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &n in streams {
        let mut ttfts: Vec<Vec<Duration>> = vec![Vec::new(); paths.len()];
        let mut rates = vec![0.0; paths.len()];
        // A single stream gets more rounds, so its p99 is not just the slowest of a few.
        let rounds = if n == 1 { rounds * 4 } else { rounds };
        for r in 0..rounds {
            for (i, path) in paths.iter().enumerate() {
                let (ttft, rate) = measure(path, n, r as u64);
                ttfts[i].extend(ttft);
                rates[i] += rate / rounds as f64;
            }
        }
        report(n, paths, ttfts, &rates);
    }
}

/// Prints one concurrency's rows: each path's TTFT percentiles and throughput, and for the
/// proxies what they add to the direct path's p99 and take from its throughput.
fn report(n: usize, paths: &[Target], mut ttfts: Vec<Vec<Duration>>, rates: &[f64]) {
    for ttft in &mut ttfts {
        ttft.sort();
    }
    let direct_p99 = ms(percentile(&ttfts[0], 0.99));
    for (i, path) in paths.iter().enumerate() {
        let p99 = ms(percentile(&ttfts[i], 0.99));
        let extra = if i == 0 {
            "| ".to_string()
        } else {
            let change = (rates[i] / rates[0] - 1.0) * 100.0;
            format!("{:+.2} | {change:+.2} %", p99 - direct_p99)
        };
        println!(
            "| {n:>7} | {:<6} | {:>11.2} | {p99:>11.2} | {:>8.0} | {extra} |",
            path.name,
            ms(percentile(&ttfts[i], 0.5)),
            rates[i],
        );
    }
}

/// Shortest answer of the steady load, in tokens.
const SHORTEST: u32 = 32;
/// How many lengths the steady load's answers take, from [`SHORTEST`] up.
const SPREAD: u32 = 64;
/// How long each steady round keeps its clients sending, in milliseconds.
const STEADY_MS: u64 = 1500;

/// A steady round: `n` clients, each starting at its own moment within the first token's time
/// and then sending its next request as soon as the previous answer ends, for [`STEADY_MS`].
/// The answers' lengths vary (the same sequence on every path), so starts spread out as they
/// do under real use and each first token is measured while the other clients' streams flow.
/// Returns every first-token time and the round's tokens per second.
fn steady(client: &Runtime, url: &str, model: &str, n: usize, seed: u64) -> (Vec<Duration>, f64) {
    let started = Instant::now();
    let span = Duration::from_millis(STEADY_MS);
    let per_client = all_at_once(client, n, |c| {
        let (url, model) = (url.to_string(), model.to_string());
        let mut state = (seed << 32 | c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        async move {
            let offset = next(&mut state) % (TOKEN_MS.parse::<u64>().unwrap() * 1000);
            tokio::time::sleep(Duration::from_micros(offset)).await;
            let (mut ttfts, mut tokens) = (Vec::new(), 0);
            while started.elapsed() < span {
                let wanted = SHORTEST + (next(&mut state) % u64::from(SPREAD)) as u32;
                let (ttft, got) = stream(url.clone(), model.clone(), wanted).await;
                assert_eq!(got, wanted, "every token of the answer arrived");
                ttfts.push(ttft);
                tokens += got;
            }
            (ttfts, tokens)
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let tokens: u32 = per_client.iter().map(|c| c.1).sum();
    let ttfts = per_client.into_iter().flat_map(|c| c.0).collect();
    (ttfts, f64::from(tokens) / elapsed)
}

/// Runs the `n` tasks `task` makes (given their index) at once on the client thread; their
/// results in that order.
fn all_at_once<T, F>(client: &Runtime, n: usize, task: impl Fn(usize) -> F) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    client.block_on(async {
        let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(task(i))).collect();
        let mut results = Vec::with_capacity(n);
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    })
}

/// The next number of a xorshift sequence.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// One way to the upstream: its name in the table, address and the model name it takes.
struct Target {
    name: &'static str,
    url: String,
    model: &'static str,
}

/// nginx proxying to the upstream as one would put it in front of a streaming API (HTTP/1.1
/// keep-alive to the upstream, no buffering), on a free port; `None` when nginx is not installed.
fn nginx(home: &Path, upstream_port: u16) -> Option<(Proc, String)> {
    let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())?;
    let dir = home.join("nginx");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "worker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         upstream llama {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}\n\
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://llama;\n\
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n\
         tcp_nodelay on;\n    }}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(binary)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some((Proc(child), format!("http://127.0.0.1:{port}")))
}
