//! `AsyncStore`: SQLite off the async executor. A write stuck behind another process's lock must not
//! stall other tasks; many tasks read and write at once; a panicking job panics in its caller only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use store::{AsyncStore, OpenConfig};

fn async_store(path: &std::path::Path) -> AsyncStore {
    AsyncStore::open(&NOTES_V2, &OpenConfig::for_path(&NOTES_V2, path)).unwrap()
}

/// Counts the notes through a pooled read connection.
async fn note_count(store: &AsyncStore) -> i64 {
    store
        .read(|c| {
            c.query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
                .map_err(store::Error::from)
        })
        .await
        .unwrap()
}

#[test]
fn a_write_waiting_on_a_busy_database_does_not_block_the_executor() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    let store = async_store(&db);

    // Another connection holds the write lock for 400 ms.
    let blocker_db = db.clone();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let blocker = thread::spawn(move || {
        let conn = rusqlite::Connection::open(&blocker_db).unwrap();
        conn.execute_batch(
            "BEGIN IMMEDIATE; INSERT INTO notes (body, created_at) VALUES ('held', 0);",
        )
        .unwrap();
        locked_tx.send(()).unwrap();
        thread::sleep(Duration::from_millis(400));
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();

    // One executor thread only: if the write blocked it, the ticker could not run.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ticks = Arc::new(AtomicU32::new(0));
    let (waited, ticks_during_write) = runtime.block_on(async {
        let counter = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let started = Instant::now();
        store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO notes (body, created_at) VALUES ('async', 1)",
                    [],
                )?;
                Ok::<_, store::Error>(())
            })
            .await
            .unwrap();
        let waited = started.elapsed();
        let seen = ticks.load(Ordering::Relaxed);
        ticker.abort();
        (waited, seen)
    });
    blocker.join().unwrap();
    assert!(
        waited >= Duration::from_millis(300),
        "the write did not wait: {waited:?}"
    );
    assert!(
        ticks_during_write >= 10,
        "the executor stalled while the write waited: {ticks_during_write} ticks in {waited:?}"
    );
    let bodies: i64 = runtime
        .block_on(store.read(|c| {
            c.query_row(
                "SELECT count(*) FROM notes WHERE body IN ('held', 'async')",
                [],
                |r| r.get(0),
            )
            .map_err(store::Error::from)
        }))
        .unwrap();
    assert_eq!(bodies, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_read_and_write_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(async_store(&tmp.path().join("notes.db")));
    let mut tasks = Vec::new();
    for task in 0..40 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                store
                    .write(move |tx| {
                        tx.execute(
                            "INSERT INTO notes (body, created_at) VALUES (?1, 0)",
                            [format!("{task}-{i}")],
                        )?;
                        tx.execute("UPDATE totals SET notes = notes + 1", [])?;
                        Ok::<_, store::Error>(())
                    })
                    .await
                    .unwrap();
                let (notes, total): (i64, i64) = store
                    .read(|c| {
                        c.query_row(
                            "SELECT (SELECT count(*) FROM notes), (SELECT notes FROM totals)",
                            [],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .map_err(store::Error::from)
                    })
                    .await
                    .unwrap();
                assert_eq!(notes, total, "a reader saw half a transaction");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = note_count(&store).await;
    assert_eq!(total, 400);
}

#[tokio::test]
async fn a_panicking_job_panics_in_its_caller_and_the_writer_keeps_going() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(async_store(&tmp.path().join("notes.db")));
    let panicking = Arc::clone(&store);
    let joined = tokio::spawn(async move {
        panicking
            .write(|_tx| -> Result<(), store::Error> { panic!("bug in a handler") })
            .await
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    // The transaction was rolled back and the writer still serves.
    store
        .write(|tx| {
            tx.execute(
                "INSERT INTO notes (body, created_at) VALUES ('after', 0)",
                [],
            )?;
            Ok::<_, store::Error>(())
        })
        .await
        .unwrap();
    let n = note_count(&store).await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_server_keeps_the_lock_until_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("notes.db");
    let config = OpenConfig {
        instance_lock: true,
        ..OpenConfig::for_path(&NOTES_V2, &db)
    };
    let first = AsyncStore::open(&NOTES_V2, &config).unwrap();
    let second = AsyncStore::open(&NOTES_V2, &config).unwrap_err();
    assert_eq!(second.exit_code(), 75);
    first.close();
    AsyncStore::open(&NOTES_V2, &config).unwrap().close();
}

#[tokio::test]
async fn the_generation_moves_with_every_write_and_not_with_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let store = async_store(&tmp.path().join("notes.db"));
    let before = store.generation();
    assert_eq!(note_count(&store).await, 0);
    assert_eq!(store.generation(), before, "a read changes nothing");
    store
        .write(|tx| {
            tx.execute("INSERT INTO notes (body, created_at) VALUES ('a', 0)", [])?;
            Ok::<_, store::Error>(())
        })
        .await
        .unwrap();
    let after_write = store.generation();
    assert_ne!(after_write, before, "seen by the writer's caller at once");
    // A failed write may have done something before failing: it moves the number too.
    let failed = store
        .write(|tx| {
            tx.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            Ok::<_, store::Error>(())
        })
        .await;
    assert!(failed.is_err());
    assert_ne!(store.generation(), after_write);
}
