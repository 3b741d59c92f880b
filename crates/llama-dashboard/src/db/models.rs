//! The `models` repository (seed §9.1): the catalog of GGUF models, one row per model, with the
//! documented columns, defaults and id pattern `model_{timestamp}_{random}`.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params, types::Value};
use serde::{Deserialize, Serialize};

/// A row of `models`, every documented column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    /// `model_{timestamp}_{random}`.
    pub id: String,
    /// Display name (usually the file name).
    pub name: String,
    /// Model family, default `llama`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `idle`, `loading`, `loaded`, `unloaded`, `error`.
    pub status: String,
    /// JSON text of launch parameters, default `{}`.
    pub parameters: String,
    /// Path of the GGUF file.
    pub model_path: Option<String>,
    /// Bytes on disk (all shards together).
    pub file_size: Option<i64>,
    /// Parameter count label, e.g. `135M`.
    pub params: Option<String>,
    /// Quantization label, e.g. `Q4_K_M`.
    pub quantization: Option<String>,
    /// Context length.
    pub ctx_size: i64,
    /// Embedding length.
    pub embedding_size: i64,
    /// Layers.
    pub block_count: i64,
    /// Attention heads.
    pub head_count: i64,
    /// Key/value heads.
    pub head_count_kv: i64,
    /// Feed-forward length.
    pub ffn_dim: i64,
    /// GGUF `general.file_type`.
    pub file_type: i64,
    /// Batch size to launch with.
    pub batch_size: i64,
    /// Threads to launch with.
    pub threads: i64,
    /// 1 when marked favorite.
    pub favorite: i64,
    /// Unix seconds.
    pub created_at: Option<i64>,
    /// Unix seconds.
    pub updated_at: Option<i64>,
}

impl Default for Model {
    /// A model with the documented column defaults (`llama`, `idle`, `{}`, ctx 4096, batch 512,
    /// 4 threads), so saving one that names only a few fields stores what SQLite would.
    fn default() -> Model {
        Model {
            id: String::new(),
            name: String::new(),
            kind: "llama".into(),
            status: "idle".into(),
            parameters: "{}".into(),
            model_path: None,
            file_size: None,
            params: None,
            quantization: None,
            ctx_size: 4096,
            embedding_size: 0,
            block_count: 0,
            head_count: 0,
            head_count_kv: 0,
            ffn_dim: 0,
            file_type: 0,
            batch_size: 512,
            threads: 4,
            favorite: 0,
            created_at: None,
            updated_at: None,
        }
    }
}

/// The columns, in table order.
pub const COLUMNS: [&str; 21] = [
    "id",
    "name",
    "type",
    "status",
    "parameters",
    "model_path",
    "file_size",
    "params",
    "quantization",
    "ctx_size",
    "embedding_size",
    "block_count",
    "head_count",
    "head_count_kv",
    "ffn_dim",
    "file_type",
    "batch_size",
    "threads",
    "favorite",
    "created_at",
    "updated_at",
];

/// Whether `update` may change a column: any but the id and the two timestamps.
fn updatable(column: &str) -> bool {
    COLUMNS.contains(&column) && !matches!(column, "id" | "created_at" | "updated_at")
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Model> {
    Ok(Model {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r
            .get::<_, Option<String>>(2)?
            .unwrap_or_else(|| "llama".into()),
        status: r
            .get::<_, Option<String>>(3)?
            .unwrap_or_else(|| "idle".into()),
        parameters: r
            .get::<_, Option<String>>(4)?
            .unwrap_or_else(|| "{}".into()),
        model_path: r.get(5)?,
        file_size: r.get(6)?,
        params: r.get(7)?,
        quantization: r.get(8)?,
        ctx_size: r.get::<_, Option<i64>>(9)?.unwrap_or(4096),
        embedding_size: r.get::<_, Option<i64>>(10)?.unwrap_or(0),
        block_count: r.get::<_, Option<i64>>(11)?.unwrap_or(0),
        head_count: r.get::<_, Option<i64>>(12)?.unwrap_or(0),
        head_count_kv: r.get::<_, Option<i64>>(13)?.unwrap_or(0),
        ffn_dim: r.get::<_, Option<i64>>(14)?.unwrap_or(0),
        file_type: r.get::<_, Option<i64>>(15)?.unwrap_or(0),
        batch_size: r.get::<_, Option<i64>>(16)?.unwrap_or(512),
        threads: r.get::<_, Option<i64>>(17)?.unwrap_or(4),
        favorite: r.get::<_, Option<i64>>(18)?.unwrap_or(0),
        created_at: r.get(19)?,
        updated_at: r.get(20)?,
    })
}

fn select() -> String {
    format!("SELECT {} FROM models", COLUMNS.join(", "))
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new id: `model_{unix seconds}_{9 random base-36 characters}`.
pub fn new_id() -> String {
    let mut bytes = [0u8; 9];
    // Without the OS generator, fall back on the clock: ids stay unique per process and second.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (nanos >> (i % 4 * 8)) as u8 ^ i as u8);
    }
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let random: String = bytes
        .iter()
        .map(|b| DIGITS[usize::from(*b) % 36] as char)
        .collect();
    format!("model_{}_{random}", now())
}

/// All models, newest first.
pub fn get_all(conn: &Connection) -> rusqlite::Result<Vec<Model>> {
    let mut stmt = conn.prepare_cached(&format!("{} ORDER BY created_at DESC, id", select()))?;
    stmt.query_map([], row)?.collect()
}

/// One model, or `None`.
pub fn get_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<Model>> {
    conn.query_row(&format!("{} WHERE id = ?1", select()), [id], row)
        .optional()
}

/// Favorites, by name.
pub fn get_favorites(conn: &Connection) -> rusqlite::Result<Vec<Model>> {
    let mut stmt =
        conn.prepare_cached(&format!("{} WHERE favorite = 1 ORDER BY name", select()))?;
    stmt.query_map([], row)?.collect()
}

/// Inserts or replaces a model; an empty id gets a new one, missing timestamps are set.
pub fn save(tx: &Transaction<'_>, model: &Model) -> rusqlite::Result<Model> {
    let mut saved = model.clone();
    if saved.id.is_empty() {
        saved.id = new_id();
    }
    let now = now();
    saved.created_at = saved.created_at.or(Some(now));
    saved.updated_at = Some(now);
    if saved.kind.is_empty() {
        saved.kind = "llama".into();
    }
    if saved.status.is_empty() {
        saved.status = "idle".into();
    }
    if saved.parameters.is_empty() {
        saved.parameters = "{}".into();
    }
    let placeholders: Vec<String> = (1..=COLUMNS.len()).map(|i| format!("?{i}")).collect();
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO models ({}) VALUES ({})",
        COLUMNS.join(", "),
        placeholders.join(", ")
    ))?
    .execute(params![
        saved.id,
        saved.name,
        saved.kind,
        saved.status,
        saved.parameters,
        saved.model_path,
        saved.file_size,
        saved.params,
        saved.quantization,
        saved.ctx_size,
        saved.embedding_size,
        saved.block_count,
        saved.head_count,
        saved.head_count_kv,
        saved.ffn_dim,
        saved.file_type,
        saved.batch_size,
        saved.threads,
        saved.favorite,
        saved.created_at,
        saved.updated_at
    ])?;
    Ok(saved)
}

/// Changes the given columns (a JSON object of column → value) and bumps `updated_at`. Returns
/// the row, or `None` when the model does not exist or no known column was given. Unknown
/// columns are ignored, as documented; values of the wrong JSON type are an error.
pub fn update(
    tx: &Transaction<'_>,
    id: &str,
    updates: &serde_json::Map<String, serde_json::Value>,
) -> rusqlite::Result<Option<Model>> {
    let mut sets = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    for (key, value) in updates {
        if !updatable(key) {
            continue;
        }
        let v = match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Integer(i64::from(*b)),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Integer(i),
                None => Value::Real(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Value::Text(s.clone()),
            other => Value::Text(other.to_string()),
        };
        values.push(v);
        sets.push(format!("{key} = ?{}", values.len()));
    }
    if sets.is_empty() {
        return Ok(None);
    }
    values.push(Value::Integer(now()));
    sets.push(format!("updated_at = ?{}", values.len()));
    values.push(Value::Text(id.to_string()));
    let sql = format!(
        "UPDATE models SET {} WHERE id = ?{}",
        sets.join(", "),
        values.len()
    );
    let changed = tx.execute(&sql, rusqlite::params_from_iter(values))?;
    if changed == 0 {
        return Ok(None);
    }
    get_by_id(tx, id)
}

/// Deletes a model; whether a row was deleted.
pub fn delete(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<bool> {
    Ok(tx.execute("DELETE FROM models WHERE id = ?1", [id])? > 0)
}

/// Deletes the rows whose `model_path` no longer exists; returns how many.
pub fn cleanup_missing_files(tx: &Transaction<'_>) -> rusqlite::Result<usize> {
    let gone: Vec<String> = get_all(tx)?
        .into_iter()
        .filter(|m| {
            m.model_path
                .as_deref()
                .is_some_and(|p| !Path::new(p).exists())
        })
        .map(|m| m.id)
        .collect();
    for id in &gone {
        tx.execute("DELETE FROM models WHERE id = ?1", [id])?;
    }
    Ok(gone.len())
}
