//! `portman scan`: every listening TCP socket and bound UDP socket, joined with reservations, and
//! recorded in `active_scans`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Context, proto};
use crate::cli::ScanArgs;
use crate::error::{Error, Result};
use crate::live::{self, ProbeUnseen};
use crate::output::{self, Table, or_dash};
use crate::port::Port;
use crate::ports::{self, Filter, Reservation};
use crate::scans;
use crate::sockets::{Snapshot, Socket};
use crate::timestamp;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Seen<'a> {
    #[serde(flatten)]
    socket: &'a Socket,
    /// First owner, for convenience (also in `owners`).
    pid: Option<u32>,
    process_name: Option<&'a str>,
    /// The reservation of this port, if any.
    project_name: Option<&'a str>,
    description: Option<&'a str>,
}

pub fn run(ctx: &Context, args: &ScanArgs) -> Result<u8> {
    let covered = |p: u16| {
        args.ports.is_empty()
            || args
                .ports
                .iter()
                .any(|r| Port::new(i64::from(p)).is_some_and(|p| r.contains(p)))
    };
    let store = ctx.open()?;
    let held: Vec<Reservation> = store.read(|c| ports::list(c, &Filter::default()))?;
    let reserved_only = args.reserved;
    let held_ports: std::collections::BTreeSet<u16> = held.iter().map(|r| r.number.get()).collect();
    let snapshot =
        Snapshot::take_filtered(|p| covered(p) && (!reserved_only || held_ports.contains(&p)))
            .map_err(|e| Error::Scan(e.to_string()))?;
    let scanned_at = timestamp::now();

    // Reservations on the scanned ports get their live status from this same snapshot.
    let in_scope: Vec<Reservation> = held
        .into_iter()
        .filter(|r| covered(r.number.get()))
        .collect();
    let observed = live::observe(&store, &snapshot, in_scope, ProbeUnseen::No, "scan")?;
    let by_port: BTreeMap<u16, &Reservation> = observed
        .iter()
        .filter(|o| o.reservation.status.is_held())
        .map(|o| (o.reservation.number.get(), &o.reservation))
        .collect();

    let wanted_proto = proto(args.proto);
    let sockets: Vec<&Socket> = snapshot
        .sockets()
        .iter()
        .filter(|s| wanted_proto.is_none_or(|p| s.proto == p))
        .collect();

    if !args.no_record {
        let all: Vec<Socket> = snapshot.sockets().to_vec();
        store.write(|tx| {
            scans::record(tx, &all, &|p| {
                covered(p) && (!reserved_only || held_ports.contains(&p))
            })
        })?;
        // lastSeenAt is the last active scan that saw the port in use.
        store.write(|tx| {
            for port in by_port.keys().filter(|p| snapshot.is_listening(**p)) {
                tx.prepare_cached("UPDATE ports SET lastSeenAt = ?2 WHERE number = ?1")?
                    .execute(rusqlite::params![port, scanned_at])?;
            }
            Ok::<_, Error>(())
        })?;
    }

    let seen: Vec<Seen<'_>> = sockets
        .iter()
        .map(|s| {
            let r = by_port.get(&s.port);
            Seen {
                socket: s,
                pid: s.owners.first().map(|o| o.pid),
                process_name: s.owners.first().map(|o| o.process.as_str()),
                project_name: r.map(|r| r.project_name.as_str()),
                description: r.and_then(|r| r.description.as_deref()),
            }
        })
        .collect();
    if ctx.json {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Scan<'a> {
            scanned_at: String,
            sockets: &'a [Seen<'a>],
        }
        output::json(&Scan {
            scanned_at: timestamp::to_rfc3339(&scanned_at),
            sockets: &seen,
        });
        return Ok(0);
    }
    if seen.is_empty() {
        output::text("Nothing is listening.\n");
        return Ok(0);
    }
    let mut table = Table::new(&[
        "PROTO", "ADDRESS", "PORT", "PID", "PROCESS", "USER", "PROJECT",
    ]);
    for s in &seen {
        let pids = if s.socket.owners.is_empty() {
            "-".to_string()
        } else {
            s.socket
                .owners
                .iter()
                .map(|o| o.pid.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let address = match s.socket.address {
            std::net::IpAddr::V6(a) => format!("[{a}]"),
            std::net::IpAddr::V4(a) => a.to_string(),
        };
        table.row(vec![
            s.socket.proto.to_string(),
            address,
            s.socket.port.to_string(),
            pids,
            or_dash(s.process_name),
            s.socket.user.clone(),
            or_dash(s.project_name),
        ]);
    }
    output::text(&table.render());
    Ok(0)
}
