//! Opening a database: where files go and with what modes, which files are refused (and left
//! untouched), and how migrations behave across builds and processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;

use common::*;
use store::{OpenConfig, Store, Tool};

#[test]
fn database_files_and_directories_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("a/b/notes.db");
    let out = run(notes(&db).args(["add", "hello"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mode(&tmp.path().join("a")), 0o700);
    assert_eq!(mode(&tmp.path().join("a/b")), 0o700);
    assert_eq!(mode(&db), 0o600);

    // While a server holds it open: the lock, -wal and -shm are private too.
    let config = OpenConfig {
        instance_lock: true,
        ..OpenConfig::for_path(&NOTES_V2, &db)
    };
    let store = Store::open(&NOTES_V2, &config).unwrap();
    add_notes(&store, 3, 10);
    for suffix in ["-wal", "-shm", ".lock"] {
        let file = store::with_suffix(&db, suffix);
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    let backup = store.backup_to(&tmp.path().join("b.db")).unwrap();
    assert_eq!(mode(&backup.path), 0o600);
}

#[test]
fn memory_filesystem_is_refused_and_nothing_is_created_unless_opted_out() {
    let tmpfs = Path::new("/dev/shm");
    assert_eq!(
        store::unsupported_filesystem(tmpfs_magic(tmpfs)),
        Some("tmpfs"),
        "this test needs /dev/shm to be a tmpfs, as on every machine we run CI on"
    );
    let dir = tempfile::tempdir_in(tmpfs).unwrap();
    let db = dir.path().join("sub/notes.db");
    let out = run(notes(&db).args(["add", "x"]));
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("unsupported_filesystem"), "{err}");
    assert!(err.contains("tmpfs"), "{err}");
    assert!(err.contains("NOTES_ALLOW_UNSUPPORTED_FS=1"), "{err}");
    assert!(
        !dir.path().join("sub").exists(),
        "a refusal must create nothing"
    );

    let out = run(notes(&db)
        .env("NOTES_ALLOW_UNSUPPORTED_FS", "1")
        .args(["add", "x"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(db.exists());
}

fn tmpfs_magic(path: &Path) -> u64 {
    // Ask the kernel the same way the store does, through the test's own statfs call.
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%t"])
        .arg(path)
        .output()
        .unwrap();
    u64::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 16).unwrap()
}

#[test]
fn another_applications_database_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("other.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA application_id = 4660; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    )
    .unwrap();
    drop(conn);
    let before = fs::read(&db).unwrap();

    let out = run(notes(&db).args(["add", "x"]));
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("foreign_database"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("not a notes database"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(&db).unwrap(), before);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    fs::write(&db, "these are my notes, in plain text\n").unwrap();
    let out = run(notes(&db).args(["add", "x"]));
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(stderr(&out).contains("not_sqlite"), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(&db).unwrap(),
        "these are my notes, in plain text\n"
    );
}

#[test]
fn a_newer_schema_is_refused_with_78_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    {
        let store = open(&NOTES_V3, &db);
        add_notes(&store, 5, 10);
    }
    let before = fs::read(&db).unwrap();
    for args in [&["add", "x"][..], &["db", "vacuum"], &["db", "migrate"]] {
        let out = run(notes(&db).args(args));
        assert_eq!(code(&out), 78, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("schema_version_too_new on_disk=3 target=2"),
            "{}",
            stderr(&out)
        );
        assert_eq!(fs::read(&db).unwrap(), before, "{args:?} changed the file");
    }
    // Reading tools still work on it: status shows the unknown migration.
    let out = run(notes(&db).args(["db", "migrate", "--status", "--json"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let status = json(&out);
    assert_eq!(status["current_version"], 3);
    assert_eq!(status["target_version"], 2);
    assert_eq!(status["up_to_date"], false);
    assert_eq!(status["migrations"][2]["state"], "unknown");
}

#[test]
fn an_edited_migration_is_reported_as_drift_and_not_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    drop(open(&NOTES_V1_EDITED, &db));
    let before = fs::read(&db).unwrap();

    let out = run(notes(&db).args(["add", "x"]));
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("migration_drift"), "{err}");
    assert!(err.contains("V1__notes"), "{err}");
    assert!(err.contains("checksum"), "{err}");
    assert_eq!(fs::read(&db).unwrap(), before);

    let out = run(notes(&db).args(["db", "migrate", "--status", "--json"]));
    let status = json(&out);
    assert_eq!(status["migrations"][0]["state"], "drifted");
    assert_eq!(status["migrations"][1]["state"], "pending");
}

#[test]
fn a_database_migrated_step_by_step_matches_one_created_fresh() {
    let tmp = tempfile::tempdir().unwrap();
    let stepped = tmp.path().join("stepped.db");
    {
        let store = open(&NOTES_V1, &stepped);
        add_notes(&store, 10, 10);
    }
    drop(open(&NOTES_V2, &stepped));
    drop(open(&NOTES_V3, &stepped));
    let fresh = tmp.path().join("fresh.db");
    drop(open(&NOTES_V3, &fresh));

    assert_eq!(schema(&stepped), schema(&fresh));
    let pragmas = |path: &Path| -> (i32, i64, String) {
        let conn = raw(path);
        (
            conn.pragma_query_value(None, "application_id", |r| r.get(0))
                .unwrap(),
            conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0))
                .unwrap(),
            conn.pragma_query_value(None, "journal_mode", |r| r.get(0))
                .unwrap(),
        )
    };
    assert_eq!(pragmas(&stepped), (NOTES_APP_ID, 2, "wal".to_string()));
    assert_eq!(pragmas(&stepped), pragmas(&fresh));
    assert_eq!(counts(&stepped), (10, 10), "rows survive the migrations");
}

#[test]
fn processes_opening_a_new_database_at_once_migrate_it_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("new/notes.db");
    let children: Vec<_> = (0..6)
        .map(|i| {
            notes(&db)
                .args(["add", &format!("note {i}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    assert_eq!(counts(&db), (6, 6));
    let history: i64 = raw(&db)
        .query_row("SELECT count(*) FROM refinery_schema_history", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(history, 2);
}

/// The original system's database: the V1 tables, no application id, no migration history.
fn legacy_database(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, created_at INTEGER NOT NULL);
         INSERT INTO notes (body, created_at) VALUES ('from the original', 1700000000);",
    )
    .unwrap();
}

fn adopt_legacy(conn: &rusqlite::Connection) -> rusqlite::Result<Option<i64>> {
    let has_notes: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_schema WHERE name = 'notes')",
        [],
        |r| r.get(0),
    )?;
    if !has_notes {
        return Ok(None);
    }
    // Bring the original's table up to our V1: the columns and tables it lacked.
    conn.execute_batch(
        "ALTER TABLE notes ADD COLUMN batch INTEGER;
         CREATE INDEX notes_created_at ON notes (created_at);
         CREATE INDEX notes_batch ON notes (batch);
         CREATE TABLE totals (id INTEGER PRIMARY KEY CHECK (id = 1), notes INTEGER NOT NULL) STRICT;
         INSERT INTO totals (id, notes) SELECT 1, count(*) FROM notes;",
    )?;
    Ok(Some(1))
}

#[test]
fn a_database_made_by_the_original_system_is_adopted_with_its_rows() {
    static ADOPTING: Tool = Tool {
        adopt: Some(adopt_legacy),
        ..NOTES_V2
    };
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("legacy.db");
    legacy_database(&db);

    // Without an adopter it is somebody else's file, refused untouched.
    let before = fs::read(&db).unwrap();
    let err = Store::open(&NOTES_V2, &OpenConfig::for_path(&NOTES_V2, &db)).unwrap_err();
    assert_eq!(err.code(), "foreign_database");
    assert_eq!(fs::read(&db).unwrap(), before);

    let store = open(&ADOPTING, &db);
    assert_eq!(store.schema_version().unwrap(), Some(2));
    drop(store);
    assert_eq!(counts(&db), (1, 1));
    let body: String = raw(&db)
        .query_row("SELECT body FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(body, "from the original");
    let id: i32 = raw(&db)
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    assert_eq!(id, NOTES_APP_ID);
}

#[test]
fn admin_commands_never_create_a_missing_database() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("typo/notes.db");
    let commands: [&[&str]; 7] = [
        &["db", "check"],
        &["db", "backup", "--out", "/tmp"],
        &["db", "vacuum"],
        &["db", "optimize"],
        &["db", "migrate"],
        &["db", "migrate", "--status"],
        &["db", "reset", "--confirm"],
    ];
    for args in commands {
        let out = run(notes(&db).args(args));
        assert_eq!(code(&out), 66, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("database {} does not exist", db.display())),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!tmp.path().join("typo").exists(), "{args:?} created files");
    }
}

#[test]
fn a_second_server_is_refused_with_75_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    let config = OpenConfig {
        instance_lock: true,
        ..OpenConfig::for_path(&NOTES_V2, &db)
    };
    let first = Store::open(&NOTES_V2, &config).unwrap();
    let out = run(notes(&db).arg("hold"));
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: store_in_use: {}.lock", db.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    // Ordinary CLI commands do not take the lock and keep working beside a server.
    let out = run(notes(&db).args(["add", "beside the server"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    drop(first);
    // Once the first lets go, the next server starts.
    Server::start(&db).stop();
}

#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    let out = run(notes(&db).args(["db", "restore"]));
    assert_eq!(code(&out), 64, "{}", stderr(&out));
    assert!(stderr(&out).contains("--in <PATH>"), "{}", stderr(&out));

    let out = run(notes(&db).args(["db", "backup", "--help"]));
    assert_eq!(code(&out), 0);
    let help = stdout(&out);
    assert!(help.contains("never overwritten"), "{help}");
    assert!(help.contains("EXIT STATUS"), "{help}");
    assert!(help.contains("75  in use"), "{help}");
    assert!(!db.exists(), "asking for help created the database");
}
