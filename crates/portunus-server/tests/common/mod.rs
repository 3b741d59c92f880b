//! A real `portunus-server serve` on loopback for the integration tests, and a small HTTP helper.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

mod http;
#[allow(unused_imports)] // Not every test file uses both.
pub use http::{Http, code};

pub const PASSWORD: &str = "correct horse battery";

/// A running server.
pub struct Server {
    child: Option<Child>,
    pub data: PathBuf,
    pub api: String,
    pub control: String,
    pub metrics: String,
    pub setup_token: Option<String>,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// The value of `key=` in a `event=…` line.
pub fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

pub fn server_cmd(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portunus-server"));
    cmd.env("PORTUNUS_SERVER_ALLOW_UNSUPPORTED_FS", "1")
        .env_remove("PORTUNUS_DATA_DIR")
        .env_remove("PORTUNUS_TOKEN")
        .env_remove("PORTUNUS_SERVER")
        .arg("--data-dir")
        .arg(data);
    cmd
}

impl Server {
    /// Starts `serve` on ephemeral loopback ports and waits until it is ready.
    pub fn start(data: &Path) -> Server {
        let mut child = server_cmd(data)
            .args([
                "serve",
                "--api-listen",
                "127.0.0.1:0",
                "--control-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut setup_token = None;
        loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server not ready: {:?}", log.lock().unwrap());
            };
            if line.starts_with("event=startup.setup_token") {
                setup_token = field(&line, "token");
            }
            if line.starts_with("event=startup.ready") {
                return Server {
                    child: Some(child),
                    data: data.to_path_buf(),
                    api: field(&line, "api").unwrap(),
                    control: field(&line, "control").unwrap(),
                    metrics: field(&line, "metrics").unwrap(),
                    setup_token,
                    log,
                };
            }
        }
    }

    pub fn http(&self) -> Http {
        Http::new(&self.api)
    }

    /// Creates the first superadmin (`admin`) and returns their API token.
    pub fn bootstrap(&self) -> String {
        let (status, body) = self.http().call(
            "POST",
            "/v1/setup",
            None,
            Some(json!({"setup_token": self.setup_token.as_ref().unwrap(), "username": "admin", "password": PASSWORD})),
        );
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
