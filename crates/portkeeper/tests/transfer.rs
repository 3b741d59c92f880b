//! Export and import: round trips, the original tool's formats and database, and bad files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Env, ports_rows};

fn populate(env: &Env) {
    env.ok(&[
        "reserve",
        "23001",
        "-n",
        "web",
        "-d",
        "React dev",
        "-t",
        "frontend",
        "dev",
        "-m",
        "team=alpha",
    ]);
    env.ok(&["reserve", "23002", "-n", "api", "--auto-release"]);
    env.ok(&["reserve", "23003", "-n", "db"]);
    // Backdate one, so a lost timestamp would show.
    env.sql()
        .execute(
            "UPDATE ports SET reservedAt = '2024-01-20 10:30:00' WHERE number = 23003",
            [],
        )
        .unwrap();
}

#[test]
fn export_then_import_into_an_empty_database_gives_identical_reservations() {
    let a = Env::new();
    populate(&a);
    let file = a.path("full-backup.json");
    a.ok(&["export", file.to_str().unwrap()]);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["format"], "portkeeper-export");
    assert!(doc["checksum"].as_str().unwrap().starts_with("sha256:"));
    // Stored in `configurations` too.
    let stored: i64 = a
        .sql()
        .query_row(
            "SELECT count(*) FROM configurations WHERE name = 'full-backup.json' AND checksum = ?1",
            [doc["checksum"].as_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1);

    let b = Env::new();
    let out = b.json(&["import", file.to_str().unwrap(), "--replace"], 0);
    assert_eq!(out["imported"], 3);
    assert_eq!(ports_rows(&a.sql()), ports_rows(&b.sql()));
}

#[test]
fn export_to_stdout_and_refusal_to_overwrite() {
    let env = Env::new();
    populate(&env);
    let out = env.ok(&["export"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ports"].as_array().unwrap().len(), 3);
    let file = env.path("x.json");
    std::fs::write(&file, "keep me").unwrap();
    let (code, _, err) = env.run(&["export", file.to_str().unwrap()]);
    assert_eq!(code, 74, "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn a_bad_import_changes_nothing_and_says_why() {
    let env = Env::new();
    populate(&env);
    let before = ports_rows(&env.sql());
    let file = env.path("export.json");
    env.ok(&["export", file.to_str().unwrap()]);
    let good = std::fs::read_to_string(&file).unwrap();

    let cases = [
        ("tampered.json", good.replace("React dev", "Evil dev"), "checksum mismatch"),
        ("broken.json", good[..good.len() / 2].to_string(), "not valid JSON"),
        (
            "port.json",
            r#"{"version":"1.0.0","exportDate":"x","ports":[{"number":70000,"projectName":"a"}]}"#.into(),
            "ports[0]",
        ),
        (
            "status.json",
            r#"{"version":"1.0.0","exportDate":"x","ports":[{"number":5000,"projectName":"a","status":"busy"}]}"#.into(),
            "unknown status",
        ),
    ];
    for (name, text, message) in cases {
        let path = env.path(name);
        std::fs::write(&path, text).unwrap();
        let out = env.json(&["import", path.to_str().unwrap(), "--replace"], 65);
        assert_eq!(out["error"]["code"], "invalid_data");
        assert!(
            out["error"]["message"].as_str().unwrap().contains(message),
            "{name}: {out}"
        );
        assert_eq!(
            ports_rows(&env.sql()),
            before,
            "{name} changed the database"
        );
    }
    let missing = env.json(&["import", env.path("nope.json").to_str().unwrap()], 66);
    assert_eq!(missing["error"]["code"], "not_found");
}

#[test]
fn merge_refuses_conflicts_dry_run_shows_the_diff_and_replace_releases_the_rest() {
    let env = Env::new();
    populate(&env);
    let file = env.path("theirs.json");
    std::fs::write(
        &file,
        r#"{"version":"1.0.0","exportDate":"2025-07-26T13:46:07.211Z","ports":[
            {"number":23001,"projectName":"other","description":null,"tags":[],"reservedAt":"2025-07-26T13:46:06.757Z"},
            {"number":23010,"projectName":"new","description":"n","tags":["x"],"reservedAt":"2025-07-26T13:46:06.757Z"}]}"#,
    )
    .unwrap();
    let before = ports_rows(&env.sql());
    let f = file.to_str().unwrap();

    let conflict = env.json(&["import", f], 73);
    assert_eq!(conflict["error"]["code"], "conflict");
    assert_eq!(ports_rows(&env.sql()), before);

    let dry = env.json(&["import", f, "--replace", "--dry-run"], 0);
    assert_eq!(dry["source"], "original-cli");
    assert_eq!(dry["diff"]["added"], serde_json::json!([23010]));
    assert!(dry["diff"]["conflicts"]["23001"].is_object());
    assert_eq!(dry["diff"]["removed"], serde_json::json!([23002, 23003]));
    assert_eq!(ports_rows(&env.sql()), before, "a dry run changes nothing");

    env.ok(&["import", f, "--replace"]);
    let list = env.json(&["list"], 0);
    let held: Vec<(u64, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["number"].as_u64().unwrap(),
                r["projectName"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(held, [(23001, "other".into()), (23010, "new".into())]);
    // The original's reservedAt is kept, normalised to the stored form.
    let reserved_at: String = env
        .sql()
        .query_row(
            "SELECT reservedAt FROM ports WHERE number = 23010",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reserved_at, "2025-07-26 13:46:06");
}

#[test]
fn the_original_gui_export_keeps_auto_release() {
    let env = Env::new();
    let file = env.path("portmanager-export-2025-07-26.json");
    std::fs::write(
        &file,
        r#"{"version":"1.0.0","exportedAt":"2025-07-26T13:46:07.211Z","ports":[{"number":23020,"projectName":"gui","description":"from the app","tags":["a","b"],"autoRelease":true}]}"#,
    )
    .unwrap();
    let out = env.json(&["import", file.to_str().unwrap()], 0);
    assert_eq!(out["source"], "original-gui");
    let row = &env.json(&["list"], 0)[0];
    assert_eq!(row["autoRelease"], true);
    assert_eq!(row["tags"], serde_json::json!(["a", "b"]));
}

#[test]
fn the_original_database_is_imported_with_its_tags() {
    let env = Env::new();
    let old = env.path("ports.db");
    {
        let conn = rusqlite::Connection::open(&old).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE ports (number INTEGER PRIMARY KEY, project_name TEXT NOT NULL, description TEXT,
               status TEXT CHECK(status IN ('reserved', 'in-use', 'free')) NOT NULL, pid INTEGER,
               reserved_at TEXT NOT NULL, last_used TEXT, auto_release INTEGER DEFAULT 0);
             CREATE TABLE tags (id INTEGER PRIMARY KEY AUTOINCREMENT, port_number INTEGER NOT NULL,
               tag TEXT NOT NULL, FOREIGN KEY (port_number) REFERENCES ports(number) ON DELETE CASCADE,
               UNIQUE(port_number, tag));
             INSERT INTO ports VALUES (23030, 'legacy', 'old app', 'in-use', NULL, '2025-07-26T13:46:06.757Z', NULL, 1);
             INSERT INTO ports VALUES (23031, 'gone', NULL, 'free', NULL, '2025-07-26T13:46:06.757Z', NULL, 0);
             INSERT INTO tags (port_number, tag) VALUES (23030, 'web'), (23030, 'v1');",
        )
        .unwrap();
    }
    let out = env.json(&["import", old.to_str().unwrap()], 0);
    assert_eq!(out["source"], "original-database");
    assert_eq!(out["imported"], 1);
    let row = &env.json(&["list"], 0)[0];
    assert_eq!(row["number"], 23030);
    assert_eq!(row["projectName"], "legacy");
    assert_eq!(
        row["status"], "reserved",
        "the stale in-use is not believed"
    );
    assert_eq!(row["autoRelease"], true);
    assert_eq!(row["tags"], serde_json::json!(["web", "v1"]));
    assert_eq!(row["reservedAt"], "2025-07-26T13:46:06Z");
}
