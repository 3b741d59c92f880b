//! Throughput of the batching audit writer next to the best SQLite can do with the same rows.
//!
//! The audit writer trades a queue, a thread and clamped times for handlers that never wait on
//! SQLite; this measures what that costs. (a) 200,000 events are recorded through
//! [`AuditLog`] from 4 threads and flushed, timed from the first `record` to the end of the flush;
//! (b) the same rows are inserted into the same schema in another temporary database, in
//! `BEGIN IMMEDIATE` transactions of 1,000 rows with a prepared statement, by one thread — the
//! baseline. Both figures, their ratio and (with `--json`) one JSON line are printed.
//!
//! `cargo bench -p portunus-server --bench audit [-- --json] [--events N] [--dir PATH]`; `--dir`
//! puts the databases on a filesystem of your choice (the default is the temp directory).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use portunus_server::audit::{AuditLog, AuditStats, Event, Outcome};
use portunus_server::store::TOOL;

type BenchResult<T> = Result<T, Box<dyn Error>>;

/// Events per run unless `--events` says otherwise.
const DEFAULT_EVENTS: usize = 200_000;
/// Threads calling `record`.
const THREADS: usize = 4;
/// Rows per transaction in the baseline.
const RAW_BATCH: usize = 1000;
/// Queue capacity: large enough that nothing is dropped, so both runs write every row.
const CAPACITY: usize = 1 << 18;

const INSERT: &str = "INSERT INTO audit (at, actor, action, resource, outcome, details) \
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

struct Options {
    events: usize,
    json: bool,
    dir: PathBuf,
}

struct AuditRun {
    record: Duration,
    total: Duration,
    stats: AuditStats,
}

fn main() -> BenchResult<()> {
    let options = options()?;
    let events = make_events(options.events);
    let dir = tempfile::tempdir_in(&options.dir)?;

    let audit = run_audit_log(&dir.path().join("audit-log"), &events)?;
    let raw = run_raw(&dir.path().join("raw"), &events)?;

    let n = events.len() as f64;
    let audit_rate = n / audit.total.as_secs_f64();
    let record_rate = n / audit.record.as_secs_f64();
    let raw_rate = n / raw.as_secs_f64();
    let ratio = audit_rate / raw_rate;

    println!(
        "audit bench: {} events, {THREADS} recording threads, queue capacity {CAPACITY}, \
         databases under {}",
        events.len(),
        options.dir.display()
    );
    println!("{:<38} {:>10} {:>14}", "", "seconds", "events/s");
    println!(
        "{:<38} {:>10.3} {:>14.0}",
        "(a) AuditLog: record + flush",
        audit.total.as_secs_f64(),
        audit_rate
    );
    println!(
        "{:<38} {:>10.3} {:>14.0}",
        "    of which the record calls",
        audit.record.as_secs_f64(),
        record_rate
    );
    println!(
        "{:<38} {:>10.3} {:>14.0}",
        format!("(b) raw inserts, {RAW_BATCH} per transaction"),
        raw.as_secs_f64(),
        raw_rate
    );
    println!("{:<38} {:>10} {:>14.2}", "ratio (a) / (b)", "", ratio);
    println!(
        "AuditLog stats: written {}, dropped {}, batches {} (mean {:.0} events per batch)",
        audit.stats.written,
        audit.stats.dropped,
        audit.stats.batches,
        audit.stats.written as f64 / audit.stats.batches.max(1) as f64
    );
    if options.json {
        let line = serde_json::json!({
            "bench": "audit",
            "events": events.len(),
            "threads": THREADS,
            "capacity": CAPACITY,
            "audit_log_seconds": audit.total.as_secs_f64(),
            "audit_log_events_per_s": audit_rate,
            "record_seconds": audit.record.as_secs_f64(),
            "record_events_per_s": record_rate,
            "raw_seconds": raw.as_secs_f64(),
            "raw_events_per_s": raw_rate,
            "raw_batch": RAW_BATCH,
            "ratio": ratio,
            "written": audit.stats.written,
            "dropped": audit.stats.dropped,
            "batches": audit.stats.batches,
        });
        println!("{line}");
    }
    Ok(())
}

/// Reads `--json`, `--events N` and `--dir PATH`; ignores what cargo adds (`--bench`).
fn options() -> BenchResult<Options> {
    let mut options = Options {
        events: DEFAULT_EVENTS,
        json: false,
        dir: std::env::temp_dir(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => options.json = true,
            "--events" => {
                let value = args.next().ok_or("--events needs a number")?;
                options.events = value.parse()?;
            }
            "--dir" => options.dir = args.next().ok_or("--dir needs a path")?.into(),
            _ => {}
        }
    }
    if options.events == 0 {
        return Err("--events must be at least 1".into());
    }
    Ok(options)
}

/// Realistic events: a few dozen actors, distinct resources, a small details object.
fn make_events(n: usize) -> Vec<Event> {
    let start = portunus_server::ids::now_ms();
    (0..n)
        .map(|i| Event {
            at: start + (i / 100) as i64,
            actor: format!("usr_{:016x}", i % 50),
            action: "rule.update".to_owned(),
            resource: format!("rule:rul_{i:016x}"),
            outcome: if i % 10 == 0 {
                Outcome::Denied
            } else {
                Outcome::Ok
            },
            details: serde_json::json!({ "field": "enabled", "value": true, "request": i }),
        })
        .collect()
}

fn config(dir: &Path) -> store::OpenConfig {
    let mut config = store::OpenConfig::for_path(&TOOL, dir.join("state.db"));
    config.allow_unsupported_fs = true;
    config
}

/// (a): record from [`THREADS`] threads, then flush.
fn run_audit_log(dir: &Path, events: &[Event]) -> BenchResult<AuditRun> {
    let config = config(dir);
    let log = AuditLog::start(&config, CAPACITY)?;
    // Cloned before the clock starts: the timed part is `record` only.
    let chunks: Vec<Vec<Event>> = events
        .chunks(events.len().div_ceil(THREADS))
        .map(<[Event]>::to_vec)
        .collect();
    let go = Arc::new(Barrier::new(chunks.len() + 1));
    let workers: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let log = log.clone();
            let go = Arc::clone(&go);
            thread::spawn(move || {
                go.wait();
                for event in chunk {
                    log.record(event);
                }
            })
        })
        .collect();

    let started = Instant::now();
    go.wait();
    for worker in workers {
        worker.join().map_err(|_| "a recording thread panicked")?;
    }
    let record = started.elapsed();
    if !log.flush_blocking(Duration::from_secs(600)) {
        return Err("the audit log did not flush within 10 minutes".into());
    }
    let total = started.elapsed();
    let stats = log.stats();
    log.shutdown();

    let rows: i64 = store::Store::open(&TOOL, &config)?
        .read(|conn| conn.query_row("SELECT count(*) FROM audit", [], |r| r.get(0)))?;
    if u64::try_from(rows)? != stats.written {
        return Err(format!("{rows} rows stored but {} written", stats.written).into());
    }
    Ok(AuditRun {
        record,
        total,
        stats,
    })
}

/// (b): the same rows, batched by hand.
fn run_raw(dir: &Path, events: &[Event]) -> BenchResult<Duration> {
    let db = store::Store::open(&TOOL, &config(dir))?;
    let started = Instant::now();
    for batch in events.chunks(RAW_BATCH) {
        db.write(|tx| {
            let mut insert = tx.prepare_cached(INSERT)?;
            for event in batch {
                insert.execute((
                    event.at,
                    &event.actor,
                    &event.action,
                    &event.resource,
                    event.outcome.as_str(),
                    serde_json::to_string(&event.details)?,
                ))?;
            }
            Ok::<_, Box<dyn Error>>(())
        })?;
    }
    Ok(started.elapsed())
}
