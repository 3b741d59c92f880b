//! `portunus-client run`: keep forwarding, follow the server's desired state, report traffic.
//!
//! The order of things is the point of this module. At start the client applies the rule set
//! it persisted last time, *before* dialling, so a client restarted during a control-plane
//! outage forwards at once. It then holds one control session at a time: every `rules` push
//! whose generation (or content) differs from what runs is applied, persisted and acknowledged
//! with a `status`; usage is drained from the forwarder every few seconds (connected or not)
//! and sent in batches that count as delivered only once a following ping is answered. When the
//! session breaks, nothing is stopped: the client waits a jittered, growing delay and dials
//! again. Only two things stop forwarding: SIGTERM/SIGINT (after a last usage report) and a
//! terminal refusal such as a revocation, after which the persisted rules are deleted too, so a
//! revoked client cannot resurrect them at its next start.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use portunus_core::forward::{Forwarder, ForwarderConfig};
use portunus_core::wire::{
    ClientMessage, PROTOCOL_VERSION, RuleSpec, RuleState, RuleStatus, ServerMessage, UsageSample,
};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, sleep_until, timeout};

use crate::backoff::Backoff;
use crate::bundle::Bundle;
use crate::events::emit;
use crate::exit;
use crate::session::{Conn, DialError, dial};
use crate::signals::Signals;
use crate::state::StateFile;
use crate::usage::{self, UsageBook};

/// Codes that end the client: retrying with the same bundle cannot help.
pub const TERMINAL_CODES: [&str; 4] = [
    "unauthorized",
    "client_revoked",
    "credential_revoked",
    "unsupported_version",
];
/// Terminal codes that mean this client may no longer forward at all.
const REVOKED_CODES: [&str; 3] = ["unauthorized", "client_revoked", "credential_revoked"];

/// How often the client pings by default (the server drops sessions silent for 90 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How often usage is drained and reported by default.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// How often failed rules are retried while connected.
pub const RETRY_FAILED: Duration = Duration::from_secs(30);
/// How long the last usage report at shutdown may take.
const FINAL_REPORT: Duration = Duration::from_secs(3);

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Credentials and server.
    pub bundle: Bundle,
    /// Where the applied rules are kept.
    pub state: StateFile,
    /// Ping interval.
    pub ping_interval: Duration,
    /// Usage report interval.
    pub report_interval: Duration,
}

impl Options {
    /// Options with the default intervals.
    pub fn new(bundle: Bundle, state: StateFile) -> Options {
        Options {
            bundle,
            state,
            ping_interval: PING_INTERVAL,
            report_interval: REPORT_INTERVAL,
        }
    }

    /// A server silent for this long is considered gone (two and a half pings).
    fn dead_after(&self) -> Duration {
        self.ping_interval.mul_f64(2.5)
    }
}

/// How a session (or the attempt to open one) ended.
#[derive(Debug)]
enum Ended {
    /// A signal asked the client to stop.
    Stop(&'static str),
    /// The server refused this client for good.
    Terminal { code: String, message: String },
    /// The connection was lost or refused for now; try again.
    Lost(String),
}

/// What `portunus-client status` shows, shared with the task that publishes it.
#[derive(Debug, Default)]
struct Live {
    connected: bool,
    generation: Option<u64>,
    rules: Vec<RuleSpec>,
    statuses: Vec<RuleStatus>,
}

/// The running client.
#[derive(Debug)]
struct Agent {
    opts: Options,
    forwarder: Forwarder,
    book: Arc<Mutex<UsageBook>>,
    live: Arc<Mutex<Live>>,
    /// The generation running now (`None` before the first apply).
    generation: Option<u64>,
    rules: Vec<RuleSpec>,
    statuses: Vec<RuleStatus>,
    nonce: u64,
    stopped: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes the status snapshot for `portunus-client status`.
fn publish(forwarder: &Forwarder, live: &Mutex<Live>, client_id: &str, path: &std::path::Path) {
    let snapshot = {
        let live = lock(live);
        crate::status::Snapshot {
            client_id: client_id.to_string(),
            pid: std::process::id(),
            updated_at_ms: usage::now_ms(),
            connected: live.connected,
            generation: live.generation,
            rules: crate::status::rows(&live.rules, &live.statuses, &forwarder.stats()),
        }
    };
    if let Err(e) = crate::status::write(path, &snapshot) {
        emit(
            "status_not_written",
            &[("path", &path.display()), ("error", &e)],
        );
    }
}

/// Moves the forwarder's byte counts into the book under the current minute.
fn collect(forwarder: &Forwarder, book: &Mutex<UsageBook>) {
    let taken = forwarder.take_usage();
    if taken.is_empty() {
        return;
    }
    let now = usage::now_ms();
    let mut book = lock(book);
    for u in taken {
        book.add(&u.owner_id, now, u.bytes_in, u.bytes_out);
    }
}

fn count(statuses: &[RuleStatus], state: RuleState) -> usize {
    statuses.iter().filter(|s| s.state == state).count()
}

impl Agent {
    fn new(opts: Options) -> Agent {
        Agent {
            opts,
            forwarder: Forwarder::new(ForwarderConfig::default()),
            book: Arc::new(Mutex::new(UsageBook::default())),
            live: Arc::new(Mutex::new(Live::default())),
            generation: None,
            rules: Vec::new(),
            statuses: Vec::new(),
            nonce: 0,
            stopped: false,
        }
    }

    /// Shares what runs now with the status publisher.
    fn share(&self, connected: bool) {
        let mut live = lock(&self.live);
        live.connected = connected;
        live.generation = self.generation;
        live.rules.clone_from(&self.rules);
        live.statuses.clone_from(&self.statuses);
    }

    fn next_nonce(&mut self) -> u64 {
        self.nonce = self.nonce.wrapping_add(1);
        self.nonce
    }

    /// Applies the persisted rules, if any.
    async fn restore(&mut self) {
        match self.opts.state.load() {
            Ok(Some(saved)) => {
                self.apply(saved.generation, saved.rules, "persisted").await;
            }
            Ok(None) => emit(
                "no_persisted_rules",
                &[("path", &self.opts.state.path().display())],
            ),
            Err(reason) => emit("persisted_rules_unusable", &[("reason", &reason)]),
        }
    }

    /// Runs `rules` as `generation` unless exactly that already runs; returns whether anything
    /// was applied. Rules from the server are persisted after they are applied.
    async fn apply(&mut self, generation: u64, rules: Vec<RuleSpec>, source: &str) -> bool {
        if self.generation == Some(generation) && self.rules == rules {
            emit(
                "rules_unchanged",
                &[("generation", &generation), ("rules", &rules.len())],
            );
            return false;
        }
        let same = |a: &RuleSpec| self.rules.iter().find(|b| b.id == a.id);
        let added = rules.iter().filter(|r| same(r).is_none()).count();
        let changed = rules
            .iter()
            .filter(|r| same(r).is_some_and(|old| old != *r))
            .count();
        let removed = self
            .rules
            .iter()
            .filter(|old| !rules.iter().any(|r| r.id == old.id))
            .count();
        let statuses = self.forwarder.apply(&rules).await;
        emit(
            "rules_applied",
            &[
                ("generation", &generation),
                ("active", &count(&statuses, RuleState::Active)),
                ("failed", &count(&statuses, RuleState::Failed)),
                ("added", &added),
                ("changed", &changed),
                ("removed", &removed),
                ("source", &source),
            ],
        );
        for s in statuses.iter().filter(|s| s.state == RuleState::Failed) {
            emit(
                "rule_failed",
                &[
                    ("rule", &s.rule_id),
                    ("reason", &s.reason.as_deref().unwrap_or("unknown")),
                ],
            );
        }
        if source != "persisted"
            && let Err(e) = self.opts.state.save(generation, &rules)
        {
            emit(
                "persist_failed",
                &[("path", &self.opts.state.path().display()), ("error", &e)],
            );
        }
        self.generation = Some(generation);
        self.rules = rules;
        self.statuses = statuses;
        let connected = lock(&self.live).connected;
        self.share(connected);
        true
    }

    /// Re-applies the running set when some rule failed (a port may have been freed since);
    /// returns whether any status changed.
    async fn retry_failed(&mut self) -> bool {
        if count(&self.statuses, RuleState::Failed) == 0 {
            return false;
        }
        let statuses = self.forwarder.apply(&self.rules).await;
        if statuses == self.statuses {
            return false;
        }
        emit(
            "rules_retried",
            &[
                ("active", &count(&statuses, RuleState::Active)),
                ("failed", &count(&statuses, RuleState::Failed)),
            ],
        );
        self.statuses = statuses;
        self.share(true);
        true
    }

    /// Stops forwarding (once).
    async fn stop_forwarding(&mut self) {
        if !self.stopped {
            self.stopped = true;
            self.forwarder.shutdown().await;
        }
    }

    /// Dials, says hello and waits for the welcome.
    async fn connect(&mut self) -> Result<Conn, Ended> {
        let bundle = &self.opts.bundle;
        let mut conn = dial(&bundle.server, &bundle.pin).await.map_err(|e| {
            if let DialError::PinMismatch(_) = e {
                // Keep forwarding and keep trying: the operator must look, but cutting traffic
                // would not help anyone.
                emit("pin_mismatch", &[("server", &bundle.server)]);
            }
            Ended::Lost(e.to_string())
        })?;
        let hello = ClientMessage::Hello {
            token: bundle.token.clone(),
            applied_generation: self.generation.unwrap_or(0),
            version: PROTOCOL_VERSION,
        };
        conn.send(&hello)
            .await
            .map_err(|e| Ended::Lost(format!("sending hello failed: {e}")))?;
        match conn.answer().await {
            Ok(Some(ServerMessage::Welcome {
                client_id,
                server_version,
            })) => {
                self.share(true);
                emit(
                    "connected",
                    &[
                        ("server", &bundle.server),
                        ("client_id", &client_id),
                        ("server_version", &server_version),
                    ],
                );
                Ok(conn)
            }
            Ok(Some(ServerMessage::Error { code, message, .. })) => Err(refusal(code, message)),
            Ok(Some(other)) => Err(Ended::Lost(format!(
                "expected welcome, got {}",
                crate::enroll::kind(&other)
            ))),
            Ok(None) => Err(Ended::Lost("the server closed the connection".into())),
            Err(e) => Err(Ended::Lost(format!("no welcome: {e}"))),
        }
    }

    /// Drains the forwarder and sends what the book holds, each batch followed by a ping whose
    /// pong confirms it; the batches go to `in_flight` until then.
    async fn report(
        &mut self,
        conn: &mut Conn,
        in_flight: &mut Vec<(u64, Vec<UsageSample>)>,
    ) -> Result<(), Ended> {
        collect(&self.forwarder, &self.book);
        loop {
            let batch = lock(&self.book).take_batch(usage::BATCH);
            if batch.is_empty() {
                return Ok(());
            }
            let nonce = self.next_nonce();
            let msg = ClientMessage::Usage {
                samples: batch.clone(),
            };
            in_flight.push((nonce, batch));
            conn.send(&msg)
                .await
                .map_err(|e| Ended::Lost(format!("sending usage failed: {e}")))?;
            conn.send(&ClientMessage::Ping { nonce })
                .await
                .map_err(|e| Ended::Lost(format!("sending ping failed: {e}")))?;
        }
    }

    async fn send_status(&mut self, conn: &mut Conn) -> Result<(), Ended> {
        let Some(generation) = self.generation else {
            return Ok(());
        };
        conn.send(&ClientMessage::Status {
            generation,
            rules: self.statuses.clone(),
        })
        .await
        .map_err(|e| Ended::Lost(format!("sending status failed: {e}")))
    }

    /// Handles one frame of an open session.
    async fn handle(
        &mut self,
        conn: &mut Conn,
        frame: std::io::Result<Option<ServerMessage>>,
        in_flight: &mut Vec<(u64, Vec<UsageSample>)>,
    ) -> Result<(), Ended> {
        match frame {
            Ok(Some(ServerMessage::Rules { generation, rules })) => {
                self.apply(generation, rules, "server").await;
                self.send_status(conn).await
            }
            Ok(Some(ServerMessage::Pong { nonce })) => {
                // Frames are handled in order: this pong confirms every batch sent before it.
                if let Some(i) = in_flight.iter().position(|(n, _)| *n == nonce) {
                    in_flight.drain(..=i);
                }
                Ok(())
            }
            Ok(Some(ServerMessage::Error { code, message, .. })) => Err(refusal(code, message)),
            Ok(Some(other)) => {
                emit(
                    "unexpected_message",
                    &[("type", &crate::enroll::kind(&other))],
                );
                Ok(())
            }
            Ok(None) => Err(Ended::Lost("the server closed the connection".into())),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(Ended::Lost("the connection to the server broke off".into()))
            }
            Err(e) => Err(Ended::Lost(format!("read failed: {e}"))),
        }
    }

    /// Runs an open session until it ends.
    async fn session(&mut self, conn: &mut Conn, signals: &mut Signals) -> Ended {
        let mut in_flight: Vec<(u64, Vec<UsageSample>)> = Vec::new();
        let ended = self.session_loop(conn, signals, &mut in_flight).await;
        if let Ended::Stop(_) = ended {
            self.final_report(conn, &mut in_flight).await;
        }
        // Whatever the server did not confirm is sent again next time.
        let mut book = lock(&self.book);
        for (_, batch) in in_flight.drain(..) {
            book.restore(batch);
        }
        ended
    }

    async fn session_loop(
        &mut self,
        conn: &mut Conn,
        signals: &mut Signals,
        in_flight: &mut Vec<(u64, Vec<UsageSample>)>,
    ) -> Ended {
        let start = Instant::now();
        let mut ping = interval_at(start + self.opts.ping_interval, self.opts.ping_interval);
        let mut report = interval_at(start + self.opts.report_interval, self.opts.report_interval);
        let mut retry = interval_at(start + RETRY_FAILED, RETRY_FAILED);
        let mut last_heard = Instant::now();
        // Anything left from while the server was away goes out at once.
        if let Err(ended) = self.report(conn, in_flight).await {
            return ended;
        }
        loop {
            let step = tokio::select! {
                name = signals.stop() => return Ended::Stop(name),
                frame = conn.recv() => {
                    last_heard = Instant::now();
                    self.handle(conn, frame, in_flight).await
                }
                _ = ping.tick() => {
                    let nonce = self.next_nonce();
                    conn.send(&ClientMessage::Ping { nonce })
                        .await
                        .map_err(|e| Ended::Lost(format!("sending ping failed: {e}")))
                }
                _ = report.tick() => self.report(conn, in_flight).await,
                _ = retry.tick() => {
                    if self.retry_failed().await {
                        self.send_status(conn).await
                    } else {
                        Ok(())
                    }
                }
                () = sleep_until(last_heard + self.opts.dead_after()) => Err(Ended::Lost(format!(
                    "nothing heard from the server for {} s",
                    self.opts.dead_after().as_secs()
                ))),
            };
            if let Err(ended) = step {
                return ended;
            }
        }
    }

    /// At shutdown: stops forwarding, then reports the last bytes and waits (briefly) for the
    /// server to confirm them.
    async fn final_report(
        &mut self,
        conn: &mut Conn,
        in_flight: &mut Vec<(u64, Vec<UsageSample>)>,
    ) {
        self.stop_forwarding().await;
        let confirmed = timeout(FINAL_REPORT, async {
            self.report(conn, in_flight).await?;
            if in_flight.is_empty() {
                return Ok(false);
            }
            while !in_flight.is_empty() {
                let frame = conn.recv().await;
                if let Ok(Some(ServerMessage::Rules { .. })) = frame {
                    continue; // Shutting down: nothing to apply any more.
                }
                self.handle(conn, frame, in_flight).await?;
            }
            Ok::<bool, Ended>(true)
        })
        .await;
        match confirmed {
            Ok(Ok(false)) => {}
            Ok(Ok(true)) => emit("usage_reported", &[("final", &true)]),
            Ok(Err(Ended::Lost(reason))) => {
                emit("usage_unreported", &[("reason", &reason)]);
            }
            Ok(Err(_)) => emit("usage_unreported", &[("reason", &"refused")]),
            Err(_) => emit(
                "usage_unreported",
                &[("reason", &"no confirmation in time")],
            ),
        }
    }
}

fn interval_at(start: Instant, period: Duration) -> tokio::time::Interval {
    let mut i = tokio::time::interval_at(start, period.max(Duration::from_millis(10)));
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

/// An error frame from the server: terminal for the codes in [`TERMINAL_CODES`], otherwise a
/// reason to reconnect (including errors the server marks terminal that this client does not
/// know: staying up and forwarding is the safer way to be wrong).
fn refusal(code: String, message: String) -> Ended {
    if TERMINAL_CODES.contains(&code.as_str()) {
        Ended::Terminal { code, message }
    } else {
        Ended::Lost(format!("{code}: {message}"))
    }
}

/// Runs the client until a signal or a terminal refusal; returns the exit status.
pub async fn run(opts: Options, signals: &mut Signals) -> u8 {
    let mut agent = Agent::new(opts);
    emit(
        "starting",
        &[
            ("client_id", &agent.opts.bundle.client_id),
            ("server", &agent.opts.bundle.server),
            ("version", &env!("CARGO_PKG_VERSION")),
        ],
    );
    agent.restore().await;
    match agent.opts.state.take_usage() {
        Ok(kept) if !kept.is_empty() => {
            emit("usage_restored", &[("samples", &kept.len())]);
            lock(&agent.book).restore(kept);
        }
        Ok(_) => {}
        Err(reason) => emit("usage_unreadable", &[("reason", &reason)]),
    }

    // Usage is drained on a schedule whether or not a session is open, so bytes forwarded while
    // the server is away are booked under the minute they happened.
    // The same tick publishes the live status for `portunus-client status`.
    let status_path = agent.opts.state.status_path().to_path_buf();
    let collector = {
        let (forwarder, book) = (agent.forwarder.clone(), Arc::clone(&agent.book));
        let live = Arc::clone(&agent.live);
        let client_id = agent.opts.bundle.client_id.clone();
        let path = status_path.clone();
        let period = agent.opts.report_interval;
        tokio::spawn(async move {
            let mut tick = interval(period.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                collect(&forwarder, &book);
                publish(&forwarder, &live, &client_id, &path);
            }
        })
    };

    let mut backoff = Backoff::default();
    let ended = loop {
        let attempt = tokio::select! {
            name = signals.stop() => break Ended::Stop(name),
            attempt = agent.connect() => attempt,
        };
        let reason = match attempt {
            Ok(mut conn) => {
                let began = Instant::now();
                let ended = agent.session(&mut conn, signals).await;
                agent.share(false);
                conn.close().await;
                backoff.session_ended(began.elapsed());
                match ended {
                    Ended::Lost(reason) => {
                        emit("disconnected", &[("reason", &reason)]);
                        continue_after(&mut backoff, signals).await
                    }
                    other => break other,
                }
            }
            Err(Ended::Lost(reason)) => {
                emit("connect_failed", &[("reason", &reason)]);
                continue_after(&mut backoff, signals).await
            }
            Err(other) => break other,
        };
        if let Some(name) = reason {
            break Ended::Stop(name);
        }
    };
    collector.abort();
    let _ = collector.await;
    let _ = std::fs::remove_file(&status_path);

    match ended {
        Ended::Stop(name) => {
            agent.stop_forwarding().await;
            collect(&agent.forwarder, &agent.book);
            let (unsent, bytes_in, bytes_out) = {
                let mut book = lock(&agent.book);
                let (bytes_in, bytes_out) = book.totals();
                (book.take_batch(usize::MAX), bytes_in, bytes_out)
            };
            if !unsent.is_empty() {
                // Reported after the next start.
                let kept = agent.opts.state.save_usage(unsent);
                emit(
                    "usage_unsent",
                    &[
                        ("bytes_in", &bytes_in),
                        ("bytes_out", &bytes_out),
                        ("kept", &kept.is_ok()),
                    ],
                );
            }
            emit("shutdown", &[("signal", &name)]);
            exit::OK
        }
        Ended::Terminal { code, message } => {
            agent.stop_forwarding().await;
            if REVOKED_CODES.contains(&code.as_str())
                && let Err(e) = agent.opts.state.remove()
            {
                emit("persisted_rules_not_removed", &[("error", &e)]);
            }
            emit("refused", &[("code", &code), ("message", &message)]);
            let hint = match code.as_str() {
                "unsupported_version" => {
                    "upgrade portunus-client (or the server) so they speak the same protocol"
                }
                _ => {
                    "forwarding has stopped; enroll this client again with a new code if it should rejoin"
                }
            };
            eprintln!("error: the server refused this client ({code}): {message}; {hint}");
            exit::NO_PERM
        }
        Ended::Lost(_) => exit::FAILURE,
    }
}

/// Waits out the next backoff delay (logging it); `Some(signal)` if a stop signal came first.
async fn continue_after(backoff: &mut Backoff, signals: &mut Signals) -> Option<&'static str> {
    let delay = backoff.next_delay();
    emit(
        "reconnecting",
        &[("in", &format!("{:.1}s", delay.as_secs_f64()))],
    );
    tokio::select! {
        name = signals.stop() => Some(name),
        () = sleep(delay) => None,
    }
}
