//! `portman kill PORT…`: stop what listens on a port, show it first, and check the port is free.

use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde::Serialize;

use super::{Context, proto, snapshot_of};
use crate::cli::KillArgs;
use crate::error::{Error, Result};
use crate::history::Actor;
use crate::kill::{self, Target};
use crate::live::{self, ProbeUnseen};
use crate::output;
use crate::port::Port;
use crate::ports;

#[derive(Debug, Serialize)]
struct Killed {
    port: Port,
    /// `killed`, `not-listening`, or `dry-run`.
    status: &'static str,
    signal: &'static str,
    targets: Vec<Target>,
    escalated: Vec<u32>,
    /// Whether the port was free afterwards.
    free: bool,
}

pub fn run(ctx: &Context, args: &KillArgs) -> Result<u8> {
    let signal = if args.force {
        Signal::KILL
    } else {
        args.signal
    };
    let protocol = proto(args.proto);
    let store = ctx.open()?;
    let actor = Actor::current("kill");
    let mut results = Vec::new();
    // Every target of every port is found (and refused, if need be) before anything is signalled.
    let snapshot = snapshot_of(args.ports.iter().map(|p| p.get()))?;
    let mut plan = Vec::new();
    for port in &args.ports {
        plan.push((*port, kill::targets(&snapshot, *port, protocol)?));
    }
    for (port, targets) in plan {
        if targets.is_empty() {
            if !ctx.json {
                output::text(&format!("Nothing listens on port {port}.\n"));
            }
            results.push(Killed {
                port,
                status: "not-listening",
                signal: kill::signal_name(signal),
                targets,
                escalated: Vec::new(),
                free: true,
            });
            continue;
        }
        if !ctx.json {
            let verb = if args.dry_run {
                "Would send"
            } else {
                "Sending"
            };
            let mut text = String::new();
            for t in &targets {
                text.push_str(&format!(
                    "{verb} {} to pid {} ({}, user {}) listening on {}\n",
                    kill::signal_name(signal),
                    t.pid,
                    t.process,
                    t.user,
                    t.sockets.join(", ")
                ));
            }
            output::text(&text);
        }
        if args.dry_run {
            results.push(Killed {
                port,
                status: "dry-run",
                signal: kill::signal_name(signal),
                targets,
                escalated: Vec::new(),
                free: false,
            });
            continue;
        }
        let outcome = kill::signal_all(&targets, signal, args.timeout)?;
        let free = wait_until_free(port, protocol)?;
        kill::record(
            &store,
            port,
            signal,
            &targets,
            &outcome,
            args.timeout,
            &actor,
        )?;
        if !ctx.json {
            if !outcome.escalated.is_empty() {
                output::text(&format!(
                    "Still running after {:?}: sent KILL to {:?}\n",
                    args.timeout, outcome.escalated
                ));
            }
            if free {
                output::text(&format!("Port {port} is free.\n"));
            }
        }
        results.push(Killed {
            port,
            status: "killed",
            signal: kill::signal_name(signal),
            targets,
            escalated: outcome.escalated,
            free,
        });
    }
    // The reservations on these ports go back to `reserved` now their listeners are gone.
    let rows = store.read(|c| {
        ports::list(
            c,
            &ports::Filter {
                ports: args.ports.clone(),
                ..ports::Filter::default()
            },
        )
    })?;
    if !rows.is_empty() && !args.dry_run {
        let after = snapshot_of(rows.iter().map(|r| r.number.get()))?;
        live::observe(&store, &after, rows, ProbeUnseen::No, "kill")?;
    }
    let still: Vec<Port> = results
        .iter()
        .filter(|r| !r.free && r.status == "killed")
        .map(|r| r.port)
        .collect();
    let error = (!still.is_empty()).then(|| {
        Error::StillInUse(format!(
            "port(s) {still:?} still have a listener after the signals; see `portman check <port>`"
        ))
    });
    if ctx.json {
        let mut doc = serde_json::json!({ "results": results });
        if let Some(e) = &error {
            doc["error"] = serde_json::json!({ "code": e.code(), "message": e.to_string() });
        }
        output::json(&doc);
        return Ok(error.map_or(0, |e| e.exit_code()));
    }
    error.map_or(Ok(0), Err)
}

/// Waits up to a second for the kernel to drop the listeners of the signalled processes.
fn wait_until_free(port: Port, protocol: Option<crate::sockets::Proto>) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let snapshot = snapshot_of([port.get()])?;
        let busy = snapshot
            .on_port(port.get())
            .any(|s| protocol.is_none_or(|p| s.proto == p));
        if !busy {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
