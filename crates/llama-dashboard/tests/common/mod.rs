//! Shared by the tests that run `llama-dashboard serve` as its own process: start it on a free
//! loopback port in a fresh directory (its own HOME, database and models folder), read the
//! address from its startup line, stop it with SIGTERM, and write a small GGUF corpus with
//! llama.cpp's own writer.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../portunus-server/tests/common/http.rs"]
pub mod http;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llama-dashboard"))
}

/// A running `llama-dashboard serve`.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub home: PathBuf,
    pub db: PathBuf,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `serve` with `HOME=home`, the database in `home/data`, and extra flags.
    pub fn start(home: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let db = home.join("data/llama-dashboard.db");
        let mut cmd = bin();
        cmd.arg("--db")
            .arg(&db)
            .arg("serve")
            .args(if extra.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            .args(["--sample-interval", "0.2"])
            .args(["--store-interval", "0.2"])
            .args(extra)
            .env("HOME", home)
            .env_remove("LLAMA_DASHBOARD_API_KEY")
            .env_remove("LLAMA_DASHBOARD_DB")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stderr);
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = stderr.lock().unwrap().iter().find_map(|l| {
                l.strip_prefix("event=startup.listening url=")
                    .map(str::to_string)
            });
            if let Some(url) = url {
                return Server {
                    url,
                    child,
                    home: home.to_path_buf(),
                    db,
                    stderr,
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "serve exited with {status} before listening: {:?}",
                    stderr.lock().unwrap()
                );
            }
            assert!(Instant::now() < deadline, "serve did not start in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn http(&self) -> http::Http {
        http::Http::new(&self.url)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        terminate(&self.child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop in 20 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    /// SIGTERM first, so a test that failed midway still lets serve stop its llama-server
    /// (a SIGKILL would leave that child running); SIGKILL after 10 s.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let pid = i32::try_from(self.child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw);
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM to a child we started.
pub fn terminate(child: &Child) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

/// Writes the reference-writer corpus into `dir`; returns its manifest.
pub fn corpus(dir: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/make_corpus.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_corpus.py failed (is the gguf package installed? .ci/run installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `secs` seconds.
pub fn eventually<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads server-sent events from a raw connection: (event name, JSON data) pairs.
pub fn subscribe(url: &str, query: &str, extra_header: &str) -> mpsc::Receiver<(String, Value)> {
    let addr = url.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /api/events{query} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{extra_header}\r\n"
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let line = line.trim_end_matches('\r');
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                let value = serde_json::from_str(data).unwrap_or(Value::Null);
                if tx.send((event.clone(), value)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The next event of the given name within `secs` seconds.
pub fn next_event(rx: &mpsc::Receiver<(String, Value)>, name: &str, secs: u64) -> Value {
    next_matching(rx, name, secs, |_| true)
}

/// The next event of the given name whose data passes `wanted`, within `secs` seconds.
pub fn next_matching(
    rx: &mpsc::Receiver<(String, Value)>,
    name: &str,
    secs: u64,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((event, data)) if event == name && wanted(&data) => return data,
            Ok(_) => continue,
            Err(e) => panic!("no `{name}` event within {secs} s: {e}"),
        }
    }
}

/// A port free on loopback now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `llama-dashboard ARGS…` run as another process on the database `Server::start` uses for
/// `home`; its standard output, once it succeeded.
pub fn cli(home: &Path, args: &[&str]) -> String {
    let out = bin()
        .arg("--db")
        .arg(home.join("data/llama-dashboard.db"))
        .args(args)
        .env("HOME", home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `llama-dashboard config set KEY VALUE` on the database `Server::start` uses for `home`.
pub fn config_set(home: &Path, key: &str, value: &str) {
    cli(home, &["config", "set", key, value]);
}
