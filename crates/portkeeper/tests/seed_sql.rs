//! Every SQL statement the seed documents ("Common Queries", "Views", "Maintenance", "Database
//! Statistics") runs unchanged against a database portman populated, and returns what its heading
//! says. The statements are extracted from the seed's text (tests/fixtures), not retyped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{Env, Listener};
use rusqlite::types::Value;

const SEED: &str = include_str!("fixtures/seed-000-database-schema.txt");

/// The statements between the line containing `from` and the next line containing `to`, each
/// with the heading (the last prose line) above it.
fn statements(from: &str, to: &str) -> Vec<(String, String)> {
    let mut lines = SEED.lines().skip_while(|l| !l.contains(from)).skip(1);
    let starts = [
        "SELECT", "DELETE", "PRAGMA", "VACUUM", "ANALYZE", "CREATE", "EXPLAIN",
    ];
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut current: Option<String> = None;
    for line in lines.by_ref() {
        if line.contains(to) {
            break;
        }
        let trimmed = line.trim();
        if let Some(sql) = &mut current {
            sql.push('\n');
            sql.push_str(trimmed);
        } else if starts.iter().any(|s| trimmed.starts_with(s)) {
            current = Some(trimmed.to_string());
        } else {
            if !trimmed.is_empty() && !trimmed.starts_with("--") {
                heading = trimmed.to_string();
            }
            continue;
        }
        if trimmed.ends_with(';') {
            out.push((heading.clone(), current.take().unwrap()));
        }
    }
    assert!(!out.is_empty(), "no statements between {from:?} and {to:?}");
    out
}

fn rows(conn: &rusqlite::Connection, sql: &str) -> Vec<BTreeMap<String, Value>> {
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}\n{e}"));
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    stmt.query_map([], |r| {
        let mut row = BTreeMap::new();
        for (i, n) in names.iter().enumerate() {
            row.insert(n.clone(), r.get::<_, Value>(i)?);
        }
        Ok(row)
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Integer(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

fn text(v: &Value) -> &str {
    match v {
        Value::Text(t) => t,
        other => panic!("not text: {other:?}"),
    }
}

fn squash(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn every_documented_statement_runs_unchanged_and_answers_its_heading() {
    let env = Env::new();
    let listener = Listener::tcp("127.0.0.1");
    let live = listener.port.to_string();
    // 3000 for my-app, with history: reserved, released, reserved again.
    env.ok(&["reserve", "3000", "-n", "my-app", "-d", "React dev server"]);
    env.ok(&["release", "3000"]);
    env.ok(&[
        "reserve",
        "3000",
        "-n",
        "my-app",
        "-d",
        "React dev server",
        "-t",
        "frontend",
        "react",
    ]);
    env.ok(&["reserve", &live, "-n", "api", "-d", "live server"]);
    env.ok(&["reserve", "23100", "-n", "old-project"]);
    env.ok(&["reserve", "23101", "-n", "my-app"]);
    env.ok(&["release", "23101"]);
    env.ok(&["scan"]);
    let conn = env.sql();
    conn.execute_batch(
        "UPDATE ports SET reservedAt = datetime('now', '-40 days') WHERE number = 23100;
         INSERT INTO port_history (port, action, projectName, performedAt)
           VALUES (3000, 'reserved', 'my-app', datetime('now', '-400 days'));
         INSERT INTO active_scans (port, pid, processName, state, address, protocol, scannedAt)
           VALUES (23199, 1, 'ghost', 'LISTEN', '127.0.0.1', 'tcp', datetime('now', '-10 days'));",
    )
    .unwrap();

    // Common Queries
    let common = statements("Common Queries", "Triggers");
    assert_eq!(common.len(), 5, "{common:#?}");
    for (heading, sql) in &common {
        let got = rows(&conn, sql);
        match heading.as_str() {
            "Get All Reserved Ports" => {
                let ports: Vec<i64> = got.iter().map(|r| int(&r["number"])).collect();
                let mut want = vec![3000, 23100, listener.port.into()];
                want.sort();
                assert_eq!(ports, want);
                let tags = got.iter().find(|r| int(&r["number"]) == 3000).unwrap();
                assert_eq!(text(&tags["tags"]), r#"["frontend","react"]"#);
            }
            "Find Ports by Project" => {
                let ports: Vec<i64> = got.iter().map(|r| int(&r["number"])).collect();
                // my-app's released port is still its row (status free): the query lists rows.
                assert_eq!(ports, [3000, 23101]);
            }
            "Get Port History" => {
                // Newest first; rows within one second tie, as `datetime('now')` has seconds.
                let mut actions: Vec<&str> = got.iter().map(|r| text(&r["action"])).collect();
                let when: Vec<&str> = got.iter().map(|r| text(&r["performedAt"])).collect();
                assert!(when.windows(2).all(|w| w[0] >= w[1]), "{when:?}");
                assert_eq!(
                    got[3]["description"],
                    Value::Null,
                    "the year-old row is last"
                );
                assert_eq!(text(&got[0]["description"]), "React dev server");
                actions.sort();
                assert_eq!(actions, ["released", "reserved", "reserved", "reserved"]);
            }
            "Find Stale Reservations" => {
                assert_eq!(got.len(), 1, "{got:?}");
                assert_eq!(int(&got[0]["number"]), 23100);
                match got[0]["days_old"] {
                    Value::Real(d) => assert!((39.9..40.1).contains(&d), "{d}"),
                    ref other => panic!("{other:?}"),
                }
            }
            "Active Port Summary" => {
                assert_eq!(got.len(), 1, "{got:?}");
                assert_eq!(int(&got[0]["number"]), i64::from(listener.port));
                assert_eq!(int(&got[0]["pid"]), i64::from(listener.pid()));
                assert_eq!(text(&got[0]["processName"]), "python3");
                assert_eq!(text(&got[0]["state"]), "LISTEN");
            }
            other => panic!("unexpected heading {other:?}"),
        }
    }

    // Views: ours are the documented ones, and they count what is there.
    let views = statements("📊 Views", "Maintenance");
    assert_eq!(views.len(), 2);
    for (heading, sql) in &views {
        let stored: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?1",
                [heading],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            squash(&stored),
            squash(sql.trim_end_matches(';')),
            "{heading}"
        );
    }
    let summary = rows(&conn, "SELECT * FROM v_port_summary");
    assert_eq!(int(&summary[0]["reserved_count"]), 2);
    assert_eq!(int(&summary[0]["in_use_count"]), 1);
    assert_eq!(int(&summary[0]["free_count"]), 1);
    assert_eq!(int(&summary[0]["total_count"]), 4);
    let projects = rows(&conn, "SELECT * FROM v_project_ports ORDER BY projectName");
    let my_app = projects
        .iter()
        .find(|r| text(&r["projectName"]) == "my-app")
        .unwrap();
    assert_eq!(text(&my_app["ports"]), "3000");
    let api = projects
        .iter()
        .find(|r| text(&r["projectName"]) == "api")
        .unwrap();
    assert_eq!(int(&api["active_count"]), 1);

    // Maintenance
    let maintenance = statements("Maintenance", "Backup and Restore");
    let sqls: Vec<&str> = maintenance.iter().map(|(_, s)| s.as_str()).collect();
    assert!(sqls.len() >= 6, "{maintenance:#?}");
    let history_before: i64 = conn
        .query_row("SELECT count(*) FROM port_history", [], |r| r.get(0))
        .unwrap();
    for (heading, sql) in &maintenance {
        let got = rows(&conn, sql);
        match (heading.as_str(), sql.as_str()) {
            ("Integrity Check", s) if s.contains("integrity_check") => {
                assert_eq!(text(&got[0]["integrity_check"]), "ok");
            }
            ("Integrity Check", _) => assert!(got.is_empty(), "foreign key violations: {got:?}"),
            ("Vacuum Database" | "Clean Old History", _) => assert!(got.is_empty()),
            (other, _) => panic!("unexpected heading {other:?}"),
        }
    }
    let history_after: i64 = conn
        .query_row("SELECT count(*) FROM port_history", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        history_after,
        history_before - 1,
        "only the year-old row went"
    );
    let ghosts: i64 = conn
        .query_row(
            "SELECT count(*) FROM active_scans WHERE port = 23199",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ghosts, 0, "the week-old scan row went");
    let current_scans: i64 = conn
        .query_row("SELECT count(*) FROM active_scans", [], |r| r.get(0))
        .unwrap();
    assert!(current_scans >= 1);

    // Database Statistics
    let stats = statements("Database Statistics", "Future Schema");
    for (_, sql) in &stats {
        let got = rows(&conn, sql);
        if sql.contains("size_mb") {
            match got[0]["size_mb"] {
                Value::Real(mb) => assert!(mb > 0.0 && mb < 10.0, "{mb}"),
                ref other => panic!("{other:?}"),
            }
        }
    }

    // And the database still works for portman afterwards.
    assert_eq!(env.json(&["check", "3000"], 2)["projectName"], "my-app");
}

#[test]
fn the_schema_has_the_documented_tables_indexes_and_triggers() {
    let env = Env::new();
    env.ok(&["list"]);
    let conn = env.sql();
    let names: Vec<(String, String)> = rows(
        &conn,
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE 'refinery%' ORDER BY type, name",
    )
    .iter()
    .map(|r| (text(&r["type"]).to_string(), text(&r["name"]).to_string()))
    .collect();
    for (kind, name) in [
        ("table", "ports"),
        ("table", "port_history"),
        ("table", "active_scans"),
        ("table", "configurations"),
        ("table", "migrations"),
        ("index", "idx_ports_status"),
        ("index", "idx_ports_project"),
        ("index", "idx_ports_reserved_at"),
        ("index", "idx_ports_tags"),
        ("index", "idx_history_port"),
        ("index", "idx_history_action"),
        ("index", "idx_history_date"),
        ("index", "idx_scans_port"),
        ("index", "idx_scans_pid"),
        ("index", "idx_scans_date"),
        ("index", "idx_config_name"),
        ("index", "idx_config_created"),
        ("trigger", "update_ports_timestamp"),
        ("trigger", "track_port_changes"),
        ("view", "v_port_summary"),
        ("view", "v_project_ports"),
    ] {
        assert!(
            names.contains(&(kind.to_string(), name.to_string())),
            "missing {kind} {name}: {names:?}"
        );
    }
    // Every documented CREATE TABLE matches ours, column for column.
    for (_, sql) in statements("🗄️ Tables", "🔗 Relationships") {
        if let Some(rest) = sql.strip_prefix("CREATE TABLE ") {
            let table = rest.split_whitespace().next().unwrap();
            let stored: String = conn
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(
                squash(&stored),
                squash(sql.trim_end_matches(';')),
                "{table}"
            );
        }
    }
    let version: String = conn
        .query_row("SELECT version FROM migrations WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(version, "1.0.0");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    use std::os::unix::fs::PermissionsExt;
    let perms = std::fs::metadata(env.db()).unwrap().permissions().mode() & 0o777;
    assert_eq!(perms, 0o600);
}
