//! Idle unload: a model nobody has used for `idle_unload_seconds` (0, the default, turns it
//! off) is unloaded from llama-server, freeing its memory for the next one. Use is what passes
//! through the dashboard — proxied requests (a request in flight keeps its model busy however
//! long it streams) and loads — so a model in use is never unloaded under a client. A model
//! found loaded without either (loaded by another client directly) counts as used when first
//! seen.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::app::{Shared, until_stopped};
use crate::db::{config, models};
use crate::error::ApiError;
use crate::llama::supervisor::State;

/// How often idle models are looked for.
const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Use {
    last: Instant,
    busy: usize,
}

/// When each model (by catalog id) was last used, and how many requests it serves now.
#[derive(Debug, Default)]
pub struct Activity {
    uses: Mutex<HashMap<String, Use>>,
}

impl Activity {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Use>) -> T) -> T {
        f(&mut self.uses.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn entry<'a>(uses: &'a mut HashMap<String, Use>, id: &str, now: Instant) -> &'a mut Use {
        uses.entry(id.to_string())
            .or_insert(Use { last: now, busy: 0 })
    }

    /// Marks a use now.
    pub fn touch(&self, id: &str) {
        let now = Instant::now();
        self.with(|uses| Self::entry(uses, id, now).last = now);
    }

    /// A request for the model starts.
    pub fn begin(&self, id: &str) {
        let now = Instant::now();
        self.with(|uses| {
            let used = Self::entry(uses, id, now);
            used.last = now;
            used.busy += 1;
        });
    }

    /// A request for the model ended.
    pub fn end(&self, id: &str) {
        let now = Instant::now();
        self.with(|uses| {
            let used = Self::entry(uses, id, now);
            used.last = now;
            used.busy = used.busy.saturating_sub(1);
        });
    }

    /// How long the model has been unused at `now` (a model not seen before starts now); `None`
    /// while a request is in flight.
    pub fn idle_for(&self, id: &str, now: Instant) -> Option<Duration> {
        self.with(|uses| {
            let used = Self::entry(uses, id, now);
            (used.busy == 0).then(|| now.saturating_duration_since(used.last))
        })
    }

    /// Forgets a model (it was unloaded), so its next load starts a fresh idle period.
    pub fn forget(&self, id: &str) {
        self.with(|uses| uses.remove(id));
    }
}

/// The idle limit the settings name; `None` when idle unload is off.
fn limit(settings: &serde_json::Map<String, Value>) -> Option<Duration> {
    settings
        .get("idle_unload_seconds")
        .and_then(Value::as_u64)
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// Unloads idle models until the server stops.
pub async fn run(app: Shared) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = until_stopped(app.shutdown.subscribe()) => return,
        }
        if !matches!(app.llama.state(), State::Ready { .. }) {
            continue;
        }
        let home = app.home.clone();
        let found = app
            .db
            .read(move |conn| {
                let settings = config::get(conn, &home)?;
                let loaded = models::get_all(conn)?
                    .into_iter()
                    .filter(|m| m.status == "loaded")
                    .collect::<Vec<_>>();
                Ok::<_, ApiError>((limit(&settings), loaded))
            })
            .await;
        let Ok((Some(limit), loaded)) = found else {
            continue;
        };
        let now = Instant::now();
        for model in loaded {
            let Some(idle) = app.activity.idle_for(&model.id, now) else {
                continue;
            };
            if idle < limit {
                continue;
            }
            tracing::info!(
                source = "models",
                "unloading {}: unused for {} s (idle_unload_seconds is {})",
                model.name,
                idle.as_secs(),
                limit.as_secs()
            );
            if let Err(e) = crate::api::change_model(&app, &model.id, false).await {
                tracing::warn!(
                    source = "models",
                    "idle unload of {} failed: {}",
                    model.name,
                    e.message
                );
            }
            app.activity.forget(&model.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_in_use_is_never_idle_and_idleness_counts_from_the_last_use() {
        let activity = Activity::default();
        let t0 = Instant::now();
        assert_eq!(
            activity.idle_for("a", t0),
            Some(Duration::ZERO),
            "first seen now"
        );
        activity.begin("a");
        assert_eq!(activity.idle_for("a", t0 + Duration::from_secs(600)), None);
        activity.begin("a");
        activity.end("a");
        assert_eq!(activity.idle_for("a", t0 + Duration::from_secs(600)), None);
        activity.end("a");
        let idle = activity
            .idle_for("a", Instant::now() + Duration::from_secs(30))
            .unwrap();
        assert!(idle >= Duration::from_secs(30) && idle < Duration::from_secs(31));
        activity.forget("a");
        let later = Instant::now() + Duration::from_secs(90);
        assert_eq!(activity.idle_for("a", later), Some(Duration::ZERO));
    }

    #[test]
    fn idle_unload_is_off_at_zero() {
        let mut settings = serde_json::Map::new();
        assert_eq!(limit(&settings), None);
        settings.insert("idle_unload_seconds".into(), serde_json::json!(0));
        assert_eq!(limit(&settings), None);
        settings.insert("idle_unload_seconds".into(), serde_json::json!(90));
        assert_eq!(limit(&settings), Some(Duration::from_secs(90)));
    }
}
