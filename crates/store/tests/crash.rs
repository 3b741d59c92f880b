//! Crash safety and concurrency with real processes: writers killed with SIGKILL at random moments
//! lose no committed transaction and leave none half-applied; several processes writing at once
//! all get through `BEGIN IMMEDIATE` without "database is locked" reaching them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;

const ROWS_PER_BATCH: i64 = 25;

#[test]
fn writers_killed_at_random_moments_never_lose_or_tear_a_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    let mut rng = Rng::from_time();
    let mut committed = BTreeSet::new();

    for round in 0..25 {
        let mut child = notes(&db)
            .args([
                "stress",
                "--rows",
                &ROWS_PER_BATCH.to_string(),
                "--pad",
                "64",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, printed) = mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        // Wait for the first commit so every round really writes, then kill at a random moment.
        let first = printed
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("round {round}: the writer committed nothing"));
        committed.insert(first.parse::<i64>().unwrap());
        thread::sleep(Duration::from_millis(rng.below(120)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the writer should have been killed"
        );
        reader.join().unwrap();
        committed.extend(printed.try_iter().map(|l| l.parse::<i64>().unwrap()));

        // Every batch the writer reported as committed is there, whole; no batch is partial.
        let conn = raw(&db);
        let mut stmt = conn
            .prepare("SELECT batch, count(*) FROM notes GROUP BY batch")
            .unwrap();
        let batches: Vec<(i64, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (batch, rows) in &batches {
            assert_eq!(
                *rows, ROWS_PER_BATCH,
                "round {round}: batch {batch} is torn"
            );
        }
        let present: BTreeSet<i64> = batches.iter().map(|(b, _)| *b).collect();
        let lost: Vec<_> = committed.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "round {round}: committed batches lost: {lost:?}"
        );
        let (notes, total) = counts(&db);
        assert_eq!(notes, total, "round {round}: the running total disagrees");
        assert_eq!(integrity(&db), ["ok"], "round {round}");
    }
    assert!(
        committed.len() >= 25,
        "the rounds committed too little to prove anything"
    );
}

#[test]
fn several_writer_processes_all_commit_without_busy_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    // Create it first so the writers race on writes, not on creation (tested elsewhere).
    assert_eq!(code(&run(notes(&db).args(["add", "seed"]))), 0);

    let writers: Vec<_> = (0..4)
        .map(|_| {
            notes(&db)
                .args(["stress", "--batches", "150", "--rows", "10"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for writer in writers {
        let out = writer.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "a writer failed: {}", stderr(&out));
    }
    // Batch numbers may collide between processes; what counts is every row and the total.
    assert_eq!(counts(&db), (1 + 4 * 150 * 10, 1 + 4 * 150 * 10));
    assert_eq!(integrity(&db), ["ok"]);
}

#[test]
fn a_writer_blocked_past_its_deadline_reports_busy_not_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    let config = store::OpenConfig {
        busy_deadline: Duration::from_millis(300),
        ..store::OpenConfig::for_path(&NOTES_V2, &db)
    };
    let store = store::Store::open(&NOTES_V2, &config).unwrap();
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();

    let started = std::time::Instant::now();
    let error = store
        .write(|tx| {
            tx.execute("DELETE FROM notes", [])
                .map_err(store::Error::from)
        })
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(error.code(), "busy");
    assert_eq!(error.exit_code(), 75);
    assert!(error.to_string().starts_with("busy: "), "{error}");

    holder.execute_batch("COMMIT").unwrap();
    store
        .write(|tx| {
            tx.execute("DELETE FROM notes", [])
                .map_err(store::Error::from)
        })
        .unwrap();
}
