//! Backup, restore and reset through the real `notes db …` commands: consistent backups while
//! another process writes, no overwrite and no partial file ever at the target, every restore
//! refusal leaving the live database byte-identical, and reset removing exactly the database files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A writer process that keeps committing 25-row batches until killed.
struct Writer(Child);

impl Writer {
    fn start(db: &Path, pad: usize) -> Writer {
        let mut child = notes(db)
            .args(["stress", "--rows", "25", "--pad", &pad.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for its first commit.
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(!line.is_empty(), "the writer committed nothing");
        Writer(child)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every batch whole and the running total equal to the row count: a consistent snapshot.
fn assert_consistent(path: &Path) {
    assert_eq!(integrity(path), ["ok"], "{}", path.display());
    let torn: i64 = raw(path)
        .query_row(
            "SELECT count(*) FROM (SELECT batch FROM notes WHERE batch IS NOT NULL
               GROUP BY batch HAVING count(*) <> 25)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(torn, 0, "{} holds a torn batch", path.display());
    let (notes, total) = counts(path);
    assert_eq!(
        notes,
        total,
        "{} is not a consistent snapshot",
        path.display()
    );
}

#[test]
fn backups_taken_while_another_process_writes_are_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    let _writer = Writer::start(&db, 200);
    let mut sizes = Vec::new();
    for i in 0..5 {
        let target = tmp.path().join(format!("backup-{i}.db"));
        let out = run(notes(&db)
            .args(["db", "backup", "--out"])
            .arg(&target)
            .arg("--json"));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let report = json(&out);
        assert_eq!(report["path"], target.to_str().unwrap());
        assert_eq!(report["schema_version"], 2);
        assert_eq!(report["bytes"], fs::metadata(&target).unwrap().len());
        assert_consistent(&target);
        sizes.push(counts(&target).0);
        thread::sleep(Duration::from_millis(30));
    }
    assert!(
        sizes.windows(2).all(|w| w[0] <= w[1]) && sizes[0] < sizes[4],
        "the writer was not running during the backups: {sizes:?}"
    );
}

#[test]
fn a_backup_never_overwrites_an_existing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    assert_eq!(code(&run(notes(&db).args(["add", "x"]))), 0);
    let target = tmp.path().join("precious.db");
    fs::write(&target, "precious").unwrap();
    let out = run(notes(&db)
        .args(["db", "backup", "--out"])
        .arg(&target)
        .arg("--json"));
    assert_eq!(code(&out), 73);
    let error = json(&out);
    assert_eq!(error["error"]["code"], "target_exists");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("precious.db")
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    assert_no_leftovers(tmp.path());
}

#[test]
fn a_backup_into_a_directory_gets_a_timestamped_name() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    assert_eq!(code(&run(notes(&db).args(["add", "x"]))), 0);
    let dir = tmp.path().join("backups");
    fs::create_dir(&dir).unwrap();
    let out = run(notes(&db).args(["db", "backup", "--out"]).arg(&dir));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1);
    let name = &names[0];
    // notes-YYYYMMDDTHHMMSSZ.db
    assert!(
        name.starts_with("notes-2") && name.ends_with("Z.db") && name.len() == 25,
        "{name}"
    );
    assert!(stdout(&out).contains(name.as_str()), "{}", stdout(&out));
    assert_eq!(counts(&dir.join(name)), (1, 1));
}

#[test]
fn a_backup_killed_midway_leaves_no_file_at_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    {
        let store = open(&NOTES_V2, &db);
        for _ in 0..8 {
            add_notes(&store, 10_000, 300);
        }
    }
    let expected = counts(&db);
    // Calibrate: how long one backup takes here.
    let started = Instant::now();
    let probe = tmp.path().join("probe.db");
    assert_eq!(
        code(&run(notes(&db).args(["db", "backup", "--out"]).arg(&probe))),
        0
    );
    let window = started.elapsed().as_millis() as u64;

    let mut rng = Rng::from_time();
    let target = tmp.path().join("backup.db");
    let mut interrupted = 0;
    for round in 0..8 {
        let mut child = notes(&db)
            .args(["db", "backup", "--out"])
            .arg(&target)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_millis(rng.below(window + 1)));
        child.kill().unwrap();
        let finished = child.wait().unwrap().success();
        if target.exists() {
            // The rename happened: the backup must be complete.
            assert_eq!(counts(&target), expected, "round {round}");
            assert_eq!(integrity(&target), ["ok"], "round {round}");
            fs::remove_file(&target).unwrap();
        } else {
            assert!(!finished, "round {round}: a finished backup must exist");
            interrupted += 1;
        }
    }
    assert!(
        interrupted > 0,
        "no round interrupted a backup; the test proved nothing"
    );
    // The partial files of killed backups do not block the next one, which also tidies them.
    let out = run(notes(&db).args(["db", "backup", "--out"]).arg(&target));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(counts(&target), expected);
    assert_no_leftovers(tmp.path());
}

/// No hidden work-in-progress files remain in `dir`.
fn assert_no_leftovers(dir: &Path) {
    let leftovers: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".partial-") || n.contains(".restore-"))
        .collect();
    assert!(leftovers.is_empty(), "leftovers: {leftovers:?}");
}

/// A live database holding data, closed, with its bytes.
fn live_database(dir: &Path) -> (PathBuf, Vec<u8>) {
    let db = dir.join("live/notes.db");
    {
        let store = open(&NOTES_V2, &db);
        add_notes(&store, 7, 10);
    }
    let bytes = fs::read(&db).unwrap();
    (db, bytes)
}

#[test]
fn every_restore_refusal_leaves_the_live_database_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let (live, before) = live_database(tmp.path());
    let artefacts = tmp.path().join("artefacts");
    fs::create_dir(&artefacts).unwrap();

    let newer = artefacts.join("newer.db");
    add_notes(&open(&NOTES_V3, &newer), 1, 1);

    let foreign = artefacts.join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("PRAGMA application_id = 42; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();

    let text = artefacts.join("text.db");
    fs::write(
        &text,
        "not a database, just text that is long enough to look like a header\n",
    )
    .unwrap();

    let good = backup_of(&NOTES_V2, 2_000, &artefacts.join("good.db"));
    let truncated = artefacts.join("truncated.db");
    let bytes = fs::read(&good).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();

    let missing = artefacts.join("missing.db");

    let cases: [(&Path, bool, i32, &str); 6] = [
        (
            &newer,
            true,
            78,
            "schema_version_too_new on_disk=3 target=2",
        ),
        (&foreign, true, 65, "foreign_database"),
        (&text, true, 65, "not_sqlite"),
        (&truncated, true, 65, "truncated"),
        (&missing, true, 66, "not_found"),
        (&good, false, 73, "not_empty"),
    ];
    for (artefact, force, expected, message) in cases {
        let mut cmd = notes(&live);
        cmd.args(["db", "restore", "--in"]).arg(artefact);
        if force {
            cmd.arg("--force");
        }
        let out = run(&mut cmd);
        assert_eq!(
            code(&out),
            expected,
            "{}: {}",
            artefact.display(),
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(message),
            "{}: {}",
            artefact.display(),
            stderr(&out)
        );
        assert!(
            fs::read(&live).unwrap() == before,
            "{} changed the live database",
            artefact.display()
        );
        assert_no_leftovers(live.parent().unwrap());
    }

    // A server holding the lock: refused even with --force, naming the holder.
    let server = Server::start(&live);
    let out = run(notes(&live)
        .args(["db", "restore", "--force", "--in"])
        .arg(&good));
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("pid {}", server.pid())),
        "{}",
        stderr(&out)
    );
    server.stop();
    assert!(
        fs::read(&live).unwrap() == before,
        "a locked restore changed the live database"
    );
}

#[test]
fn restore_migrates_an_older_backup_and_swaps_it_in() {
    let tmp = tempfile::tempdir().unwrap();
    let (live, _) = live_database(tmp.path());
    let old = backup_of(&NOTES_V1, 3, &tmp.path().join("old-backup.db"));
    let out = run(notes(&live)
        .args(["db", "restore", "--force", "--json", "--in"])
        .arg(&old));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["backup_schema_version"], 1);
    assert_eq!(report["schema_version"], 2);
    assert_eq!(report["migrations_applied"], serde_json::json!([2]));
    assert_eq!(report["replaced"], true);

    assert_eq!(
        counts(&live),
        (3, 3),
        "the restored data replaced the live data"
    );
    assert_eq!(mode(&live), 0o600);
    for suffix in ["-wal", "-shm"] {
        assert!(
            !store::with_suffix(&live, suffix).exists(),
            "stale {suffix} survived the swap"
        );
    }
    assert_no_leftovers(live.parent().unwrap());
    // The tool opens the restored database normally and it is at the current schema.
    let out = run(notes(&live).args(["add", "after restore"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(counts(&live), (4, 4));
}

#[test]
fn restore_onto_a_new_machine_needs_no_force() {
    let tmp = tempfile::tempdir().unwrap();
    let backup = backup_of(&NOTES_V2, 4, &tmp.path().join("backup.db"));
    // Nothing there yet, and then a freshly created (seeded, but empty) database.
    let fresh = tmp.path().join("new/notes.db");
    let out = run(notes(&fresh).args(["db", "restore", "--in"]).arg(&backup));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(counts(&fresh), (4, 4));
    assert_eq!(mode(fresh.parent().unwrap()), 0o700);

    let created = tmp.path().join("created/notes.db");
    assert_eq!(code(&run(notes(&created).args(["count"]))), 0);
    let out = run(notes(&created).args(["db", "restore", "--in"]).arg(&backup));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(counts(&created), (4, 4));
}

#[test]
fn reset_is_a_dry_run_unless_confirmed_and_removes_only_database_files() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    let config = tmp.path().join("server.toml");
    fs::write(&config, "listen = \"127.0.0.1:1\"\n").unwrap();
    assert_eq!(code(&run(notes(&db).args(["add", "x"]))), 0);
    let before = fs::read(&db).unwrap();

    let out = run(notes(&db).args(["db", "reset", "--json"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["files"][0], db.to_str().unwrap());
    assert_eq!(
        fs::read(&db).unwrap(),
        before,
        "a dry run changed the database"
    );

    let out = run(notes(&db).args(["db", "reset"]));
    assert!(stdout(&out).contains("would remove"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("Nothing was removed"),
        "{}",
        stdout(&out)
    );

    // With a live -wal and -shm beside it (a reader left them), all three go.
    let reader = raw(&db);
    let _: i64 = reader
        .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    drop(reader);
    let out = run(notes(&db).args(["db", "reset", "--confirm", "--json"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let removed = json(&out)["files"].as_array().unwrap().len();
    assert!(removed >= 1);
    for suffix in ["", "-wal", "-shm"] {
        assert!(
            !store::with_suffix(&db, suffix).exists(),
            "{suffix} survived"
        );
    }
    assert_eq!(
        fs::read_to_string(&config).unwrap(),
        "listen = \"127.0.0.1:1\"\n"
    );
}

#[test]
fn reset_refuses_files_that_are_not_this_tools_database() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("thesis.txt");
    fs::write(&text, "Chapter 1. It was a dark and stormy night.\n").unwrap();
    let out = run(notes(&text).args(["db", "reset", "--confirm"]));
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Nothing was removed"),
        "{}",
        stderr(&out)
    );
    assert!(text.exists());

    let other = tmp.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("PRAGMA application_id = 42; CREATE TABLE t(x);")
        .unwrap();
    let out = run(notes(&other).args(["db", "reset", "--confirm"]));
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("foreign_database"),
        "{}",
        stderr(&out)
    );
    assert!(other.exists());
}

#[test]
fn reset_refuses_while_a_server_holds_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    let server = Server::start(&db);
    let before = fs::read(&db).unwrap();
    for args in [&["db", "reset"][..], &["db", "reset", "--confirm"]] {
        let out = run(notes(&db).args(args));
        assert_eq!(code(&out), 75, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("store_in_use"), "{}", stderr(&out));
        assert_eq!(fs::read(&db).unwrap(), before);
    }
    server.stop();
}
