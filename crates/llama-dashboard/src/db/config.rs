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
