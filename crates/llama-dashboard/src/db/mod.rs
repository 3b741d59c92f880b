//! The documented database: `data/llama-dashboard.db` (relative to the working directory, as
//! the seed documents; `--db` or `LLAMA_DASHBOARD_DB` override it), opened through the shared
//! store crate.
//!
//! The first migration is the seed's schema statement for statement. A database made by the
//! original app has the tables but no migration history, and may predate the columns its own
//! 1.1/1.2 migrations added; it is adopted in place: missing columns are added with their
//! documented defaults, missing tables and indexes are created, and every row is kept.

pub mod config;
pub mod logs;
pub mod metadata;
pub mod metrics;
pub mod models;

use rusqlite::Connection;
use store::{DefaultPath, Location, Tool};

mod embedded {
    refinery::embed_migrations!("src/db/migrations");
}

/// The first migration's text, also used (made idempotent) to adopt the original's files.
const V1: &str = include_str!("migrations/V1__documented_schema.sql");

/// `llama-dashboard`: `data/llama-dashboard.db`.
pub static TOOL: Tool = Tool {
    name: "llama-dashboard",
    application_id: 0x4c4c_4d44, // "LLMD"
    location: Location {
        env_var: "LLAMA_DASHBOARD_DB",
        flag: "--db",
        file_in_dir: None,
        default: DefaultPath::WorkingDir("data/llama-dashboard.db"),
    },
    migrations: embedded::migrations::runner,
    adopt: Some(adopt_original),
};

/// The five documented tables.
pub const TABLES: [&str; 5] = ["models", "metrics", "logs", "server_config", "metadata"];

/// Columns the original added by migration after its first release, with their declarations.
const LATER_COLUMNS: [(&str, &str, &str); 11] = [
    ("models", "embedding_size", "INTEGER DEFAULT 0"),
    ("models", "block_count", "INTEGER DEFAULT 0"),
    ("models", "head_count", "INTEGER DEFAULT 0"),
    ("models", "head_count_kv", "INTEGER DEFAULT 0"),
    ("models", "ffn_dim", "INTEGER DEFAULT 0"),
    ("models", "file_type", "INTEGER DEFAULT 0"),
    ("models", "favorite", "INTEGER DEFAULT 0"),
    ("metrics", "gpu_usage", "REAL DEFAULT 0"),
    ("metrics", "gpu_memory_used", "REAL DEFAULT 0"),
    ("metrics", "gpu_memory_total", "REAL DEFAULT 0"),
    ("metrics", "swap_usage", "REAL DEFAULT 0"),
];

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Adopts a database made by the original app: it must have a `models` table with `id` and
/// `name`; anything else is not recognised (and refused by the store).
fn adopt_original(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    if !(has_column(conn, "models", "id")? && has_column(conn, "models", "name")?) {
        return Ok(None);
    }
    for (table, column, decl) in LATER_COLUMNS {
        let table_exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )?;
        if table_exists && !has_column(conn, table, column)? {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    let idempotent = V1
        .replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ")
        .replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ");
    conn.execute_batch(&idempotent)?;
    Ok(Some(1))
}
