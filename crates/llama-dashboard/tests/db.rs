//! The documented database: a fresh file has exactly the seed's tables, columns, defaults and
//! indexes; every SQL statement of the seed's "Query Examples" runs unchanged; a database made by
//! the original app (no migration history, missing the columns its later releases added) is
//! adopted in place with its rows kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use llama_dashboard::db::{TABLES, TOOL};
use rusqlite::Connection;
use store::{OpenConfig, Store};

fn open(path: &std::path::Path) -> Store {
    let mut config = OpenConfig::for_path(&TOOL, path);
    config.allow_unsupported_fs = true;
    Store::open(&TOOL, &config).unwrap()
}

fn columns(conn: &Connection, table: &str) -> Vec<(String, Option<String>)> {
    let mut stmt = conn
        .prepare("SELECT name, dflt_value FROM pragma_table_info(?1) ORDER BY cid")
        .unwrap();
    stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_new_database_has_the_documented_tables_columns_defaults_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("data/llama-dashboard.db"));
    store
        .read(|conn| {
            let models = columns(conn, "models");
            let names: Vec<&str> = models.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "id", "name", "type", "status", "parameters", "model_path", "file_size",
                    "params", "quantization", "ctx_size", "embedding_size", "block_count",
                    "head_count", "head_count_kv", "ffn_dim", "file_type", "batch_size",
                    "threads", "favorite", "created_at", "updated_at"
                ]
            );
            let default = |col: &str| {
                models
                    .iter()
                    .find(|(n, _)| n == col)
                    .and_then(|(_, d)| d.clone())
            };
            assert_eq!(default("type").as_deref(), Some("'llama'"));
            assert_eq!(default("status").as_deref(), Some("'idle'"));
            assert_eq!(default("ctx_size").as_deref(), Some("4096"));
            assert_eq!(default("batch_size").as_deref(), Some("512"));
            let metrics: Vec<String> = columns(conn, "metrics").into_iter().map(|c| c.0).collect();
            for col in ["gpu_usage", "gpu_memory_used", "gpu_memory_total", "swap_usage", "timestamp"] {
                assert!(metrics.iter().any(|c| c == col), "metrics.{col}");
            }
            for table in TABLES {
                assert!(!columns(conn, table).is_empty(), "{table}");
            }
            let mut stmt = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%' ORDER BY name")
                .unwrap();
            let indexes: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(
                indexes,
                [
                    "idx_logs_level", "idx_logs_source", "idx_logs_timestamp", "idx_metadata_key",
                    "idx_metrics_timestamp", "idx_models_created", "idx_models_name", "idx_models_status"
                ]
            );
            // Defaults fill in what an insert leaves out, as documented.
            conn.execute("INSERT INTO logs (level, message) VALUES ('info', 'x')", []).unwrap();
            let ts: i64 = conn.query_row("SELECT timestamp FROM logs", [], |r| r.get(0)).unwrap();
            assert!(ts > 1_700_000_000, "unix seconds: {ts}");
            Ok::<_, store::Error>(())
        })
        .unwrap();
}

/// Section 10 of the seed, verbatim.
const QUERY_EXAMPLES: &[&str] = &[
    "SELECT * FROM models WHERE status = 'loaded';",
    "SELECT * FROM models WHERE status = 'idle' ORDER BY name ASC;",
    "SELECT * FROM models WHERE status = 'error';",
    "SELECT * FROM metrics\nWHERE timestamp >= strftime('%s', 'now') - 3600\nORDER BY timestamp DESC;",
    "SELECT\n  AVG(cpu_usage) as avg_cpu,\n  AVG(memory_usage) as avg_memory,\n  AVG(gpu_usage) as avg_gpu\nFROM metrics\nWHERE timestamp >= strftime('%s', 'now') - 3600;",
    "SELECT * FROM logs\nWHERE level IN ('error', 'critical')\nORDER BY timestamp DESC\nLIMIT 100;",
    "SELECT * FROM logs\nWHERE source = 'llama-server'\nORDER BY timestamp DESC\nLIMIT 50;",
    "SELECT id, level, message, timestamp FROM logs\nWHERE level = 'error'\nORDER BY timestamp DESC\nLIMIT 20;",
    "SELECT COUNT(*) as count FROM models WHERE status = 'loaded';",
    "SELECT status, COUNT(*) as count\nFROM models\nGROUP BY status;",
    "SELECT * FROM models\nWHERE file_size IS NOT NULL\nORDER BY file_size DESC\nLIMIT 1;",
    "SELECT id, name, file_size, quantization\nFROM models\nWHERE file_size IS NOT NULL\nORDER BY file_size DESC;",
    "SELECT\n  m.id,\n  m.name,\n  m.status,\n  m.file_size,\n  COUNT(DISTINCT mt.id) as metrics_samples,\n  COUNT(DISTINCT l.id) as log_entries\nFROM models m\nLEFT JOIN metrics mt ON mt.active_models > 0\nLEFT JOIN logs l ON l.source = m.name\nGROUP BY m.id\nORDER BY m.created_at DESC;",
];

#[test]
fn every_query_example_of_the_seed_runs_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("llama-dashboard.db"));
    store
        .write(|tx| {
            tx.execute_batch(
                "INSERT INTO models (id, name, status, file_size, created_at) VALUES
                   ('model_1704112345_abc123def', 'llama-2-7b.Q4_K_M.gguf', 'loaded', 4268994560, 1704112345),
                   ('model_1704112346_def456ghi', 'phi-2.Q8_0.gguf', 'idle', 2960000000, 1704112346);
                 INSERT INTO metrics (cpu_usage, memory_usage, active_models) VALUES (12.5, 40.0, 1);
                 INSERT INTO logs (level, message, source) VALUES ('error', 'boom', 'llama-server');
                 INSERT INTO logs (level, message, source) VALUES ('info', 'hi', 'llama-2-7b.Q4_K_M.gguf');",
            )?;
            Ok::<_, store::Error>(())
        })
        .unwrap();
    store
        .read(|conn| {
            for sql in QUERY_EXAMPLES {
                let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let n = stmt.query_map([], |_| Ok(())).unwrap().count();
                assert!(
                    n >= 1 || sql.contains("'error'") || sql.contains("'critical'"),
                    "{sql} returned nothing"
                );
            }
            let largest: String = conn
                .query_row(QUERY_EXAMPLES[10], [], |r| r.get("name"))
                .unwrap();
            assert_eq!(largest, "llama-2-7b.Q4_K_M.gguf");
            Ok::<_, store::Error>(())
        })
        .unwrap();
}

#[test]
fn a_database_made_by_the_original_app_is_adopted_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama-dashboard.db");
    {
        // The original's first release: no later columns, no server_config or metadata tables.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE models (id TEXT PRIMARY KEY, name TEXT NOT NULL, type TEXT DEFAULT 'llama',
                 status TEXT DEFAULT 'idle', parameters TEXT DEFAULT '{}', model_path TEXT, file_size INTEGER,
                 params TEXT, quantization TEXT, ctx_size INTEGER DEFAULT 4096, batch_size INTEGER DEFAULT 512,
                 threads INTEGER DEFAULT 4, created_at INTEGER, updated_at INTEGER);
             CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, cpu_usage REAL, memory_usage REAL,
                 disk_usage REAL, active_models INTEGER, uptime REAL,
                 timestamp INTEGER DEFAULT (strftime('%s', 'now')));
             CREATE TABLE logs (id INTEGER PRIMARY KEY AUTOINCREMENT, level TEXT NOT NULL, message TEXT NOT NULL,
                 source TEXT, timestamp INTEGER DEFAULT (strftime('%s', 'now')));
             INSERT INTO models (id, name, status, created_at) VALUES ('model_1_a', 'old.gguf', 'idle', 1);
             INSERT INTO metrics (cpu_usage) VALUES (3.5);
             INSERT INTO logs (level, message) VALUES ('warn', 'kept');",
        )
        .unwrap();
    }
    let store = open(&path);
    store
        .read(|conn| {
            let (name, favorite, ffn): (String, i64, i64) = conn
                .query_row(
                    "SELECT name, favorite, ffn_dim FROM models WHERE id = 'model_1_a'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap();
            assert_eq!((name.as_str(), favorite, ffn), ("old.gguf", 0, 0));
            let (cpu, swap): (f64, f64) = conn
                .query_row("SELECT cpu_usage, swap_usage FROM metrics", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!((cpu, swap), (3.5, 0.0));
            let kept: String = conn
                .query_row("SELECT message FROM logs", [], |r| r.get(0))
                .unwrap();
            assert_eq!(kept, "kept");
            for sql in QUERY_EXAMPLES {
                conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            conn.execute(
                "INSERT INTO server_config (key, value) VALUES ('port', '8080')",
                [],
            )
            .unwrap();
            Ok::<_, store::Error>(())
        })
        .unwrap();
    assert_eq!(store.schema_version().unwrap(), Some(2));
    drop(store);
    // Opening again changes nothing.
    let store = open(&path);
    assert!(store.migrations_applied().is_empty());
}

#[test]
fn a_database_of_something_else_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);")
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut config = OpenConfig::for_path(&TOOL, &path);
    config.allow_unsupported_fs = true;
    assert!(Store::open(&TOOL, &config).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn the_models_repository_behaves_as_documented() {
    use llama_dashboard::db::models::{self, Model};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("llama-dashboard.db"));
    let file = dir.path().join("a.gguf");
    std::fs::write(&file, b"GGUF").unwrap();
    let (a, b) = store
        .write(|tx| {
            let a = models::save(
                tx,
                &Model {
                    name: "zeta.gguf".into(),
                    model_path: Some(file.display().to_string()),
                    created_at: Some(100),
                    ..Model::default()
                },
            )?;
            let b = models::save(
                tx,
                &Model {
                    name: "alpha.gguf".into(),
                    model_path: Some(dir.path().join("gone.gguf").display().to_string()),
                    created_at: Some(200),
                    ..Model::default()
                },
            )?;
            Ok::<_, store::Error>((a, b))
        })
        .unwrap();
    let (prefix, rest) = a.id.split_at(6);
    assert_eq!(prefix, "model_");
    let (secs, random) = rest.split_once('_').unwrap();
    assert!(
        secs.parse::<i64>().unwrap() > 1_700_000_000 && random.len() == 9,
        "{}",
        a.id
    );
    assert_eq!(
        (a.kind.as_str(), a.status.as_str(), a.ctx_size, a.batch_size),
        ("llama", "idle", 4096, 512)
    );
    store
        .write(|tx| {
            let all = models::get_all(tx)?;
            assert_eq!(
                all.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
                ["alpha.gguf", "zeta.gguf"],
                "newest first"
            );
            let patch = serde_json::json!({"status": "loaded", "favorite": 1, "no_such_column": 5});
            let updated = models::update(tx, &a.id, patch.as_object().unwrap())?.unwrap();
            assert_eq!((updated.status.as_str(), updated.favorite), ("loaded", 1));
            assert!(models::update(tx, "model_0_missing", patch.as_object().unwrap())?.is_none());
            let nothing = serde_json::json!({"no_such_column": 5});
            assert!(models::update(tx, &a.id, nothing.as_object().unwrap())?.is_none());
            assert_eq!(models::get_favorites(tx)?.len(), 1);
            assert_eq!(
                models::cleanup_missing_files(tx)?,
                1,
                "alpha's file never existed"
            );
            assert!(models::get_by_id(tx, &b.id)?.is_none());
            assert!(models::delete(tx, &a.id)?);
            assert!(!models::delete(tx, &a.id)?);
            Ok::<_, store::Error>(())
        })
        .unwrap();
}

#[test]
fn metrics_logs_config_and_metadata_behave_as_documented() {
    use llama_dashboard::db::{config, logs, metadata, metrics};
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("llama-dashboard.db"));
    store
        .write(|tx| {
            // Metrics: missing numbers are 0, history newest first, prune keeps the newest.
            assert!(metrics::get_latest(tx)?.is_none());
            for i in 0..5 {
                metrics::save(
                    tx,
                    &metrics::Metrics {
                        cpu_usage: f64::from(i),
                        ..Default::default()
                    },
                )?;
            }
            let latest = metrics::get_latest(tx)?.unwrap();
            assert_eq!((latest.cpu_usage, latest.swap_usage), (4.0, 0.0));
            assert!(latest.timestamp > 1_700_000_000);
            let history = metrics::get_history(tx, 3)?;
            assert_eq!(
                history.iter().map(|m| m.cpu_usage).collect::<Vec<_>>(),
                [4.0, 3.0, 2.0]
            );
            assert_eq!(metrics::prune(tx, 2)?, 3);
            assert_eq!(metrics::prune(tx, 2)?, 0);
            assert_eq!(metrics::get_history(tx, metrics::DEFAULT_HISTORY)?.len(), 2);

            // Logs: default source, newest first, clear counts.
            logs::add(tx, "info", "started", None)?;
            logs::add(tx, "error", "<script>x</script>", Some("llama-server"))?;
            let all = logs::get_all(tx, logs::DEFAULT_LIMIT)?;
            assert_eq!(all[0].source.as_deref(), Some("llama-server"));
            assert_eq!(
                all[0].message, "<script>x</script>",
                "stored as given; pages escape it"
            );
            assert_eq!(all[1].source.as_deref(), Some("server"));
            assert_eq!(logs::clear(tx)?, 2);

            // Config: defaults on a fresh install, saved values merged over them.
            let fresh = config::get(tx, "/home/ada")?;
            assert_eq!(fresh["port"], 8080);
            assert_eq!(fresh["ctx_size"], 2048);
            assert_eq!(fresh["baseModelsPath"], "/home/ada/models");
            assert_eq!(fresh["llama_server_host"], "127.0.0.1");
            let mut changed = serde_json::Map::new();
            changed.insert("threads".into(), json!(8));
            changed.insert("baseModelsPath".into(), json!("/data/models"));
            config::save(tx, &changed)?;
            let merged = config::get(tx, "/home/ada")?;
            assert_eq!(
                (merged["threads"].clone(), merged["port"].clone()),
                (json!(8), json!(8080))
            );
            assert_eq!(merged["baseModelsPath"], "/data/models");

            // Metadata: JSON values, defaults when absent.
            assert_eq!(metadata::get(tx, "last_scan", json!(null))?, json!(null));
            metadata::set(tx, "last_scan", &json!({"files": 3, "at": 1700000000}))?;
            assert_eq!(metadata::get(tx, "last_scan", json!(null))?["files"], 3);
            let updated: i64 = tx.query_row(
                "SELECT updated_at FROM metadata WHERE key = 'last_scan'",
                [],
                |r| r.get(0),
            )?;
            assert!(updated > 1_700_000_000);
            Ok::<_, store::Error>(())
        })
        .unwrap();
}

#[test]
fn retention_bounds_logs_and_metrics_by_count_and_age() {
    use llama_dashboard::db::{logs, metrics};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("r.db"));
    let now = llama_dashboard::db::models::now();
    store
        .write(|tx| {
            for i in 0..20 {
                logs::add(tx, "info", &format!("entry {i}"), Some("models"))?;
                metrics::save(tx, &metrics::Metrics::default())?;
            }
            // Five of each from 40 days ago.
            tx.execute(
                "UPDATE logs SET timestamp = ?1 WHERE id <= 5",
                [now - 40 * 86_400],
            )?;
            tx.execute(
                "UPDATE metrics SET timestamp = ?1 WHERE id <= 5",
                [now - 40 * 86_400],
            )?;
            Ok::<_, store::Error>(())
        })
        .unwrap();
    store
        .write(|tx| {
            // 30 days: the five old entries go; then only the newest 10 stay.
            assert_eq!(logs::prune(tx, 10, logs::DEFAULT_MAX_AGE_SECS)?, 10);
            assert_eq!(
                metrics::prune_older_than(tx, metrics::DEFAULT_MAX_AGE_SECS)?,
                5
            );
            assert_eq!(metrics::prune(tx, 12)?, 3);
            Ok::<_, store::Error>(())
        })
        .unwrap();
    store
        .read(|conn| {
            let kept = logs::get_all(conn, 100)?;
            let ids: Vec<i64> = kept.iter().map(|e| e.id).collect();
            assert_eq!(ids, (11..=20).rev().collect::<Vec<_>>());
            assert_eq!(metrics::get_history(conn, 100)?.len(), 12);
            Ok::<_, store::Error>(())
        })
        .unwrap();
}

#[test]
fn logs_are_filtered_by_level_source_and_position() {
    use llama_dashboard::db::logs::{self, Filter};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("f.db"));
    store
        .write(|tx| {
            logs::add(tx, "info", "started", None)?;
            logs::add(tx, "error", "load failed", Some("llama-server"))?;
            logs::add(tx, "critical", "out of memory", Some("llama-server"))?;
            logs::add(tx, "warn", "slow disk", Some("models"))?;
            Ok::<_, store::Error>(())
        })
        .unwrap();
    let levels = logs::parse_levels("error, CRITICAL").unwrap();
    assert_eq!(levels, ["error", "critical"]);
    assert!(
        logs::parse_levels("error,loud")
            .unwrap_err()
            .contains("`loud`")
    );
    store
        .read(|conn| {
            let messages = |filter: Filter| -> Vec<String> {
                logs::query(conn, &filter, 100)
                    .unwrap()
                    .into_iter()
                    .map(|e| e.message)
                    .collect()
            };
            assert_eq!(
                messages(Filter {
                    levels: levels.clone(),
                    ..Filter::default()
                }),
                ["out of memory", "load failed"]
            );
            assert_eq!(
                messages(Filter {
                    source: Some("models".into()),
                    ..Filter::default()
                }),
                ["slow disk"]
            );
            assert_eq!(
                messages(Filter {
                    after_id: Some(3),
                    ..Filter::default()
                }),
                ["slow disk"]
            );
            assert_eq!(
                logs::get_all(conn, 100)?[3].source.as_deref(),
                Some("server")
            );
            Ok::<_, store::Error>(())
        })
        .unwrap();
}
