//! llama-server's router mode, as the dashboard uses it: the models it lists at `GET /models`
//! with their state (`unloaded`, `loading`, `loaded`, `sleeping`; a failed load is `unloaded`
//! marked failed), and `POST /models/load|unload {"model": ID}`. A catalog model is matched to
//! the router's entry by file path when the router reports one, else by its id being the file
//! name with or without `.gguf`, so the dashboard never has to guess the router's naming.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::upstream::{Upstream, UpstreamError};
use crate::db::models::Model;

/// How long a router call may take (loading itself is polled, not waited on).
const CALL: Duration = Duration::from_secs(30);

/// One model as the router lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouterModel {
    /// The router's id for it (what requests put in `model`).
    pub id: String,
    /// `unloaded`, `loading`, `loaded` or `sleeping`.
    pub status: String,
    /// Whether its last load failed.
    pub failed: bool,
    /// Why, when the router says (exit code, message).
    pub reason: Option<String>,
    /// The file, when the router reports it.
    pub path: Option<String>,
}

impl RouterModel {
    /// The catalog status this router state stands for.
    pub fn catalog_status(&self) -> &'static str {
        match self.status.as_str() {
            _ if self.failed => "error",
            "loaded" | "sleeping" => "loaded",
            "loading" => "loading",
            _ => "unloaded",
        }
    }
}

fn parse_entry(entry: &Value) -> Option<RouterModel> {
    let id = entry["id"]
        .as_str()
        .or_else(|| entry["name"].as_str())
        .or_else(|| entry["model"].as_str())?
        .to_string();
    let status_value = &entry["status"];
    let (status, failed, reason) = match status_value {
        Value::String(s) => (s.clone(), false, None),
        Value::Object(o) => {
            let failed = o.get("failed").and_then(Value::as_bool).unwrap_or(false);
            let reason = o
                .get("error")
                .or_else(|| o.get("message"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    o.get("exit_code")
                        .filter(|_| failed)
                        .map(|c| format!("llama-server's model process exited with code {c}"))
                });
            let value = o
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or("unloaded")
                .to_string();
            (value, failed, reason)
        }
        _ => ("unloaded".to_string(), false, None),
    };
    Some(RouterModel {
        id,
        status,
        failed,
        reason,
        path: entry["path"]
            .as_str()
            .map(str::to_string)
            .or_else(|| model_arg(&status_value["args"])),
    })
}

/// The `--model`/`-m` file in the command line the router starts a model with. Models in
/// sub-folders of the models folder are named after the folder, so this is how they are told
/// apart.
fn model_arg(args: &Value) -> Option<String> {
    let args = args.as_array()?;
    args.windows(2).find_map(|pair| {
        matches!(pair[0].as_str(), Some("--model" | "-m"))
            .then(|| pair[1].as_str().map(str::to_string))
            .flatten()
    })
}

/// The router's models.
pub async fn list(upstream: &Upstream) -> Result<Vec<RouterModel>, UpstreamError> {
    let (_, body) = upstream.json("GET", "/models", None, CALL).await?;
    let entries = body["data"]
        .as_array()
        .or_else(|| body["models"].as_array())
        .or_else(|| body.as_array())
        .cloned()
        .unwrap_or_default();
    Ok(entries.iter().filter_map(parse_entry).collect())
}

/// The router's entry for a catalog model.
pub fn find<'a>(list: &'a [RouterModel], model: &Model) -> Option<&'a RouterModel> {
    let path = model.model_path.as_deref().map(Path::new);
    if let Some(by_path) = list.iter().find(|r| {
        r.path
            .as_deref()
            .zip(path)
            .is_some_and(|(theirs, ours)| Path::new(theirs) == ours)
    }) {
        return Some(by_path);
    }
    let file = path
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let names = [
        model.name.clone(),
        model.name.trim_end_matches(".gguf").to_string(),
        file.clone(),
        file.trim_end_matches(".gguf").to_string(),
    ];
    list.iter()
        .find(|r| names.iter().any(|n| !n.is_empty() && *n == r.id))
}

/// Asks the router to load (`load = true`) or unload a model. An answer that is not 2xx is an
/// error with the router's message.
pub async fn command(upstream: &Upstream, id: &str, load: bool) -> Result<(), String> {
    let path = if load {
        "/models/load"
    } else {
        "/models/unload"
    };
    match upstream
        .json("POST", path, Some(&json!({"model": id})), CALL)
        .await
    {
        Ok((200..=299, _)) => Ok(()),
        // Asking for what is already so is not a failure.
        Ok((400, body)) if already(&body, load) => Ok(()),
        Ok((status, body)) => Err(body["error"]["message"]
            .as_str()
            .or_else(|| body["error"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("llama-server answered {status}: {body}"))),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether an error answer says the model is already in the asked-for state.
fn already(body: &Value, load: bool) -> bool {
    let message = body["error"]["message"].as_str().unwrap_or("");
    if load {
        message.contains("already running") || message.contains("already loaded")
    } else {
        message.contains("not running") || message.contains("not loaded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, path: &str) -> Model {
        Model {
            name: name.into(),
            model_path: Some(path.into()),
            ..Model::default()
        }
    }

    #[test]
    fn router_entries_of_either_shape_are_read() {
        let object = json!({"id": "a", "status": {"value": "unloaded", "failed": true, "exit_code": 1}, "path": "/m/a.gguf"});
        let r = parse_entry(&object).unwrap();
        assert_eq!((r.catalog_status(), r.failed), ("error", true));
        assert!(r.reason.unwrap().contains("code 1"));
        let plain = json!({"id": "b", "status": "loading"});
        assert_eq!(parse_entry(&plain).unwrap().catalog_status(), "loading");
        let sleeping = json!({"id": "c", "status": {"value": "sleeping"}});
        assert_eq!(parse_entry(&sleeping).unwrap().catalog_status(), "loaded");
    }

    #[test]
    fn catalog_models_are_matched_by_path_then_by_name() {
        let list = vec![
            parse_entry(&json!({"id": "x", "status": "loaded", "path": "/m/sub/q.gguf"})).unwrap(),
            parse_entry(&json!({"id": "SmolLM2.Q4_1", "status": "unloaded"})).unwrap(),
        ];
        assert_eq!(
            find(&list, &model("q.gguf", "/m/sub/q.gguf")).unwrap().id,
            "x"
        );
        assert_eq!(
            find(&list, &model("SmolLM2.Q4_1.gguf", "/m/SmolLM2.Q4_1.gguf"))
                .unwrap()
                .id,
            "SmolLM2.Q4_1"
        );
        assert!(find(&list, &model("other.gguf", "/m/other.gguf")).is_none());
    }

    #[test]
    fn models_in_sub_folders_are_matched_by_the_model_argument() {
        // As the real router lists a model in `models/smollm2/`.
        let entry = json!({"id": "smollm2", "status": {"value": "loaded", "args": [
            "/bin/llama-server", "--host", "127.0.0.1", "--port", "0", "--alias", "smollm2",
            "--model", "/m/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]}});
        let list = vec![parse_entry(&entry).unwrap()];
        let ours = model(
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "/m/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        );
        assert_eq!(find(&list, &ours).unwrap().id, "smollm2");
    }

    #[test]
    fn already_in_the_asked_state_is_success() {
        let running = json!({"error": {"code": 400, "message": "model is already running"}});
        assert!(already(&running, true));
        assert!(!already(&running, false));
    }
}
