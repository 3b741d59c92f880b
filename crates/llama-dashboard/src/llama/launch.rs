//! The command line `llama-server` is started with, derived from the saved settings: the binary
//! (`serverPath`), where it listens (`llama_server_host`, `llama_server_port`), the models folder
//! in llama.cpp's router mode (`--models-dir`), the most models it keeps loaded at once
//! (`models_max`; it unloads the least recently used one to load another), and the context
//! size, batch size, threads and metrics switch every model is loaded with.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::db::config;

/// How to start llama-server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The address it listens on (for health checks and proxying).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The models folder it serves.
    pub models_dir: PathBuf,
}

impl Launch {
    /// `http://host:port`, with IPv6 hosts bracketed.
    pub fn base_url(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }
}

fn int(config: &Map<String, Value>, key: &str) -> Result<i64, String> {
    config
        .get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("the setting `{key}` is not a whole number; fix it with `llama-dashboard config set {key} N`"))
}

fn text<'a>(config: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    config
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            format!(
                "the setting `{key}` is empty; set it with `llama-dashboard config set {key} VALUE`"
            )
        })
}

/// The launch for a configuration (defaults merged under saved values), in router mode over the
/// models folder. Refuses a binary that is not there, with what to do about it.
pub fn from_config(settings: &Map<String, Value>, home: &str) -> Result<Launch, String> {
    let program = PathBuf::from(text(settings, "serverPath")?);
    if !program.is_file() {
        return Err(format!(
            "llama-server was not found at {}; install llama.cpp and run `llama-dashboard config set serverPath /path/to/llama-server`",
            program.display()
        ));
    }
    let host = text(settings, "llama_server_host")?.to_string();
    let port = u16::try_from(int(settings, "llama_server_port")?)
        .map_err(|_| "the setting `llama_server_port` is not a port (1-65535)".to_string())?;
    let models_dir = config::models_dir(settings, home);
    let mut args = vec![
        "--models-dir".to_string(),
        models_dir.display().to_string(),
        "--host".to_string(),
        host.clone(),
        "--port".to_string(),
        port.to_string(),
        "--ctx-size".to_string(),
        int(settings, "ctx_size")?.to_string(),
        "--batch-size".to_string(),
        int(settings, "batch_size")?.to_string(),
        "--threads".to_string(),
        int(settings, "threads")?.to_string(),
        "--models-max".to_string(),
        int(settings, "models_max")?.to_string(),
    ];
    if settings
        .get("llama_server_metrics")
        .and_then(Value::as_bool)
        .unwrap_or(true)
    {
        args.push("--metrics".to_string());
    }
    Ok(Launch {
        program,
        args,
        host,
        port,
        models_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn router_mode_from_the_saved_settings() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("llama-server");
        std::fs::write(&binary, "").unwrap();
        let mut settings = config::defaults("/home/u");
        settings.insert("serverPath".into(), json!(binary.display().to_string()));
        settings.insert("llama_server_port".into(), json!(8181));
        settings.insert("llama_server_metrics".into(), json!(false));
        let launch = from_config(&settings, "/home/u").unwrap();
        assert_eq!(launch.base_url(), "http://127.0.0.1:8181");
        assert_eq!(
            launch.args,
            [
                "--models-dir",
                "/home/u/models",
                "--host",
                "127.0.0.1",
                "--port",
                "8181",
                "--ctx-size",
                "2048",
                "--batch-size",
                "512",
                "--threads",
                "4",
                "--models-max",
                "4"
            ]
        );
        settings.insert("serverPath".into(), json!("/nowhere/llama-server"));
        let error = from_config(&settings, "/home/u").unwrap_err();
        assert!(error.contains("config set serverPath"), "{error}");
    }
}
