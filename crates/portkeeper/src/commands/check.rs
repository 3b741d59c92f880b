//! `portman check PORT`: the live status of one port, with an exit status scripts can branch on.

use serde::Serialize;

use super::{Context, describe_listeners, snapshot_of};
use crate::cli::CheckArgs;
use crate::error::{CHECK_IN_USE, CHECK_RESERVED, Result};
use crate::live::{self, ProbeUnseen};
use crate::output;
use crate::port::Port;
use crate::ports::{self, Reservation, Status};
use crate::sockets::{self, Probe, Socket};
use crate::timestamp;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Checked {
    port: Port,
    status: Status,
    project_name: Option<String>,
    description: Option<String>,
    #[serde(serialize_with = "timestamp::rfc3339::option::serialize")]
    reserved_at: Option<String>,
    pid: Option<u32>,
    process_name: Option<String>,
    reservation: Option<Reservation>,
    listeners: Vec<Socket>,
    hidden_holder: bool,
}

pub fn run(ctx: &Context, args: &CheckArgs) -> Result<u8> {
    let port = args.port;
    let store = ctx.open()?;
    let snapshot = snapshot_of([port.get()])?;
    let row = store.read(|c| ports::get(c, port))?;
    let (reservation, listeners, hidden) = match row.filter(|r| r.status.is_held()) {
        Some(row) => {
            let mut observed =
                live::observe(&store, &snapshot, vec![row], ProbeUnseen::Yes, "check")?;
            match observed.pop() {
                Some(o) if o.reservation.status.is_held() => {
                    (Some(o.reservation), o.listeners, o.hidden_holder)
                }
                // Auto-released just now.
                Some(o) => (None, o.listeners, o.hidden_holder),
                None => (None, Vec::new(), false),
            }
        }
        None => {
            let listeners: Vec<Socket> = snapshot.on_port(port.get()).cloned().collect();
            let hidden = listeners.is_empty() && sockets::probe(port.get()) == Probe::InUse;
            (None, listeners, hidden)
        }
    };
    let status = live::status_of(reservation.is_some(), !listeners.is_empty(), hidden);
    let owner = listeners.iter().flat_map(|s| s.owners.first()).next();
    let checked = Checked {
        port,
        status,
        project_name: reservation.as_ref().map(|r| r.project_name.clone()),
        description: reservation.as_ref().and_then(|r| r.description.clone()),
        reserved_at: reservation.as_ref().map(|r| r.reserved_at.clone()),
        pid: owner.map(|o| o.pid),
        process_name: owner.map(|o| o.process.clone()),
        reservation,
        listeners,
        hidden_holder: hidden,
    };
    if ctx.json {
        output::json(&checked);
    } else {
        let mut text = format!("Port {port} is {status}");
        if let Some(r) = &checked.reservation {
            text.push_str(&format!(
                ": reserved by {} since {}",
                r.project_name,
                timestamp::to_rfc3339(&r.reserved_at)
            ));
            if let Some(d) = &r.description {
                text.push_str(&format!(" ({d})"));
            }
        }
        text.push('\n');
        for line in describe_listeners(&checked.listeners) {
            text.push_str(&format!("  listening: {line}\n"));
        }
        if hidden {
            text.push_str("  a bind probe failed: a process this user cannot see holds it\n");
        }
        output::text(&text);
    }
    Ok(match status {
        Status::Free => 0,
        Status::Reserved => CHECK_RESERVED,
        Status::InUse => CHECK_IN_USE,
    })
}
