//! Shared by the tests that run `llama-dashboard serve` as its own process: start it on a free
//! loopback port in a fresh directory (its own HOME, database and models folder), read the
//! address from its startup line, stop it with SIGTERM, and write a small GGUF corpus with
//! llama.cpp's own writer.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../portunus-server/tests/common/http.rs"]
pub mod http;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
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
    fn drop(&mut self) {
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
