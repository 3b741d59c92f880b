//! The batching audit writer: a bounded in-memory queue drained by one dedicated thread.
//!
//! Request handlers must never wait on SQLite to leave an audit trail, so [`AuditLog::record`]
//! only takes a mutex for the time of a `VecDeque` push. The `portunus-audit` thread owns its
//! own connection to `state.db` (without the instance lock, which the server's main store
//! holds) and writes whatever is queued, up to [`MAX_BATCH`] events, in one `BEGIN IMMEDIATE`
//! transaction. A batch that fails (the database stayed busy past the deadline, an I/O error)
//! is retried with backoff rather than lost. Events are lost only when the queue overflows (the
//! *oldest* queued event goes), when SQLite rejects a batch outright (a constraint violation,
//! which retrying cannot fix), or when shutdown finds the database still failing after a few
//! more attempts; every loss is counted in [`AuditStats::dropped`], and the last two are logged.
//!
//! **Stored times are clamped to be monotonic.** Each row is stored with
//! `at = max(event.at, greatest at already in the table)`, read inside the inserting
//! (`IMMEDIATE`, so up-to-date) transaction. As `seq` is a rowid, which SQLite assigns above the
//! largest in the table, every new row sorts after every row already stored on `(at, seq)`, so a
//! reader paging on that key can never skip a row committed while it pages. The price is that
//! an event recorded late with an older timestamp (a handler that took its time, or a clock step
//! backwards) is stored with the later time; the error is bounded by how long the event waited,
//! and the original time is not kept. The guarantee needs every audit row to be inserted here.
//!
//! Progress is published as a *watermark*: the sequence number (in recording order) of the
//! oldest event not yet written or dropped. [`AuditLog::flush`] waits on a `tokio::sync::watch`
//! of it, [`AuditLog::flush_blocking`] on a condition variable.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rusqlite::{ErrorCode, Transaction};
use serde::Serialize;
use tokio::sync::watch;

use super::Event;

/// The most events written in one transaction.
pub const MAX_BATCH: usize = 1024;

/// First pause after a failed batch; it doubles up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Longest pause between two attempts at the same batch.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// Attempts at one batch, once shutdown has begun, before the rest is given up (and counted).
const ATTEMPTS_WHILE_STOPPING: u32 = 5;

/// The name of the writer thread.
const THREAD_NAME: &str = "portunus-audit";

/// Counters of the audit writer, for `/metrics` and tests.
///
/// `recorded == written + dropped + queued` holds in every snapshot.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Events handed to [`AuditLog::record`].
    pub recorded: u64,
    /// Events committed to the database.
    pub written: u64,
    /// Events lost: pushed out of a full queue, recorded after shutdown, or given up on during
    /// shutdown because the database kept failing.
    pub dropped: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Events waiting to be written, including the batch being written now.
    pub queued: u64,
}

/// A handle on the audit writer; clones share the same queue and thread.
///
/// The thread stops (after writing what is queued) on [`AuditLog::shutdown`] or when the last
/// clone is dropped, which therefore blocks like `shutdown` does.
#[derive(Clone, Debug)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

/// Owned by the handles only (not by the thread), so dropping the last handle stops the thread.
#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the handles and the writer thread share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when the queue becomes non-empty, on shutdown and (in tests) on resume.
    work: Condvar,
    /// Signalled whenever the watermark moves.
    progressed: Condvar,
    /// The watermark, for async waiters. Only ever sent to with `state` locked, so it only grows.
    watermark: watch::Sender<u64>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Events recorded and not yet taken by the writer: always the most recent `queue.len()`
    /// events recorded, so the front's sequence number is `recorded - queue.len()`.
    queue: VecDeque<Event>,
    /// The batch being written: its first sequence number and its length.
    in_flight: Option<(u64, usize)>,
    recorded: u64,
    written: u64,
    dropped: u64,
    batches: u64,
    /// Shutdown has begun: no new events are accepted, the thread exits once the queue is empty.
    stopping: bool,
    /// The thread has exited.
    stopped: bool,
    /// Test hook: the writer takes nothing from the queue while set.
    #[cfg(test)]
    paused: bool,
}

impl State {
    /// The sequence number of the oldest event neither written nor dropped (events are numbered
    /// from 0 in recording order); everything before it is settled.
    fn watermark(&self) -> u64 {
        match self.in_flight {
            Some((first, _)) => first,
            None => self.recorded - self.queue.len() as u64,
        }
    }

    fn stats(&self) -> AuditStats {
        let in_flight = self.in_flight.map_or(0, |(_, n)| n);
        AuditStats {
            recorded: self.recorded,
            written: self.written,
            dropped: self.dropped,
            batches: self.batches,
            queued: (self.queue.len() + in_flight) as u64,
        }
    }

    fn may_take(&self) -> bool {
        #[cfg(test)]
        if self.paused && !self.stopping {
            return false;
        }
        !self.queue.is_empty()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, and every update leaves the state consistent,
        // so a poisoned lock still holds good data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells waiters the watermark may have moved. Call with the state locked.
    fn publish(&self, state: &State) {
        let mark = state.watermark();
        self.watermark.send_if_modified(|current| {
            if mark > *current {
                *current = mark;
                true
            } else {
                false
            }
        });
        self.progressed.notify_all();
    }
}

impl AuditLog {
    /// Opens a second connection to the store described by `config` (never taking the instance
    /// lock, whatever `config` says) and starts the `portunus-audit` writer thread with a queue
    /// of `capacity` events (at least 1).
    ///
    /// Blocking: the database is opened (and migrated if needed) before this returns, so open
    /// errors come back to the caller.
    pub fn start(config: &store::OpenConfig, capacity: usize) -> Result<AuditLog, store::Error> {
        let mut config = config.clone();
        config.instance_lock = false;
        let db = store::Store::open(&crate::store::TOOL, &config)?;
        let (watermark, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            progressed: Condvar::new(),
            watermark,
            capacity: capacity.max(1),
        });
        let for_thread = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || run(&db, &for_thread))
            .map_err(|source| store::Error::Io {
                action: "start the audit writer thread for",
                path: config.path().to_path_buf(),
                source,
            })?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Queues an event for writing. Never blocks on I/O: when the queue is full the oldest queued
    /// event is dropped (and counted) to make room. After [`AuditLog::shutdown`] the event is
    /// only counted as dropped.
    pub fn record(&self, event: Event) {
        let shared = &self.inner.shared;
        let mut state = shared.lock();
        state.recorded += 1;
        if state.stopping || state.stopped {
            state.dropped += 1;
            shared.publish(&state);
            return;
        }
        let was_empty = state.queue.is_empty();
        let overflowed = if state.queue.len() >= shared.capacity {
            state.queue.pop_front();
            state.dropped += 1;
            true
        } else {
            false
        };
        state.queue.push_back(event);
        if overflowed {
            shared.publish(&state);
        }
        if was_empty {
            // The writer only sleeps on an empty queue, so only this transition needs a wake-up.
            shared.work.notify_one();
        }
    }

    /// Resolves once every event recorded before the call has been written or dropped. Waits on
    /// a watch channel, never blocking the async thread.
    pub async fn flush(&self) {
        let shared = &self.inner.shared;
        let mut marks = shared.watermark.subscribe();
        let target = shared.lock().recorded;
        // The sender lives as long as `self`, so this only ends when the target is reached.
        let _ = marks.wait_for(|&mark| mark >= target).await;
    }

    /// Like [`AuditLog::flush`], for threads that may block: waits at most `timeout`, and says
    /// whether everything recorded before the call was settled in time.
    pub fn flush_blocking(&self, timeout: Duration) -> bool {
        let shared = &self.inner.shared;
        let state = shared.lock();
        let target = state.recorded;
        let (state, _) = shared
            .progressed
            .wait_timeout_while(state, timeout, |state| state.watermark() < target)
            .unwrap_or_else(PoisonError::into_inner);
        state.watermark() >= target
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> AuditStats {
        self.inner.shared.lock().stats()
    }

    /// Writes everything queued, then stops the writer thread and waits for it. Idempotent;
    /// events recorded afterwards are counted as dropped. Blocks for as long as the last batches
    /// take, so async callers should run it on a blocking thread.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Test hook: while paused the writer takes nothing from the queue.
    #[cfg(test)]
    fn set_paused(&self, paused: bool) {
        let shared = &self.inner.shared;
        shared.lock().paused = paused;
        shared.work.notify_one();
    }
}

impl Inner {
    fn shutdown(&self) {
        {
            let mut state = self.shared.lock();
            state.stopping = true;
        }
        self.shared.work.notify_one();
        // Held while joining, so that a concurrent second call also returns only once the
        // thread is gone.
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(thread) = thread.take()
            && thread.join().is_err()
        {
            eprintln!("event=audit_writer_panicked");
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Marks the writer stopped when its thread ends, even by panic, so that waiters are released
/// and later events are counted as dropped instead of queueing forever.
struct Exit<'a>(&'a Shared);

impl Drop for Exit<'_> {
    fn drop(&mut self) {
        let shared = self.0;
        let mut state = shared.lock();
        let lost = state.queue.len() + state.in_flight.map_or(0, |(_, n)| n);
        if lost > 0 {
            eprintln!("event=audit_events_lost count={lost} reason=writer_stopped");
        }
        state.dropped += lost as u64;
        state.queue.clear();
        state.in_flight = None;
        state.stopped = true;
        shared.publish(&state);
    }
}

/// The writer thread: take a batch, write it, repeat; exit once stopping with nothing queued.
fn run(db: &store::Store, shared: &Shared) {
    let _exit = Exit(shared);
    loop {
        let batch = {
            let mut state = shared.lock();
            while !state.may_take() && !state.stopping {
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.queue.is_empty() {
                // Stopping, and everything is written.
                return;
            }
            let first = state.watermark();
            let n = state.queue.len().min(MAX_BATCH);
            let batch: Vec<Event> = state.queue.drain(..n).collect();
            state.in_flight = Some((first, n));
            batch
        };
        let attempt = write_with_retry(db, shared, &batch);
        let mut state = shared.lock();
        state.in_flight = None;
        match attempt {
            Attempt::Written => {
                state.written += batch.len() as u64;
                state.batches += 1;
            }
            Attempt::Rejected => state.dropped += batch.len() as u64,
            Attempt::GaveUp => {
                // The database keeps failing and the server is going away: [`Exit`] counts (and
                // logs) the rest of the queue as dropped rather than failing on it batch by batch.
                state.dropped += batch.len() as u64;
                return;
            }
        }
        shared.publish(&state);
    }
}

/// How writing one batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Committed.
    Written,
    /// It can never succeed (a constraint violation); dropped and logged.
    Rejected,
    /// Shutdown has begun and it kept failing; dropped and logged.
    GaveUp,
}

/// Writes one batch, retrying failures with backoff until it is written, found impossible, or
/// shutdown has begun and [`ATTEMPTS_WHILE_STOPPING`] more attempts have failed.
fn write_with_retry(db: &store::Store, shared: &Shared, batch: &[Event]) -> Attempt {
    let mut pause = FIRST_RETRY_PAUSE;
    let mut attempts_while_stopping = 0;
    loop {
        let error = match db.write(|tx| insert_batch(tx, batch)) {
            Ok(()) => return Attempt::Written,
            Err(error) => error,
        };
        if is_permanent(&error) {
            eprintln!(
                "event=audit_batch_dropped count={} error={error}",
                batch.len()
            );
            return Attempt::Rejected;
        }
        if shared.lock().stopping {
            attempts_while_stopping += 1;
            if attempts_while_stopping >= ATTEMPTS_WHILE_STOPPING {
                eprintln!(
                    "event=audit_batch_dropped count={} reason=shutting_down error={error}",
                    batch.len()
                );
                return Attempt::GaveUp;
            }
        }
        eprintln!(
            "event=audit_batch_retry count={} retry_in_ms={} error={error}",
            batch.len(),
            pause.as_millis()
        );
        thread::sleep(pause);
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

/// Inserts a batch with clamped times (see the module documentation).
fn insert_batch(tx: &Transaction<'_>, batch: &[Event]) -> Result<(), store::Error> {
    let mut floor: Option<i64> = tx.query_row("SELECT max(at) FROM audit", [], |row| row.get(0))?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO audit (at, actor, action, resource, outcome, details) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for event in batch {
        let at = floor.map_or(event.at, |floor| floor.max(event.at));
        floor = Some(at);
        let details = serde_json::to_string(&event.details).unwrap_or_else(|_| "{}".to_owned());
        insert.execute((
            at,
            &event.actor,
            &event.action,
            &event.resource,
            event.outcome.as_str(),
            details,
        ))?;
    }
    Ok(())
}

/// Whether retrying cannot help.
fn is_permanent(error: &store::Error) -> bool {
    let source = match error {
        store::Error::Query(e) | store::Error::Sqlite { source: e, .. } => e,
        _ => return false,
    };
    matches!(
        source.sqlite_error_code(),
        Some(ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Barrier;
    use std::time::Instant;

    use rusqlite::Connection;
    use serde_json::json;

    use super::*;
    use crate::audit::Outcome;
    use crate::store::TOOL;

    const WAIT: Duration = Duration::from_secs(30);

    fn config(dir: &Path) -> store::OpenConfig {
        let mut config = store::OpenConfig::for_path(&TOOL, dir.join("state.db"));
        config.allow_unsupported_fs = true;
        config
    }

    fn event(at: i64, actor: &str, resource: String) -> Event {
        Event {
            at,
            actor: actor.to_owned(),
            action: "test.record".to_owned(),
            resource,
            outcome: Outcome::Ok,
            details: json!({ "n": 1 }),
        }
    }

    fn open(path: PathBuf) -> Connection {
        Connection::open(path).unwrap()
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn ten_thousand_events_from_eight_threads_land_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let log = AuditLog::start(&config, 20_000).unwrap();
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    for i in 0..1250 {
                        log.record(event(1_000 + i, &format!("t{t}"), format!("r{i}")));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(log.flush_blocking(WAIT));
        let stats = log.stats();
        assert_eq!(
            (stats.recorded, stats.written, stats.dropped, stats.queued),
            (10_000, 10_000, 0, 0),
            "{stats:?}"
        );
        assert!(stats.batches >= 1 && stats.batches <= 10_000);

        let conn = open(config.path().to_path_buf());
        assert_eq!(count(&conn), 10_000);
        let (seqs, keys): (i64, i64) = conn
            .query_row(
                "SELECT count(DISTINCT seq), count(DISTINCT actor || '/' || resource) FROM audit",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((seqs, keys), (10_000, 10_000));
        let details: String = conn
            .query_row("SELECT details FROM audit LIMIT 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(details, r#"{"n":1}"#);
        log.shutdown();
    }

    #[test]
    fn a_full_queue_drops_the_oldest_events_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let log = AuditLog::start(&config, 10).unwrap();
        log.set_paused(true);
        for i in 0..100 {
            log.record(event(i, "system", format!("r{i}")));
        }
        let stats = log.stats();
        assert_eq!(
            (stats.recorded, stats.written, stats.dropped, stats.queued),
            (100, 0, 90, 10),
            "{stats:?}"
        );
        // Nothing recorded before this can be settled while the writer is held up.
        assert!(!log.flush_blocking(Duration::from_millis(50)));
        log.set_paused(false);
        assert!(log.flush_blocking(WAIT));
        let stats = log.stats();
        assert_eq!((stats.written, stats.dropped, stats.queued), (10, 90, 0));

        let conn = open(config.path().to_path_buf());
        let kept: Vec<String> = conn
            .prepare("SELECT resource FROM audit ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let newest: Vec<String> = (90..100).map(|i| format!("r{i}")).collect();
        assert_eq!(kept, newest);
        log.shutdown();
    }

    #[tokio::test]
    async fn flush_makes_every_recorded_event_visible() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let log = AuditLog::start(&config, 4096).unwrap();
        // Nothing recorded: resolves at once.
        log.flush().await;
        let conn = open(config.path().to_path_buf());
        for round in 1..=3 {
            for i in 0..500 {
                log.record(event(i, "usr_1", format!("r{round}.{i}")));
            }
            log.flush().await;
            assert_eq!(count(&conn), 500 * round);
        }
        let stats = log.stats();
        assert_eq!((stats.written, stats.queued), (1500, 0));
        tokio::task::spawn_blocking(move || log.shutdown())
            .await
            .unwrap();
    }

    #[test]
    fn stored_times_never_go_backwards_in_seq_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let log = AuditLog::start(&config, 10_000).unwrap();
        // Shuffled timestamps, many repeated: a permutation of 0..1000 folded onto 100 values.
        let times: Vec<i64> = (0..3000_i64)
            .map(|i| 10_000 + (i * 7919 % 1000) / 10)
            .collect();
        for (i, at) in times.iter().enumerate() {
            log.record(event(*at, "system", format!("r{i}")));
            if i % 700 == 0 {
                // Spread the events over several batches.
                assert!(log.flush_blocking(WAIT));
            }
        }
        assert!(log.flush_blocking(WAIT));

        let conn = open(config.path().to_path_buf());
        let stored: Vec<i64> = conn
            .prepare("SELECT at FROM audit ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<i64> = times
            .iter()
            .scan(i64::MIN, |max, at| {
                *max = (*max).max(*at);
                Some(*max)
            })
            .collect();
        assert_eq!(stored, expected);
        assert!(log.stats().batches >= 5);

        // A row written by someone else with a later time raises the floor for later batches.
        conn.execute(
            "INSERT INTO audit (at, actor, action, resource, outcome) \
             VALUES (50000, 'system', 'x', 'y', 'ok')",
            [],
        )
        .unwrap();
        log.record(event(20_000, "system", "late".to_owned()));
        assert!(log.flush_blocking(WAIT));
        let at: i64 = conn
            .query_row("SELECT at FROM audit WHERE resource = 'late'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(at, 50_000);
        log.shutdown();
    }

    #[test]
    fn a_busy_database_is_retried_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.busy_deadline = Duration::from_millis(30);
        let log = AuditLog::start(&config, 1000).unwrap();

        let blocker = open(config.path().to_path_buf());
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        for i in 0..20 {
            log.record(event(i, "system", format!("r{i}")));
        }
        // Several busy deadlines pass: the batch keeps failing, and stays queued.
        assert!(!log.flush_blocking(Duration::from_millis(300)));
        let stats = log.stats();
        assert_eq!((stats.written, stats.dropped, stats.queued), (0, 0, 20));
        blocker.execute_batch("COMMIT").unwrap();

        let started = Instant::now();
        assert!(log.flush_blocking(WAIT));
        assert!(started.elapsed() < Duration::from_secs(10));
        let stats = log.stats();
        assert_eq!((stats.written, stats.dropped, stats.queued), (20, 0, 0));
        assert_eq!(count(&blocker), 20);
        log.shutdown();
    }

    #[test]
    fn shutdown_gives_up_on_a_database_that_stays_locked() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.busy_deadline = Duration::from_millis(20);
        let log = AuditLog::start(&config, 5000).unwrap();
        let blocker = open(config.path().to_path_buf());
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        for i in 0..3000 {
            log.record(event(i, "system", format!("r{i}")));
        }
        let started = Instant::now();
        log.shutdown();
        assert!(started.elapsed() < Duration::from_secs(10));
        let stats = log.stats();
        assert_eq!(
            (stats.recorded, stats.written, stats.dropped, stats.queued),
            (3000, 0, 3000, 0)
        );
        blocker.execute_batch("COMMIT").unwrap();
        assert_eq!(count(&blocker), 0);
    }

    #[test]
    fn a_batch_that_can_never_be_written_is_dropped_not_retried_forever() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let log = AuditLog::start(&config, 100).unwrap();
        let conn = open(config.path().to_path_buf());
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit WHEN NEW.actor = 'bad' \
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .unwrap();
        log.record(event(1, "bad", "r1".to_owned()));
        assert!(log.flush_blocking(WAIT));
        log.record(event(2, "good", "r2".to_owned()));
        assert!(log.flush_blocking(WAIT));
        let stats = log.stats();
        assert_eq!((stats.written, stats.dropped), (1, 1));
        assert_eq!(count(&conn), 1);
        log.shutdown();
    }

    #[test]
    fn shutdown_drains_the_queue_and_later_events_count_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let log = AuditLog::start(&config, 1000).unwrap();
        let other = log.clone();
        log.set_paused(true);
        for i in 0..50 {
            log.record(event(i, "system", format!("r{i}")));
        }
        // Shutdown overrides the pause and writes everything queued first.
        log.shutdown();
        assert_eq!(log.stats().written, 50);
        other.record(event(99, "system", "after".to_owned()));
        other.shutdown();
        let stats = other.stats();
        assert_eq!(
            (stats.recorded, stats.written, stats.dropped, stats.queued),
            (51, 50, 1, 0)
        );
        assert!(other.flush_blocking(Duration::ZERO));
        assert_eq!(count(&open(config.path().to_path_buf())), 50);
    }

    #[test]
    fn dropping_the_last_handle_writes_what_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let log = AuditLog::start(&config, 1000).unwrap();
        for i in 0..10 {
            log.record(event(i, "system", format!("r{i}")));
        }
        drop(log);
        assert_eq!(count(&open(config.path().to_path_buf())), 10);
    }

    #[test]
    fn open_errors_reach_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.db"), b"not a database, not at all").unwrap();
        let error = AuditLog::start(&config(dir.path()), 10).unwrap_err();
        assert_eq!(error.code(), "not_sqlite", "{error}");
    }
}
