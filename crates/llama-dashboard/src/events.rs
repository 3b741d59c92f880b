//! The live event hub: one broadcast channel that the sampler, the log writer and every change
//! to the catalog publish to, and that each server-sent-events stream subscribes to. A sample is
//! taken once and sent to every open dashboard, so the cost does not grow with their number.

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

/// Events kept for a slow subscriber before it starts missing them.
const BACKLOG: usize = 1024;

/// What an event is about; the SSE event name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    /// A new metrics sample.
    Metrics,
    /// A new log entry.
    Log,
    /// A model row changed, or was deleted.
    Model,
    /// A scan or cleanup changed the catalog as a whole.
    Catalog,
    /// The owned llama-server changed state (starting, ready, crashed, stopped, …).
    Server,
    /// A proxied request finished (time to first token, tokens, tokens per second).
    Request,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 6] = [
        Topic::Metrics,
        Topic::Log,
        Topic::Model,
        Topic::Catalog,
        Topic::Server,
        Topic::Request,
    ];

    /// The SSE event name.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Metrics => "metrics",
            Topic::Log => "log",
            Topic::Model => "model",
            Topic::Catalog => "catalog",
            Topic::Server => "server",
            Topic::Request => "request",
        }
    }

    /// The topic a name stands for (`logs` is accepted for `log`).
    pub fn parse(name: &str) -> Option<Topic> {
        match name.trim() {
            "metrics" => Some(Topic::Metrics),
            "log" | "logs" => Some(Topic::Log),
            "model" | "models" => Some(Topic::Model),
            "catalog" => Some(Topic::Catalog),
            "server" => Some(Topic::Server),
            "request" | "requests" => Some(Topic::Request),
            _ => None,
        }
    }
}

/// One event: its topic and JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What it is about.
    pub topic: Topic,
    /// The payload, sent as the SSE `data:` line.
    pub data: Value,
}

/// The hub. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Events {
    sender: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Events {
        Events::new()
    }
}

impl Events {
    /// A hub with nobody listening.
    pub fn new() -> Events {
        Events {
            sender: broadcast::channel(BACKLOG).0,
        }
    }

    /// Publishes an event to every current subscriber (none is fine).
    pub fn publish(&self, topic: Topic, data: Value) {
        let _ = self.sender.send(Event { topic, data });
    }

    /// A new subscription that receives events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// How many subscriptions are open.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}
