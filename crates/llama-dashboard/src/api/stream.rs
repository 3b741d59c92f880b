//! `/api/events`: server-sent events for live metrics, log entries and catalog changes. Each
//! stream is a subscription to the one event hub; `?topics=metrics,log` narrows it. A new
//! stream first gets the latest metrics sample, so a chart has a point at once. A subscriber too
//! slow to keep up is told how many events it missed (`event: lagged`) and carries on.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::Params;
use crate::app::Shared;
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, Topic};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    topics: Option<String>,
}

fn parse_topics(text: Option<&str>) -> ApiResult<Vec<Topic>> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(Topic::ALL.to_vec());
    };
    text.split(',')
        .map(|name| {
            Topic::parse(name).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_topic",
                    format!(
                        "`{}` is not a topic; use metrics, log, model, catalog, server or request",
                        name.trim()
                    ),
                )
            })
        })
        .collect()
}

fn sse(event: &Event) -> SseEvent {
    SseEvent::default()
        .event(event.topic.name())
        .data(event.data.to_string())
}

pub(super) async fn events(
    State(app): State<Shared>,
    Params(q): Params<EventsQuery>,
) -> ApiResult<Response> {
    let topics = parse_topics(q.topics.as_deref())?;
    let receiver = app.events.subscribe();
    let first: Vec<Result<SseEvent, Infallible>> = match app.latest() {
        Some(sample) if topics.contains(&Topic::Metrics) => vec![Ok(sse(&Event {
            topic: Topic::Metrics,
            data: json!(sample),
        }))],
        _ => Vec::new(),
    };
    let live = stream::unfold(receiver, move |mut receiver| {
        let topics = topics.clone();
        async move {
            loop {
                match receiver.recv().await {
                    Ok(event) if topics.contains(&event.topic) => {
                        return Some((Ok(sse(&event)), receiver));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        let note = SseEvent::default()
                            .event("lagged")
                            .data(json!({"missed": missed}).to_string());
                        return Some((Ok(note), receiver));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    let stopping = crate::app::until_stopped(app.shutdown.subscribe());
    let all: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(stream::iter(first).chain(live).take_until(stopping));
    Ok(Sse::new(all)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
