//! The `active_scans` table: what the last `scan` saw listening, one row per (port, pid).
//!
//! The table mirrors the most recent scan of each port, so the seed's "Active Port Summary" join
//! shows current processes: rows the new scan no longer sees (within the ports it covered) are
//! removed, rows it sees are upserted with a fresh `scannedAt`. Several sockets of one process on
//! one port (IPv4 and IPv6, TCP and UDP) share a row, because the documented key is `UNIQUE(port,
//! pid)`; their protocols and addresses are listed comma-separated.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use crate::error::Result;
use crate::sockets::Socket;
use crate::timestamp;

/// One `active_scans` row to be.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    port: u16,
    pid: Option<u32>,
    process: Option<String>,
    state: String,
    address: Vec<String>,
    protocol: Vec<String>,
}

fn rows(sockets: &[Socket]) -> Vec<Row> {
    let mut by_key: BTreeMap<(u16, Option<u32>), Row> = BTreeMap::new();
    for s in sockets {
        let owners: Vec<(Option<u32>, Option<String>)> = if s.owners.is_empty() {
            vec![(None, None)]
        } else {
            s.owners
                .iter()
                .map(|o| (Some(o.pid), Some(o.process.clone())))
                .collect()
        };
        for (pid, process) in owners {
            let row = by_key.entry((s.port, pid)).or_insert_with(|| Row {
                port: s.port,
                pid,
                process: process.clone(),
                state: s.state.to_string(),
                address: Vec::new(),
                protocol: Vec::new(),
            });
            let address = s.address.to_string();
            if !row.address.contains(&address) {
                row.address.push(address);
            }
            let proto = s.proto.to_string();
            if !row.protocol.contains(&proto) {
                row.protocol.push(proto);
            }
            if row.state != s.state {
                row.state = "LISTEN,UNCONN".to_string();
            }
        }
    }
    by_key.into_values().collect()
}

/// Records a scan covering the ports for which `covered` is true: replaces those ports' rows with
/// what was seen. Returns the number of rows written.
pub fn record(
    conn: &Connection,
    sockets: &[Socket],
    covered: &dyn Fn(u16) -> bool,
) -> Result<usize> {
    let now = timestamp::now();
    let rows = rows(sockets);
    let seen: std::collections::HashSet<(u16, Option<u32>)> =
        rows.iter().map(|r| (r.port, r.pid)).collect();
    // Forget what this scan covered but no longer sees.
    let mut stale = Vec::new();
    {
        let mut stmt = conn.prepare_cached("SELECT id, port, pid FROM active_scans")?;
        let existing = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?;
        for row in existing {
            let (id, port, pid) = row?;
            let Ok(port) = u16::try_from(port) else {
                continue;
            };
            if !covered(port) {
                continue;
            }
            let pid = pid.and_then(|p| u32::try_from(p).ok());
            if !seen.contains(&(port, pid)) {
                stale.push(id);
            }
        }
    }
    for id in stale {
        conn.prepare_cached("DELETE FROM active_scans WHERE id = ?1")?
            .execute([id])?;
    }
    for r in &rows {
        let address = r.address.join(",");
        let protocol = r.protocol.join(",");
        // UNIQUE(port, pid) does not catch NULL pids, so those are matched by hand.
        let updated = conn
            .prepare_cached(
                "UPDATE active_scans SET processName = ?3, state = ?4, address = ?5, protocol = ?6,
                     scannedAt = ?7
                 WHERE port = ?1 AND pid IS ?2",
            )?
            .execute(params![
                r.port, r.pid, r.process, r.state, address, protocol, now
            ])?;
        if updated == 0 {
            conn.prepare_cached(
                "INSERT INTO active_scans (port, pid, processName, state, address, protocol, scannedAt)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![r.port, r.pid, r.process, r.state, address, protocol, now])?;
        }
    }
    Ok(rows.len())
}
