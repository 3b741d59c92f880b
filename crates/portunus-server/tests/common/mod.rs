//! A real `portunus-server serve` on loopback for the integration tests, and a small HTTP helper.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

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

/// A JSON-over-HTTP client that returns status and body whatever the status.
pub struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    pub fn new(base: &str) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Http {
            base: base.to_string(),
            agent,
        }
    }

    /// (status, JSON body) of a request with an optional bearer token.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let headers: Vec<(String, String)> = token
            .map(|t| vec![("Authorization".to_string(), format!("Bearer {t}"))])
            .unwrap_or_default();
        let (status, body, _) = self.raw(method, path, &headers, body);
        (status, body)
    }

    /// (status, JSON body, response headers) with arbitrary request headers.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<Value>,
    ) -> (u16, Value, Vec<(String, String)>) {
        let url = format!("{}{path}", self.base);
        let result = match method {
            "GET" | "DELETE" if body.is_none() => {
                let mut req = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                req.call()
            }
            _ => {
                let mut req = match method {
                    "PUT" => self.agent.put(&url),
                    "PATCH" => self.agent.patch(&url),
                    "DELETE" => self.agent.delete(&url).force_send_body(),
                    _ => self.agent.post(&url),
                };
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                req.send_json(body.unwrap_or(json!({})))
            }
        };
        let mut response = result.unwrap();
        let status = response.status().as_u16();
        let out_headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            out_headers,
        )
    }
}

/// The error code of an error envelope.
pub fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or("<no error envelope>")
}
