//! Freeing a port by signalling the processes that listen on it: `portman kill`.
//!
//! Only listeners are targets: the kernel snapshot lists listening TCP sockets and bound UDP sockets,
//! never connected clients, so a browser or `curl` connected to the port is left alone (the
//! original took the first PID `lsof` printed, which could be the client). Every process holding a
//! listening socket is signalled (a pre-forked server has several). PID 1 and `portman` itself are
//! refused before anything is signalled. After the signal we wait up to the timeout, send `KILL` to
//! what is still alive, and then check the port really is free.

use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde::Serialize;

use store::Store;

use crate::error::{Error, Result};
use crate::history::{self, Action, Actor};
use crate::live::process_alive;
use crate::port::Port;
use crate::ports;
use crate::sockets::{Proto, Snapshot, Socket};

/// A process `kill` will signal, with the sockets that make it a target.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Process id.
    pub pid: u32,
    /// Process name.
    pub process: String,
    /// Owner of the socket.
    pub user: String,
    /// The sockets it holds on the port, e.g. `tcp 127.0.0.1:3000`.
    pub sockets: Vec<String>,
}

/// The signals `kill --signal` accepts.
pub const SIGNALS: [&str; 7] = ["TERM", "INT", "HUP", "QUIT", "KILL", "USR1", "USR2"];

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number (`15`).
pub fn parse_signal(name: &str) -> std::result::Result<Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let signal = match bare {
        "TERM" | "15" => Signal::TERM,
        "INT" | "2" => Signal::INT,
        "HUP" | "1" => Signal::HUP,
        "QUIT" | "3" => Signal::QUIT,
        "KILL" | "9" => Signal::KILL,
        "USR1" | "10" => Signal::USR1,
        "USR2" | "12" => Signal::USR2,
        _ => {
            return Err(format!(
                "unknown signal '{name}' (expected one of {})",
                SIGNALS.join(", ")
            ));
        }
    };
    Ok(signal)
}

/// The name of a signal we accept (`TERM`).
pub fn signal_name(signal: Signal) -> &'static str {
    match signal {
        Signal::INT => "INT",
        Signal::HUP => "HUP",
        Signal::QUIT => "QUIT",
        Signal::KILL => "KILL",
        Signal::USR1 => "USR1",
        Signal::USR2 => "USR2",
        _ => "TERM",
    }
}

/// The processes listening on `port` (optionally one protocol). Refuses, before anything is
/// signalled, sockets whose owner we cannot see, PID 1, and ourselves.
pub fn targets(snapshot: &Snapshot, port: Port, proto: Option<Proto>) -> Result<Vec<Target>> {
    let sockets: Vec<&Socket> = snapshot
        .on_port(port.get())
        .filter(|s| proto.is_none_or(|p| s.proto == p))
        .collect();
    let mut targets: Vec<Target> = Vec::new();
    for socket in &sockets {
        if socket.owners.is_empty() {
            return Err(Error::Permission(format!(
                "port {port} is held by a process this user cannot see ({} {}, owned by {}); run portman as that user or as root",
                socket.proto,
                socket.endpoint(),
                socket.user
            )));
        }
        for owner in &socket.owners {
            let label = format!("{} {}", socket.proto, socket.endpoint());
            match targets.iter_mut().find(|t| t.pid == owner.pid) {
                Some(t) => {
                    if !t.sockets.contains(&label) {
                        t.sockets.push(label);
                    }
                }
                None => targets.push(Target {
                    pid: owner.pid,
                    process: owner.process.clone(),
                    user: socket.user.clone(),
                    sockets: vec![label],
                }),
            }
        }
    }
    targets.sort_by_key(|t| t.pid);
    for t in &targets {
        if t.pid == 1 {
            return Err(Error::Permission(format!(
                "refusing to signal PID 1 ({}), which holds port {port}: stopping init would stop the system; stop that service with its own tools",
                t.process
            )));
        }
        if t.pid == std::process::id() {
            return Err(Error::Permission(format!(
                "refusing to signal portman itself (pid {}), which holds port {port}",
                t.pid
            )));
        }
    }
    Ok(targets)
}

/// What `kill` did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Processes sent the first signal.
    pub signalled: Vec<u32>,
    /// Processes still alive after the timeout and sent `KILL`.
    pub escalated: Vec<u32>,
}

/// Signals every target, waits up to `timeout`, then `KILL`s what remains.
pub fn signal_all(targets: &[Target], signal: Signal, timeout: Duration) -> Result<Outcome> {
    let mut signalled = Vec::new();
    for t in targets {
        send(t, signal)?;
        signalled.push(t.pid);
    }
    let deadline = Instant::now() + timeout;
    let mut alive: Vec<&Target> = targets.iter().collect();
    while !alive.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        alive.retain(|t| process_alive(t.pid));
    }
    let mut escalated = Vec::new();
    if signal != Signal::KILL {
        for t in alive {
            if process_alive(t.pid) {
                send(t, Signal::KILL)?;
                escalated.push(t.pid);
            }
        }
    }
    Ok(Outcome {
        signalled,
        escalated,
    })
}

/// Records a kill in `port_history` (when the port has a `ports` row: history rows need one) and
/// returns the description written, e.g. `TERM to pid 42 (node); KILL after 5s to [42]`.
pub fn record(
    store: &Store,
    port: Port,
    signal: Signal,
    targets: &[Target],
    outcome: &Outcome,
    timeout: Duration,
    actor: &Actor,
) -> Result<String> {
    let summary = targets
        .iter()
        .map(|t| format!("pid {} ({})", t.pid, t.process))
        .collect::<Vec<_>>()
        .join(", ");
    let mut details = format!("{} to {summary}", signal_name(signal));
    if !outcome.escalated.is_empty() {
        details.push_str(&format!(
            "; KILL after {timeout:?} to {:?}",
            outcome.escalated
        ));
    }
    store.write(|tx| {
        if let Some(row) = ports::get(tx, port)? {
            history::record(
                tx,
                port,
                Action::Killed,
                Some(&row.project_name),
                row.description.as_deref(),
                actor,
                &details,
            )?;
        }
        Ok::<_, Error>(())
    })?;
    Ok(details)
}

fn send(target: &Target, signal: Signal) -> Result<()> {
    let Some(pid) = i32::try_from(target.pid).ok().and_then(Pid::from_raw) else {
        return Ok(());
    };
    match rustix::process::kill_process(pid, signal) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::SRCH) => Ok(()), // already gone
        Err(rustix::io::Errno::PERM) => Err(Error::Permission(format!(
            "not allowed to signal pid {} ({}, user {}); run portman as that user or as root",
            target.pid, target.process, target.user
        ))),
        Err(e) => Err(Error::Other(format!(
            "could not signal pid {} ({}): {e}",
            target.pid, target.process
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_prefix_or_number() {
        assert_eq!(parse_signal("TERM").unwrap(), Signal::TERM);
        assert_eq!(parse_signal("sigkill").unwrap(), Signal::KILL);
        assert_eq!(parse_signal("2").unwrap(), Signal::INT);
        assert!(parse_signal("STOP").unwrap_err().contains("expected"));
    }
}
