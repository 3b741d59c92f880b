//! What the store's wrappers cost over raw rusqlite, measured on the same work in one process.
//!
//! One database file, opened by `Store::open` and by a plain rusqlite connection given the same
//! per-connection pragmas (busy timeout, foreign keys on, synchronous=NORMAL, trusted_schema off),
//! so both append to and read the very same table. Each round runs every workload through both,
//! alternating which goes first; the report gives the median time per round and the ratio
//! store/raw. Goal for `Store`: within 1.10x.
//!
//! `AsyncStore` is reported per call instead: every call crosses to the writer thread and back,
//! which is the price of keeping SQLite off the async executor, and is the same work otherwise.
//!
//! ```text
//! cargo bench -p store --bench overhead            # 9 rounds
//! cargo bench -p store --bench overhead -- --quick # 3 rounds, smaller workloads
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use store::refinery::{Migration, Runner};
use store::{AsyncStore, DefaultPath, Location, OpenConfig, Store, Tool};

const SCHEMA: &str = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, value INTEGER NOT NULL) STRICT;";
const INSERT: &str = "INSERT INTO items (name, value) VALUES (?1, ?2)";
const SELECT: &str = "SELECT name, value FROM items WHERE id = ?1";

fn runner() -> Runner {
    Runner::new(&[Migration::unapplied("V1__items", SCHEMA).unwrap()])
}

static BENCH: Tool = Tool {
    name: "bench",
    application_id: 0x4245_4e43,
    location: Location {
        env_var: "BENCH_DB",
        flag: "--db",
        file_in_dir: None,
        default: DefaultPath::WorkingDir("bench.db"),
    },
    migrations: runner,
    adopt: None,
};

struct Sizes {
    rounds: usize,
    transactions: usize,
    rows_per_tx: usize,
    reads: usize,
    preload: usize,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes = if quick {
        Sizes {
            rounds: 3,
            transactions: 100,
            rows_per_tx: 100,
            reads: 20_000,
            preload: 20_000,
        }
    } else {
        Sizes {
            rounds: 9,
            transactions: 300,
            rows_per_tx: 100,
            reads: 100_000,
            preload: 100_000,
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bench.db");
    let store = Store::open(&BENCH, &OpenConfig::for_path(&BENCH, &path)).unwrap();
    let raw = raw_connection(&path);
    let async_store = AsyncStore::open(&BENCH, &OpenConfig::for_path(&BENCH, &path)).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    raw_inserts(&raw, sizes.preload / 1000, 1000);

    let ids: Vec<i64> = {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        (0..sizes.reads)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                1 + (x % sizes.preload as u64) as i64
            })
            .collect()
    };
    let batch = format!("{} tx x {} rows", sizes.transactions, sizes.rows_per_tx);
    let reads = format!("{} reads", sizes.reads);
    let mut rows = [
        Row::new("batched inserts", &batch),
        Row::new("point reads, autocommit", &reads),
        Row::new("point reads, one snapshot", &reads),
        Row::new("batched inserts, AsyncStore", &batch),
    ];
    for round in 0..sizes.rounds {
        let raw_first = round % 2 == 0;
        let measure = |row: &mut Row, raw_work: &dyn Fn(), store_work: &dyn Fn()| {
            if raw_first {
                row.raw.push(time(raw_work));
                row.store.push(time(store_work));
            } else {
                row.store.push(time(store_work));
                row.raw.push(time(raw_work));
            }
        };
        let (t, n) = (sizes.transactions, sizes.rows_per_tx);
        measure(&mut rows[0], &|| raw_inserts(&raw, t, n), &|| {
            store_inserts(&store, t, n)
        });
        measure(&mut rows[1], &|| raw_reads(&raw, &ids), &|| {
            store_reads(&store, &ids)
        });
        measure(&mut rows[2], &|| raw_snapshot_reads(&raw, &ids), &|| {
            store_snapshot_reads(&store, &ids)
        });
        measure(&mut rows[3], &|| raw_inserts(&raw, t, n), &|| {
            runtime.block_on(async_inserts(&async_store, t, n))
        });
    }

    println!(
        "store vs raw rusqlite on one database file, same pragmas, median of {} rounds \
         (order alternating)\n",
        sizes.rounds
    );
    println!(
        "{:<30} {:<18} {:>11} {:>11} {:>8}",
        "workload", "size", "raw", "store", "ratio"
    );
    for row in &mut rows {
        let (raw, store) = (median(&mut row.raw), median(&mut row.store));
        println!(
            "{:<30} {:<18} {:>11} {:>11} {:>7.3}x",
            row.name,
            row.size,
            format!("{raw:.2?}"),
            format!("{store:.2?}"),
            store.as_secs_f64() / raw.as_secs_f64()
        );
    }
    let inserted = (sizes.transactions * sizes.rows_per_tx) as f64;
    let per_call = (median(&mut rows[3].store) - median(&mut rows[0].store)).as_secs_f64()
        / sizes.transactions as f64;
    println!(
        "\nraw: {:.0} rows/s in batches, {:.2} us per point read",
        inserted / median(&mut rows[0].raw).as_secs_f64(),
        median(&mut rows[1].raw).as_secs_f64() * 1e6 / sizes.reads as f64
    );
    println!(
        "AsyncStore: {:.1} us per call for the trip to the writer thread and back",
        per_call * 1e6
    );
}

/// One workload's timings.
struct Row {
    name: &'static str,
    size: String,
    raw: Vec<Duration>,
    store: Vec<Duration>,
}

impl Row {
    fn new(name: &'static str, size: &str) -> Row {
        Row {
            name,
            size: size.to_string(),
            raw: Vec::new(),
            store: Vec::new(),
        }
    }
}

fn raw_connection(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.pragma_update(None, "trusted_schema", "OFF").unwrap();
    conn
}

fn time(work: &dyn Fn()) -> Duration {
    let started = Instant::now();
    work();
    started.elapsed()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn raw_inserts(conn: &Connection, transactions: usize, rows: usize) {
    for t in 0..transactions {
        let tx =
            rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate).unwrap();
        {
            let mut insert = tx.prepare_cached(INSERT).unwrap();
            for i in 0..rows {
                insert.execute(("item", (t * rows + i) as i64)).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

fn store_inserts(store: &Store, transactions: usize, rows: usize) {
    for t in 0..transactions {
        store
            .write(|tx| {
                let mut insert = tx.prepare_cached(INSERT)?;
                for i in 0..rows {
                    insert.execute(("item", (t * rows + i) as i64))?;
                }
                Ok::<_, store::Error>(())
            })
            .unwrap();
    }
}

async fn async_inserts(store: &AsyncStore, transactions: usize, rows: usize) {
    for t in 0..transactions {
        store
            .write(move |tx| {
                let mut insert = tx.prepare_cached(INSERT)?;
                for i in 0..rows {
                    insert.execute(("item", (t * rows + i) as i64))?;
                }
                Ok::<_, store::Error>(())
            })
            .await
            .unwrap();
    }
}

fn read_all(conn: &Connection, ids: &[i64]) -> rusqlite::Result<i64> {
    let mut select = conn.prepare_cached(SELECT)?;
    let mut sum = 0;
    for id in ids {
        sum += select.query_row([id], |r| r.get::<_, i64>(1))?;
    }
    Ok(sum)
}

fn raw_reads(conn: &Connection, ids: &[i64]) {
    // Statement looked up per read, exactly as the store side does inside each `read`.
    let mut sum = 0;
    for id in ids {
        sum += conn
            .prepare_cached(SELECT)
            .unwrap()
            .query_row([id], |r| r.get::<_, i64>(1))
            .unwrap();
    }
    std::hint::black_box(sum);
}

fn store_reads(store: &Store, ids: &[i64]) {
    // One `read` per point read: the wrapper's cost is paid every time.
    let mut sum = 0;
    for id in ids {
        sum += store
            .read(|c| {
                c.prepare_cached(SELECT)?
                    .query_row([id], |r| r.get::<_, i64>(1))
                    .map_err(store::Error::from)
            })
            .unwrap();
    }
    std::hint::black_box(sum);
}

fn raw_snapshot_reads(conn: &Connection, ids: &[i64]) {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Deferred).unwrap();
    std::hint::black_box(read_all(&tx, ids).unwrap());
    tx.commit().unwrap();
}

fn store_snapshot_reads(store: &Store, ids: &[i64]) {
    let sum = store
        .snapshot(|tx| read_all(tx, ids).map_err(store::Error::from))
        .unwrap();
    std::hint::black_box(sum);
}
