//! The catalog as the proxy sees it: every request names a model, and looking it up in SQLite
//! each time (a hop to the blocking pool, and under a burst dozens of fresh read connections)
//! was most of what the proxy added to the time to first token. The rows are kept in memory and
//! no request waits for the database to use them:
//!
//! - after a write of this process (the store's generation moved) or after [`MAX_AGE`] (for
//!   writes by other processes, such as a CLI scan), the rows in hand still answer, and one read
//!   in the background brings them up to date, however many requests arrive meanwhile;
//! - a name they do not hold is looked up afresh before the answer says it is unknown.
//!
//! A row a moment out of date costs little: the id and name route the request, and the status
//! only decides whether the router is asked first (the status itself is kept by reconcile).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::AsyncStore;

use crate::app::Shared;
use crate::db::models::{self, Model};
use crate::error::ApiError;

/// How long rows are used before they are read again in the background.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// The cached rows.
#[derive(Debug, Default)]
pub struct Catalog {
    cached: Mutex<Option<Snapshot>>,
    /// One read of the rows at a time; the others wait for it and use what it read.
    reading: tokio::sync::Mutex<()>,
    /// A background read is under way.
    refreshing: AtomicBool,
}

#[derive(Debug)]
struct Snapshot {
    models: Arc<Vec<Arc<Model>>>,
    generation: u64,
    read_at: Instant,
}

/// The model `requested` names: by id, else by name, else by name without `.gguf` (the first
/// by newest in the catalog when several match). `None` when none does, after reading the
/// catalog afresh.
pub async fn resolve(app: &Shared, requested: &str) -> Result<Option<Arc<Model>>, ApiError> {
    let catalog = &app.catalog;
    let asked_at = Instant::now();
    if let Some((rows, current)) = catalog.held(app.db.generation())
        && let Some(found) = find(&rows, requested)
    {
        if !current && !catalog.refreshing.swap(true, Ordering::AcqRel) {
            let app = Arc::clone(app);
            tokio::spawn(async move {
                if let Err(e) = app.catalog.read(&app.db, Instant::now()).await {
                    tracing::debug!(
                        source = "proxy",
                        "could not read the catalog: {}",
                        e.message
                    );
                }
                app.catalog.refreshing.store(false, Ordering::Release);
            });
        }
        return Ok(Some(Arc::clone(found)));
    }
    let rows = catalog.read(&app.db, asked_at).await?;
    Ok(find(&rows, requested).cloned())
}

impl Catalog {
    /// The rows in hand, and whether they are current: no write of ours came after them and
    /// they are younger than [`MAX_AGE`].
    fn held(&self, generation: u64) -> Option<(Arc<Vec<Arc<Model>>>, bool)> {
        let cached = self.cached.lock().ok()?;
        let snapshot = cached.as_ref()?;
        let current = snapshot.generation == generation && snapshot.read_at.elapsed() < MAX_AGE;
        Some((Arc::clone(&snapshot.models), current))
    }

    /// Rows read no earlier than `not_before` and after every write of ours: the ones another
    /// task read while this one waited its turn, or a new read. Each read is kept under the
    /// generation seen before it, so a write that lands during it makes the next lookup read
    /// again.
    async fn read(
        &self,
        db: &AsyncStore,
        not_before: Instant,
    ) -> Result<Arc<Vec<Arc<Model>>>, ApiError> {
        let _turn = self.reading.lock().await;
        let generation = db.generation();
        if let Ok(cached) = self.cached.lock()
            && let Some(snapshot) = cached.as_ref()
            && snapshot.generation == generation
            && snapshot.read_at >= not_before
        {
            return Ok(Arc::clone(&snapshot.models));
        }
        let read_at = Instant::now();
        let rows = db
            .read(|conn| models::get_all(conn).map_err(ApiError::from))
            .await?;
        let rows = Arc::new(rows.into_iter().map(Arc::new).collect::<Vec<_>>());
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some(Snapshot {
                models: Arc::clone(&rows),
                generation,
                read_at,
            });
        }
        Ok(rows)
    }
}

/// The row `requested` names, in the order [`Catalog::resolve`] documents.
fn find<'a>(rows: &'a [Arc<Model>], requested: &str) -> Option<&'a Arc<Model>> {
    rows.iter().find(|m| m.id == requested).or_else(|| {
        rows.iter()
            .find(|m| m.name == requested || m.name.strip_suffix(".gguf") == Some(requested))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: &str, name: &str) -> Arc<Model> {
        Arc::new(Model {
            id: id.into(),
            name: name.into(),
            ..Model::default()
        })
    }

    #[test]
    fn ids_win_over_names_and_the_extension_is_optional() {
        let rows = vec![
            model("a1", "llama.gguf"),
            model("llama", "other.gguf"),
            model("b2", "qwen.gguf"),
        ];
        assert_eq!(find(&rows, "b2").map(|m| m.id.as_str()), Some("b2"));
        assert_eq!(find(&rows, "qwen.gguf").map(|m| m.id.as_str()), Some("b2"));
        assert_eq!(find(&rows, "qwen").map(|m| m.id.as_str()), Some("b2"));
        // `llama` is an id and the stem of another model's name: the id wins.
        assert_eq!(find(&rows, "llama").map(|m| m.id.as_str()), Some("llama"));
        assert!(find(&rows, "mistral").is_none());
        assert!(find(&rows, "").is_none());
    }
}
