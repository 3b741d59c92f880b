//! The `metrics` repository (seed §9.2): snapshots of CPU, memory, disk, GPU and swap usage, the
//! latest and the history, and the pruning that keeps the table bounded.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

/// Records kept by [`prune`] unless told otherwise, as documented.
pub const DEFAULT_MAX_RECORDS: u64 = 10_000;
/// Records returned by [`get_history`] unless told otherwise, as documented.
pub const DEFAULT_HISTORY: u32 = 100;

/// A metrics snapshot; missing numbers are 0, as documented.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// Row id (0 before saving).
    pub id: i64,
    /// Percent of all cores.
    pub cpu_usage: f64,
    /// Percent of memory.
    pub memory_usage: f64,
    /// Percent of the models folder's filesystem.
    pub disk_usage: f64,
    /// Models loaded.
    pub active_models: i64,
    /// Seconds the dashboard has run.
    pub uptime: f64,
    /// Percent of GPU.
    pub gpu_usage: f64,
    /// GPU memory used (MiB).
    pub gpu_memory_used: f64,
    /// GPU memory in total (MiB).
    pub gpu_memory_total: f64,
    /// Percent of swap.
    pub swap_usage: f64,
    /// Tokens llama-server generated per second since the previous sample (from its
    /// `/metrics`; 0 when it is not running or its metrics are off).
    pub tokens_per_second: f64,
    /// CPU use of llama-server and the model processes it started, percent of all cores.
    pub llama_cpu_usage: f64,
    /// Their resident memory (MiB).
    pub llama_memory_used: f64,
    /// Unix seconds (set by the database when saving).
    pub timestamp: i64,
}

const SELECT: &str =
    "SELECT id, cpu_usage, memory_usage, disk_usage, active_models, uptime, gpu_usage,
    gpu_memory_used, gpu_memory_total, swap_usage, timestamp, tokens_per_second,
    llama_cpu_usage, llama_memory_used FROM metrics";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Metrics> {
    let f = |i: usize| r.get::<_, Option<f64>>(i).map(|v| v.unwrap_or(0.0));
    Ok(Metrics {
        id: r.get(0)?,
        cpu_usage: f(1)?,
        memory_usage: f(2)?,
        disk_usage: f(3)?,
        active_models: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
        uptime: f(5)?,
        gpu_usage: f(6)?,
        gpu_memory_used: f(7)?,
        gpu_memory_total: f(8)?,
        swap_usage: f(9)?,
        timestamp: r.get::<_, Option<i64>>(10)?.unwrap_or(0),
        tokens_per_second: f(11)?,
        llama_cpu_usage: f(12)?,
        llama_memory_used: f(13)?,
    })
}

/// Stores a snapshot, stamped by the database with the current unix time.
pub fn save(tx: &Transaction<'_>, m: &Metrics) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO metrics (cpu_usage, memory_usage, disk_usage, active_models, uptime, gpu_usage,
             gpu_memory_used, gpu_memory_total, swap_usage, tokens_per_second, llama_cpu_usage,
             llama_memory_used) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        m.cpu_usage,
        m.memory_usage,
        m.disk_usage,
        m.active_models,
        m.uptime,
        m.gpu_usage,
        m.gpu_memory_used,
        m.gpu_memory_total,
        m.swap_usage,
        m.tokens_per_second,
        m.llama_cpu_usage,
        m.llama_memory_used
    ])?;
    Ok(tx.last_insert_rowid())
}

/// The newest `limit` snapshots, newest first.
pub fn get_history(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<Metrics>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} ORDER BY timestamp DESC, id DESC LIMIT ?1"
    ))?;
    stmt.query_map([limit], row)?.collect()
}

/// The newest snapshot, if any.
pub fn get_latest(conn: &Connection) -> rusqlite::Result<Option<Metrics>> {
    conn.query_row(
        &format!("{SELECT} ORDER BY timestamp DESC, id DESC LIMIT 1"),
        [],
        row,
    )
    .optional()
}

/// Deletes the oldest snapshots beyond `max_records`; returns how many went.
pub fn prune(tx: &Transaction<'_>, max_records: u64) -> rusqlite::Result<usize> {
    let keep = i64::try_from(max_records).unwrap_or(i64::MAX);
    tx.execute(
        "DELETE FROM metrics WHERE id NOT IN
           (SELECT id FROM metrics ORDER BY timestamp DESC, id DESC LIMIT ?1)",
        [keep],
    )
}

/// Deletes snapshots older than `max_age_secs`; returns how many went.
pub fn prune_older_than(tx: &Transaction<'_>, max_age_secs: u64) -> rusqlite::Result<usize> {
    let cutoff = super::models::now() - i64::try_from(max_age_secs).unwrap_or(i64::MAX);
    tx.execute("DELETE FROM metrics WHERE timestamp < ?1", [cutoff])
}

/// Age after which the server's retention deletes a snapshot unless configured otherwise (7 days).
pub const DEFAULT_MAX_AGE_SECS: u64 = 7 * 24 * 3600;
