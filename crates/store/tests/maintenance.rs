//! Maintenance: retention that really shrinks the file, vacuum, integrity and foreign-key checks,
//! planner statistics, and applying migrations on demand.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;

use common::*;
use store::Prune;

#[test]
fn pruning_most_rows_shrinks_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    let store = open(&NOTES_V2, &db);
    for _ in 0..4 {
        add_notes(&store, 10_000, 200);
    }
    store.truncate_wal().unwrap();
    let before = fs::metadata(&db).unwrap().len();

    // created_at runs backwards from now by one second per row: keep the newest 1000 seconds.
    let now: i64 = store
        .read(|c| c.query_row("SELECT unixepoch()", [], |r| r.get(0)))
        .unwrap();
    let rule = Prune::older_than("notes", "created_at", now - 999);
    let dry = store.prune(&rule, true).unwrap();
    assert!(dry.dry_run);
    assert!(dry.rows >= 35_000, "{dry:?}");
    assert_eq!(counts(&db).0, 40_000, "a dry run deleted rows");

    let report = store.prune(&rule, false).unwrap();
    assert_eq!(report.rows, dry.rows);
    assert!(report.pages_freed > 0, "{report:?}");
    let after = fs::metadata(&db).unwrap().len();
    assert!(
        after * 4 < before,
        "the file did not shrink: {before} -> {after} bytes ({report:?})"
    );
    assert_eq!(report.bytes_after, store.bytes_on_disk());
    assert_eq!(integrity(&db), ["ok"]);
}

#[test]
fn keep_newest_keeps_exactly_the_newest_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    let store = open(&NOTES_V2, &db);
    add_notes(&store, 2_500, 10);
    let rule = Prune {
        batch_size: 300,
        ..Prune::keep_newest("notes", "created_at", 1_000)
    };
    let report = store.prune(&rule, false).unwrap();
    assert_eq!(report.rows, 1_500);
    // The rows inserted with the largest created_at are the ones kept.
    let (kept, oldest_kept): (i64, i64) = store
        .read(|c| {
            c.query_row(
                "SELECT count(*), (SELECT max(unixepoch()) - min(created_at) FROM notes) FROM notes",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .unwrap();
    assert_eq!(kept, 1_000);
    assert!(
        oldest_kept <= 1_000,
        "an old row survived: {oldest_kept}s old"
    );
    // Pruning again removes nothing.
    assert_eq!(store.prune(&rule, false).unwrap().rows, 0);
}

#[test]
fn prune_refuses_names_that_are_not_in_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(&NOTES_V2, &tmp.path().join("notes.db"));
    let bad_table = store
        .prune(
            &Prune::keep_newest("notes; DROP TABLE notes", "id", 1),
            false,
        )
        .unwrap_err();
    assert_eq!(bad_table.code(), "invalid_identifier");
    let bad_column = store
        .prune(&Prune::keep_newest("notes", "nope", 1), false)
        .unwrap_err();
    assert_eq!(bad_column.code(), "invalid_identifier");
}

#[test]
fn vacuum_hands_free_pages_back() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    {
        let store = open(&NOTES_V2, &db);
        add_notes(&store, 20_000, 200);
        store
            .write(|tx| {
                tx.execute("DELETE FROM notes WHERE id % 10 <> 0", [])
                    .map_err(store::Error::from)
            })
            .unwrap();
    }
    let out = run(notes(&db).args(["db", "vacuum", "--json"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["mode"], "incremental");
    assert!(report["pages_freed"].as_u64().unwrap() > 100, "{report}");
    assert!(
        report["bytes_after"].as_u64().unwrap() * 3 < report["bytes_before"].as_u64().unwrap(),
        "{report}"
    );

    let out = run(notes(&db).args(["db", "vacuum", "--full"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("(full)"), "{}", stdout(&out));
    assert_eq!(
        counts(&db),
        (
            2_000, 20_000 /* the example's total is not maintained by DELETE */
        )
    );
    assert_eq!(integrity(&db), ["ok"]);
}

#[test]
fn check_reports_broken_foreign_keys_with_status_65() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    assert_eq!(code(&run(notes(&db).args(["add", "x"]))), 0);
    let out = run(notes(&db).args(["db", "check", "--json"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["ok"], true);

    // An extension table whose row points at a note that is gone (written with checks off).
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF;
         CREATE TABLE links (id INTEGER PRIMARY KEY, note_id INTEGER REFERENCES notes(id));
         INSERT INTO links (note_id) VALUES (999);",
    )
    .unwrap();
    drop(conn);
    let out = run(notes(&db).args(["db", "check", "--json"]));
    assert_eq!(code(&out), 65, "{}", stdout(&out));
    let report = json(&out);
    assert_eq!(report["ok"], false);
    assert_eq!(report["integrity"], serde_json::json!(["ok"]));
    assert_eq!(report["foreign_key_violations"][0]["table"], "links");
    assert_eq!(report["foreign_key_violations"][0]["parent"], "notes");

    let out = run(notes(&db).args(["db", "check"]));
    assert_eq!(code(&out), 65);
    assert!(
        stdout(&out).contains("foreign key: links row 1 references a missing notes row"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn optimize_gathers_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    add_notes(&open(&NOTES_V2, &db), 500, 10);
    let out = run(notes(&db).args(["db", "optimize", "--json"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(json(&out)["tables_analyzed"].as_u64().unwrap() >= 1);
    let stats: i64 = raw(&db)
        .query_row("SELECT count(*) FROM sqlite_stat1", [], |r| r.get(0))
        .unwrap();
    assert!(stats > 0);
}

#[test]
fn migrate_applies_pending_migrations_and_status_shows_them() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    add_notes(&open(&NOTES_V1, &db), 3, 10);

    let out = run(notes(&db).args(["db", "migrate", "--status", "--json"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let status = json(&out);
    assert_eq!(status["current_version"], 1);
    assert_eq!(status["target_version"], 2);
    assert_eq!(status["up_to_date"], false);
    assert_eq!(status["migrations"][1]["state"], "pending");

    let out = run(notes(&db).args(["db", "migrate", "--json"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["applied"], serde_json::json!([2]));
    let out = run(notes(&db).args(["db", "migrate"]));
    assert!(
        stdout(&out).contains("is up to date (schema version 2)"),
        "{}",
        stdout(&out)
    );

    let out = run(notes(&db).args(["db", "migrate", "--status"]));
    assert!(stdout(&out).contains("applied"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("pending"), "{}", stdout(&out));
    assert_eq!(counts(&db), (3, 3));
}
