//! The supervisor of the one `llama-server` the dashboard owns. It starts the process, captures
//! its output into the log (source `llama-server`), polls `/health` until the server is ready,
//! restarts it with exponential backoff when it dies, and stops it — only the child it started,
//! by its process id: SIGTERM first, SIGKILL after a grace period. It never looks a process up
//! by its port.
//!
//! The current state is published on a watch channel, so the API and live dashboards see
//! `starting`, `ready`, `crashed` (with the reason and the wait before the next try), `failed`
//! and `stopped` as they happen.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::launch::Launch;
use super::upstream::Upstream;

/// What the owned llama-server is doing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Not running.
    Stopped,
    /// Started, not answering `/health` yet.
    Starting {
        /// Its process id.
        pid: u32,
    },
    /// Answering `/health`.
    Ready {
        /// Its process id.
        pid: u32,
        /// Where it listens.
        url: String,
    },
    /// Being stopped.
    Stopping {
        /// Its process id.
        pid: u32,
    },
    /// It exited on its own; it is started again after `restart_in_ms`.
    Crashed {
        /// How it ended.
        reason: String,
        /// Wait before the next start.
        restart_in_ms: u64,
        /// Starts since it was last ready.
        attempt: u32,
    },
    /// It cannot be run (missing binary, never became ready, crashed too often).
    Failed {
        /// Why.
        reason: String,
    },
}

impl State {
    /// The process id, while there is a process.
    pub fn pid(&self) -> Option<u32> {
        match self {
            State::Starting { pid } | State::Ready { pid, .. } | State::Stopping { pid } => {
                Some(*pid).filter(|p| *p != 0)
            }
            _ => None,
        }
    }
}

/// Timings of the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long `stop` waits after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// How long a start may take to answer `/health`.
    pub ready_timeout: Duration,
    /// First wait before restarting after a crash; doubles up to `max_backoff`.
    pub backoff: Duration,
    /// Longest wait between restarts.
    pub max_backoff: Duration,
    /// Consecutive crashes without becoming ready before giving up.
    pub max_attempts: u32,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            grace: Duration::from_secs(10),
            ready_timeout: Duration::from_secs(120),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_attempts: 5,
        }
    }
}

/// Why a command to the supervisor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// `start` while it runs.
    #[error("llama-server is already running; stop or restart it")]
    AlreadyRunning,
    /// It failed to become ready.
    #[error("llama-server did not start: {0}")]
    StartFailed(String),
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// The supervisor; cloning shares it.
#[derive(Clone)]
pub struct Supervisor {
    state: Arc<watch::Sender<State>>,
    running: Arc<tokio::sync::Mutex<Option<Running>>>,
    timing: Timing,
    started_at: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("state", &*self.state.borrow())
            .field("timing", &self.timing)
            .finish()
    }
}

impl Supervisor {
    /// A supervisor with nothing running.
    pub fn new(timing: Timing) -> Supervisor {
        Supervisor {
            state: Arc::new(watch::channel(State::Stopped).0),
            running: Arc::new(tokio::sync::Mutex::new(None)),
            timing,
            started_at: Arc::new(Mutex::new(None)),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Changes of state from now on.
    pub fn subscribe(&self) -> watch::Receiver<State> {
        self.state.subscribe()
    }

    /// Seconds since the running server became ready, if it is.
    pub fn uptime(&self) -> Option<f64> {
        let ready = matches!(*self.state.borrow(), State::Ready { .. });
        let since = *self.started_at.lock().ok()?;
        since.filter(|_| ready).map(|t| t.elapsed().as_secs_f64())
    }

    /// Starts llama-server and waits until it answers `/health`, crashes or fails.
    pub async fn start(&self, launch: Launch) -> Result<(), SupervisorError> {
        let mut running = self.running.lock().await;
        if running.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return Err(SupervisorError::AlreadyRunning);
        }
        self.state.send_replace(State::Starting { pid: 0 });
        let mut changes = self.state.subscribe();
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(supervise(
            launch,
            Arc::clone(&self.state),
            self.timing,
            Arc::clone(&self.started_at),
            stop_rx,
        ));
        *running = Some(Running { stop, task });
        drop(running);
        let outcome = changes
            .wait_for(|s| {
                matches!(
                    s,
                    State::Ready { .. }
                        | State::Failed { .. }
                        | State::Crashed { .. }
                        | State::Stopped
                )
            })
            .await
            .map(|s| s.clone());
        match outcome {
            Ok(State::Ready { .. }) => Ok(()),
            Ok(State::Failed { reason } | State::Crashed { reason, .. }) => {
                Err(SupervisorError::StartFailed(reason))
            }
            _ => Err(SupervisorError::StartFailed(
                "the supervisor stopped".into(),
            )),
        }
    }

    /// Stops the server if it runs (SIGTERM, then SIGKILL after the grace period) and waits for
    /// it. Whether there was one to stop.
    pub async fn stop(&self) -> bool {
        let Some(running) = self.running.lock().await.take() else {
            return false;
        };
        let _ = running.stop.send(());
        let _ = running.task.await;
        self.state.send_replace(State::Stopped);
        true
    }

    /// Stops, then starts with `launch`.
    pub async fn restart(&self, launch: Launch) -> Result<(), SupervisorError> {
        self.stop().await;
        self.start(launch).await
    }
}

/// How a running child ended.
enum Ended {
    /// We were told to stop (and did).
    Stopped,
    /// It exited on its own.
    Exited(String),
    /// It never became ready.
    NotReady(String),
}

async fn supervise(
    launch: Launch,
    state: Arc<watch::Sender<State>>,
    timing: Timing,
    started_at: Arc<Mutex<Option<Instant>>>,
    mut stop: oneshot::Receiver<()>,
) {
    let upstream = Upstream::new(&launch.base_url());
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let mut child = match spawn(&launch) {
            Ok(child) => child,
            Err(reason) => {
                tracing::error!(source = "llama-server", "{reason}");
                state.send_replace(State::Failed { reason });
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        tracing::info!(
            source = "llama-server",
            "started llama-server (pid {pid}): {} {}",
            launch.program.display(),
            launch.args.join(" ")
        );
        state.send_replace(State::Starting { pid });
        let ended = run_child(
            &mut child,
            pid,
            &upstream,
            &state,
            timing,
            &started_at,
            &mut stop,
        )
        .await;
        if let Ok(mut t) = started_at.lock() {
            *t = None;
        }
        let reason = match ended {
            Ended::Stopped => {
                tracing::info!(source = "llama-server", "stopped llama-server (pid {pid})");
                state.send_replace(State::Stopped);
                return;
            }
            Ended::NotReady(reason) => {
                terminate(&mut child, timing.grace).await;
                reason
            }
            Ended::Exited(reason) => reason,
        };
        if matches!(*state.borrow(), State::Ready { .. }) {
            attempt = 1;
        }
        if attempt >= timing.max_attempts {
            let reason = format!("{reason}; gave up after {attempt} attempts");
            tracing::error!(source = "llama-server", "{reason}");
            state.send_replace(State::Failed { reason });
            return;
        }
        let wait = timing
            .backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(timing.max_backoff);
        tracing::warn!(
            source = "llama-server",
            "llama-server (pid {pid}) {reason}; restarting in {:.1} s",
            wait.as_secs_f64()
        );
        state.send_replace(State::Crashed {
            reason,
            restart_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            attempt,
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stop => {
                state.send_replace(State::Stopped);
                return;
            }
        }
    }
}

fn spawn(launch: &Launch) -> Result<Child, String> {
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = launch
        .program
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        // llama.cpp builds keep their shared libraries beside the binary.
        let mut path = std::ffi::OsString::from(dir);
        if let Some(existing) = std::env::var_os("LD_LIBRARY_PATH") {
            path.push(":");
            path.push(existing);
        }
        command.env("LD_LIBRARY_PATH", path);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", launch.program.display()))?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err));
    }
    Ok(child)
}

/// The level of a line llama-server printed: llama.cpp marks each line with a letter (`I`, `W`,
/// `E`, `D`) after its timestamp; lines without one are judged by their words.
pub fn line_level(text: &str) -> &'static str {
    let marked = text
        .split_ascii_whitespace()
        .take(4)
        .find_map(|word| match word {
            "E" => Some("error"),
            "W" => Some("warn"),
            "I" => Some("info"),
            "D" => Some("debug"),
            _ => None,
        });
    marked.unwrap_or_else(|| {
        let lower = text.to_ascii_lowercase();
        if lower.contains("error") || lower.contains("failed") {
            "error"
        } else if lower.contains("warn") {
            "warn"
        } else {
            "info"
        }
    })
}

/// Writes each line llama-server prints to the log (source `llama-server`) at its level.
async fn forward_lines(pipe: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let text = line.trim_end();
        if text.is_empty() {
            continue;
        }
        match line_level(text) {
            "error" => tracing::error!(source = "llama-server", "{text}"),
            "warn" => tracing::warn!(source = "llama-server", "{text}"),
            "debug" => tracing::debug!(source = "llama-server", "{text}"),
            _ => tracing::info!(source = "llama-server", "{text}"),
        }
    }
}

async fn run_child(
    child: &mut Child,
    pid: u32,
    upstream: &Upstream,
    state: &watch::Sender<State>,
    timing: Timing,
    started_at: &Mutex<Option<Instant>>,
    stop: &mut oneshot::Receiver<()>,
) -> Ended {
    let deadline = tokio::time::Instant::now() + timing.ready_timeout;
    let mut ready = false;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            status = child.wait() => {
                let how = match status {
                    Ok(s) => format!("exited ({s})"),
                    Err(e) => format!("could not be waited for: {e}"),
                };
                return Ended::Exited(how);
            }
            _ = &mut *stop => {
                state.send_replace(State::Stopping { pid });
                terminate(child, timing.grace).await;
                return Ended::Stopped;
            }
            _ = poll.tick(), if !ready => {
                if tokio::time::Instant::now() > deadline {
                    return Ended::NotReady(format!(
                        "did not answer /health within {} s",
                        timing.ready_timeout.as_secs()
                    ));
                }
                if let Ok((200, _)) = upstream.json("GET", "/health", None, Duration::from_secs(2)).await {
                    ready = true;
                    if let Ok(mut t) = started_at.lock() {
                        *t = Some(Instant::now());
                    }
                    tracing::info!(source = "llama-server", "llama-server (pid {pid}) is ready at {}", upstream.base());
                    state.send_replace(State::Ready { pid, url: upstream.base().to_string() });
                }
            }
        }
    }
}

/// SIGTERM to our child, then SIGKILL if it has not exited within `grace`.
async fn terminate(child: &mut Child, grace: Duration) {
    let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return; // already reaped
    };
    if rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
        && tokio::time::timeout(grace, child.wait()).await.is_ok()
    {
        return;
    }
    tracing::warn!(
        source = "llama-server",
        "llama-server (pid {}) did not exit within {} s of SIGTERM; killing it",
        pid.as_raw_nonzero(),
        grace.as_secs()
    );
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::line_level;

    #[test]
    fn llama_cpp_level_letters_are_read() {
        assert_eq!(line_level("0.19.681.118 I srv unload: stopping"), "info");
        assert_eq!(
            line_level("[55295] 0.07.477.303 W srv something odd"),
            "warn"
        );
        assert_eq!(
            line_level("0.01.000.000 E main: failed to load model"),
            "error"
        );
        assert_eq!(line_level("error: invalid argument: --foo"), "error");
        assert_eq!(line_level("main: server is listening"), "info");
    }
}
