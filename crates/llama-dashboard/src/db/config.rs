//! The configuration repository (seed §9.4): the documented defaults with saved values merged
//! over them, stored as JSON under the key `config` of `server_config`.
//!
//! One deliberate difference from the documented defaults: `llama_server_host` is `127.0.0.1`,
//! not `0.0.0.0`, so a fresh install does not expose llama-server to the network.

use rusqlite::{Connection, OptionalExtension, Transaction};
use serde_json::{Map, Value, json};

/// The key the whole configuration is stored under.
pub const KEY: &str = "config";

/// The documented defaults (`baseModelsPath` is `~/models` of the given home).
pub fn defaults(home: &str) -> Map<String, Value> {
    let models = std::path::Path::new(home).join("models");
    let value = json!({
        "serverPath": "/usr/local/bin/llama-server",
        "host": "localhost",
        "port": 8080,
        "baseModelsPath": models.to_string_lossy(),
        "ctx_size": 2048,
        "batch_size": 512,
        "threads": 4,
        "llama_server_enabled": true,
        "llama_server_port": 8080,
        "llama_server_host": "127.0.0.1",
        "llama_server_metrics": true,
        "models_max": 4,
        "idle_unload_seconds": 0,
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The configuration: defaults with saved values over them. A stored value that is not a JSON
/// object is ignored (the defaults stand).
pub fn get(conn: &Connection, home: &str) -> rusqlite::Result<Map<String, Value>> {
    let mut config = defaults(home);
    let saved: Option<String> = conn
        .query_row(
            "SELECT value FROM server_config WHERE key = ?1",
            [KEY],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(Ok(Value::Object(saved))) = saved.map(|s| serde_json::from_str::<Value>(&s)) {
        config.extend(saved);
    }
    Ok(config)
}

/// Saves the whole configuration.
pub fn save(tx: &Transaction<'_>, config: &Map<String, Value>) -> rusqlite::Result<()> {
    let text = Value::Object(config.clone()).to_string();
    tx.execute(
        "INSERT INTO server_config (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [KEY, text.as_str()],
    )?;
    Ok(())
}

/// The user's home directory (`$HOME`), which the documented `baseModelsPath` default is in.
pub fn home() -> String {
    std::env::var("HOME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

/// The models folder a configuration names, with a leading `~` meaning `home`.
pub fn models_dir(config: &Map<String, Value>, home: &str) -> std::path::PathBuf {
    let text = config
        .get("baseModelsPath")
        .and_then(Value::as_str)
        .unwrap_or("~/models");
    match text.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            std::path::Path::new(home).join(rest.trim_start_matches('/'))
        }
        _ => std::path::PathBuf::from(text),
    }
}

/// The kind of value a setting holds, for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    /// A non-empty string.
    Text,
    /// A boolean.
    Flag,
    /// An integer within the inclusive range.
    Integer(i64, i64),
}

/// Every setting the dashboard knows, with what it accepts.
pub const SETTINGS: [(&str, SettingKind); 13] = [
    ("serverPath", SettingKind::Text),
    ("host", SettingKind::Text),
    ("port", SettingKind::Integer(1, 65_535)),
    ("baseModelsPath", SettingKind::Text),
    ("ctx_size", SettingKind::Integer(0, 16_777_216)),
    ("batch_size", SettingKind::Integer(1, 1_048_576)),
    ("threads", SettingKind::Integer(1, 1024)),
    ("llama_server_enabled", SettingKind::Flag),
    ("llama_server_port", SettingKind::Integer(1, 65_535)),
    ("llama_server_host", SettingKind::Text),
    ("llama_server_metrics", SettingKind::Flag),
    ("models_max", SettingKind::Integer(0, 1024)),
    ("idle_unload_seconds", SettingKind::Integer(0, 2_592_000)),
];

/// A setting that cannot be stored, with a message that says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidSetting {
    /// The offending key.
    pub key: String,
    /// What was wrong and what is accepted.
    pub message: String,
}

/// Checks one setting's value; an unknown key is refused with the list of known ones.
pub fn validate_setting(key: &str, value: &Value) -> Result<(), InvalidSetting> {
    let invalid = |message: String| InvalidSetting {
        key: key.to_string(),
        message,
    };
    let Some((_, kind)) = SETTINGS.iter().find(|(name, _)| *name == key) else {
        let known: Vec<&str> = SETTINGS.iter().map(|(name, _)| *name).collect();
        return Err(invalid(format!(
            "unknown setting `{key}`; the settings are: {}",
            known.join(", ")
        )));
    };
    match (kind, value) {
        (SettingKind::Text, Value::String(s)) if !s.trim().is_empty() && !s.contains('\0') => {
            Ok(())
        }
        (SettingKind::Text, _) => Err(invalid(format!("`{key}` must be a non-empty string"))),
        (SettingKind::Flag, Value::Bool(_)) => Ok(()),
        (SettingKind::Flag, _) => Err(invalid(format!("`{key}` must be true or false"))),
        (SettingKind::Integer(lo, hi), Value::Number(n))
            if n.as_i64().is_some_and(|v| (*lo..=*hi).contains(&v)) =>
        {
            Ok(())
        }
        (SettingKind::Integer(lo, hi), _) => Err(invalid(format!(
            "`{key}` must be a whole number from {lo} to {hi}"
        ))),
    }
}

/// Checks every setting of `changes`; the first problem is returned.
pub fn validate(changes: &Map<String, Value>) -> Result<(), InvalidSetting> {
    changes
        .iter()
        .try_for_each(|(key, value)| validate_setting(key, value))
}

/// Reads a value typed on a command line for `key`: numbers and booleans for settings of those
/// kinds, the text itself otherwise.
pub fn parse_cli_value(key: &str, text: &str) -> Value {
    match SETTINGS.iter().find(|(name, _)| *name == key).map(|s| s.1) {
        Some(SettingKind::Text) => Value::String(text.to_string()),
        _ => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())),
    }
}

/// Merges `changes` over the current configuration and saves it, after checking every change.
/// Returns the whole new configuration.
pub fn update(
    tx: &Transaction<'_>,
    home: &str,
    changes: &Map<String, Value>,
) -> Result<Map<String, Value>, UpdateError> {
    validate(changes)?;
    let mut config = get(tx, home)?;
    config.extend(changes.clone());
    save(tx, &config)?;
    Ok(config)
}

/// Why [`update`] stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// A change was refused.
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_by_kind_and_range() {
        assert!(validate_setting("port", &json!(3000)).is_ok());
        assert!(validate_setting("port", &json!(0)).is_err());
        assert!(validate_setting("port", &json!("3000")).is_err());
        assert!(validate_setting("host", &json!("")).is_err());
        assert!(validate_setting("llama_server_metrics", &json!(1)).is_err());
        let unknown = validate_setting("colour", &json!("red")).unwrap_err();
        assert!(unknown.message.contains("baseModelsPath"), "{unknown}");
        for (key, _) in SETTINGS {
            let default = defaults("/home/u").remove(key).unwrap();
            assert!(validate_setting(key, &default).is_ok(), "default of {key}");
        }
    }

    #[test]
    fn command_line_values_take_the_setting_kind() {
        assert_eq!(parse_cli_value("port", "3001"), json!(3001));
        assert_eq!(
            parse_cli_value("llama_server_enabled", "false"),
            json!(false)
        );
        assert_eq!(parse_cli_value("host", "123"), json!("123"));
    }
}
