//! Our own events, written to the `logs` table. The dashboard logs with `tracing`; a layer turns
//! each event of ours (target `llama_dashboard…`) at or above the configured level into a log
//! entry (`level`, `message`, `source` from the event's `source` field, default `server`) and
//! hands it to one writer task without ever blocking the caller: when the queue is full the
//! entry is counted as dropped. The writer stores entries in batches, publishes each stored
//! entry to the live event hub, and runs the retention that keeps the table bounded.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use store::AsyncStore;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event as TracingEvent, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::db::logs::{self, LogEntry};
use crate::events::{Events, Topic};

/// Entries waiting for the writer before new ones are dropped.
pub const QUEUE: usize = 4096;
/// Entries written per transaction at most.
const BATCH: usize = 256;

/// An entry on its way to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Documented level.
    pub level: &'static str,
    /// Text.
    pub message: String,
    /// Component.
    pub source: String,
}

/// Counters shared by the layer and the writer.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Entries stored.
    pub written: AtomicU64,
    /// Entries dropped because the queue was full or the database failed.
    pub dropped: AtomicU64,
    /// Entries deleted by retention.
    pub pruned: AtomicU64,
}

/// The tracing layer feeding the writer.
#[derive(Debug, Clone)]
pub struct DbLayer {
    queue: mpsc::Sender<Record>,
    min_level: Level,
    stats: Arc<LogStats>,
}

/// A layer and the receiving end the writer drains.
pub fn channel(min_level: Level, stats: Arc<LogStats>) -> (DbLayer, mpsc::Receiver<Record>) {
    let (queue, inbox) = mpsc::channel(QUEUE);
    (
        DbLayer {
            queue,
            min_level,
            stats,
        },
        inbox,
    )
}

/// The documented level of a tracing level.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        _ => "debug",
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    source: Option<String>,
    level: Option<&'static str>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "source" => self.source = Some(value.to_string()),
            "level" => self.level = logs::normalize_level(value),
            "message" => self.message.push_str(value),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "source" => self.source = Some(format!("{value:?}")),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for DbLayer {
    fn on_event(&self, event: &TracingEvent<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > self.min_level || !meta.target().starts_with("llama_dashboard") {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let record = Record {
            level: fields.level.unwrap_or_else(|| level_name(meta.level())),
            message: fields.message + &fields.rest,
            source: fields
                .source
                .unwrap_or_else(|| logs::DEFAULT_SOURCE.to_string()),
        };
        if self.queue.try_send(record).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How much of the table retention keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Entries kept at most.
    pub max_records: u64,
    /// Age in seconds after which an entry goes.
    pub max_age_secs: u64,
    /// How often retention runs.
    pub every: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            max_records: logs::DEFAULT_MAX_RECORDS,
            max_age_secs: logs::DEFAULT_MAX_AGE_SECS,
            every: Duration::from_secs(60),
        }
    }
}

/// Stores a batch in one transaction and returns the stored entries.
async fn store_batch(db: &AsyncStore, batch: Vec<Record>) -> Result<Vec<LogEntry>, store::Error> {
    db.write(move |tx| {
        let now = crate::db::models::now();
        let mut stored = Vec::with_capacity(batch.len());
        for record in batch {
            let id = logs::add(tx, record.level, &record.message, Some(&record.source))?;
            stored.push(LogEntry {
                id,
                level: record.level.to_string(),
                message: record.message,
                source: Some(record.source),
                timestamp: now,
            });
        }
        Ok(stored)
    })
    .await
}

/// Drains the queue into the table until every layer is gone, publishing each stored entry and
/// pruning on schedule. Runs as one task for the life of the server.
pub async fn run_writer(
    db: Arc<AsyncStore>,
    mut inbox: mpsc::Receiver<Record>,
    events: Events,
    stats: Arc<LogStats>,
    retention: Retention,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut prune_timer = tokio::time::interval(retention.every);
    loop {
        let first = tokio::select! {
            record = inbox.recv() => match record {
                Some(record) => record,
                None => break,
            },
            _ = prune_timer.tick() => {
                prune(&db, &stats, retention).await;
                continue;
            }
            _ = crate::app::until_stopped(shutdown.clone()) => {
                // Whatever was logged up to now is stored before the server exits.
                inbox.close();
                match inbox.recv().await {
                    Some(record) => record,
                    None => break,
                }
            }
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match inbox.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        let count = batch.len() as u64;
        match store_batch(&db, batch).await {
            Ok(stored) => {
                stats.written.fetch_add(count, Ordering::Relaxed);
                for entry in stored {
                    events.publish(Topic::Log, json!(entry));
                }
            }
            Err(e) => {
                stats.dropped.fetch_add(count, Ordering::Relaxed);
                eprintln!("llama-dashboard: could not store {count} log entries: {e}");
            }
        }
    }
}

async fn prune(db: &AsyncStore, stats: &LogStats, retention: Retention) {
    let result = db
        .write(move |tx| {
            logs::prune(tx, retention.max_records, retention.max_age_secs)
                .map_err(store::Error::from)
        })
        .await;
    match result {
        Ok(n) => {
            stats.pruned.fetch_add(n as u64, Ordering::Relaxed);
        }
        Err(e) => eprintln!("llama-dashboard: log retention failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_become_records_with_level_and_source() {
        let stats = Arc::new(LogStats::default());
        let (layer, mut inbox) = channel(Level::INFO, Arc::clone(&stats));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(source = "models", model = "a.gguf", "loaded");
            tracing::warn!("disk almost full");
            tracing::debug!("not stored at info");
            tracing::error!(level = "critical", "out of memory");
            tracing::info!(target: "hyper", "not ours");
        });
        let mut got = Vec::new();
        while let Ok(r) = inbox.try_recv() {
            got.push(r);
        }
        assert_eq!(
            got,
            vec![
                Record {
                    level: "info",
                    message: "loaded model=a.gguf".into(),
                    source: "models".into()
                },
                Record {
                    level: "warn",
                    message: "disk almost full".into(),
                    source: "server".into()
                },
                Record {
                    level: "critical",
                    message: "out of memory".into(),
                    source: "server".into()
                },
            ]
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let stats = Arc::new(LogStats::default());
        let (layer, _inbox) = channel(Level::INFO, Arc::clone(&stats));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..QUEUE + 10 {
                tracing::info!("entry {i}");
            }
        });
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 10);
    }
}
