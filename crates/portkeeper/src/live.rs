//! The truth about reserved ports at the moment of asking.
//!
//! Stored statuses go stale the moment a server starts or stops, so no command trusts them: each
//! takes one kernel socket snapshot ([`Snapshot`]) and joins it with the reservations. A reserved
//! port with a listener is `in-use`; once the listener is gone it is `reserved` again, with no manual
//! step. Where a bind probe says a port is taken but no socket of ours can see it (another network
//! view, a hidden process), the port is `in-use` too: never reported free.
//!
//! The answer never depends on which command ran before, because it is computed from the snapshot,
//! not from the table. The table is then brought in line (one short write, only when something
//! changed), so the documented SQL sees the same truth and the `track_port_changes` trigger records
//! each `in-use`/`reserved` transition in `port_history`. Reservations flagged `autoRelease` are
//! released here once the process seen holding them has exited.

use serde::Serialize;
use store::Store;

use crate::error::Result;
use crate::history::{self, Actor};
use crate::port::Port;
use crate::ports::{self, Reservation, Status};
use crate::sockets::{self, Probe, Snapshot, Socket};
use crate::timestamp;

/// A reservation as it is right now: the row with its live status, and who listens on the port.
#[derive(Debug, Clone, Serialize)]
pub struct Observed {
    /// The row, with `status`, `pid` and `processName` as observed now.
    #[serde(flatten)]
    pub reservation: Reservation,
    /// The sockets bound to the port (TCP listeners, bound UDP sockets), with their processes.
    pub listeners: Vec<Socket>,
    /// True when a bind probe found the port taken but no visible socket explains it.
    #[serde(rename = "hiddenHolder")]
    pub hidden_holder: bool,
}

/// Whether to bind-probe reserved ports that show no socket.
///
/// The kernel tables list every socket of the network namespace whoever owns it, so a probe only
/// adds something for sockets outside those tables (another namespace sharing the port space, a
/// restricted `/proc`). It costs four bind attempts per port, so commands about one port (`check`,
/// `reserve`) probe, and commands over every reservation (`list`, `summary`, `stale`) do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeUnseen {
    /// Probe: a port held by an invisible process shows as in use.
    Yes,
    /// Trust the snapshot alone.
    No,
}

/// The live status of `port` given the snapshot (and probe) and, if any, its reservation.
pub fn status_of(held: bool, listening: bool, hidden: bool) -> Status {
    match (held, listening || hidden) {
        (_, true) => Status::InUse,
        (true, false) => Status::Reserved,
        (false, false) => Status::Free,
    }
}

/// Observes `rows` against `snapshot`, updates the table where the truth changed, and returns the
/// rows as they are now. Rows released by auto-release come back with status `free`.
pub fn observe(
    store: &Store,
    snapshot: &Snapshot,
    rows: Vec<Reservation>,
    probe: ProbeUnseen,
    command: &str,
) -> Result<Vec<Observed>> {
    let now = timestamp::now();
    let mut observed = Vec::with_capacity(rows.len());
    let mut changes = Vec::new();
    for row in rows {
        let listeners: Vec<Socket> = snapshot.on_port(row.number.get()).cloned().collect();
        let hidden = listeners.is_empty()
            && row.status.is_held()
            && probe == ProbeUnseen::Yes
            && sockets::probe(row.number.get()) == Probe::InUse;
        let change = plan(&row, &listeners, hidden);
        let mut now_row = row.clone();
        if let Some(change) = &change {
            change.apply_to(&mut now_row, &now);
            changes.push((row, change.clone()));
        }
        observed.push(Observed {
            reservation: now_row,
            listeners,
            hidden_holder: hidden,
        });
    }
    if !changes.is_empty() {
        let actor = Actor::current(command);
        store.write(|tx| {
            for (before, change) in &changes {
                // Apply only if nobody changed the row since we read it.
                let Some(current) = ports::get(tx, before.number)? else {
                    continue;
                };
                if current.status != before.status
                    || current.pid != before.pid
                    || current.project_name != before.project_name
                    || current.reserved_at != before.reserved_at
                {
                    continue;
                }
                change.write(tx, before.number, &now, &actor)?;
            }
            Ok::<_, crate::error::Error>(())
        })?;
    }
    Ok(observed)
}

/// What must change in a row to match what was observed.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// A process listens: `in-use`, with its pid.
    InUse {
        pid: Option<u32>,
        process: Option<String>,
    },
    /// The listener is gone: back to `reserved` (the pid is kept for auto-release rows, so we
    /// know which process to wait for).
    Idle { keep_pid: bool },
    /// Auto-release: the process seen on it has exited.
    AutoRelease { pid: u32, process: Option<String> },
}

fn plan(row: &Reservation, listeners: &[Socket], hidden: bool) -> Option<Change> {
    if !row.status.is_held() {
        return None;
    }
    let owner = listeners.iter().flat_map(|s| s.owners.first()).next();
    if !listeners.is_empty() || hidden {
        let pid = owner.map(|o| o.pid);
        let process = owner.map(|o| o.process.clone());
        if row.status == Status::InUse && row.pid == pid && row.process_name == process {
            return None;
        }
        if pid.is_none() && row.status == Status::InUse {
            // Still in use; the owner is just not visible to us now.
            return None;
        }
        return Some(Change::InUse { pid, process });
    }
    if row.auto_release
        && let Some(pid) = row.pid
        && !process_alive(pid)
    {
        return Some(Change::AutoRelease {
            pid,
            process: row.process_name.clone(),
        });
    }
    if row.status == Status::InUse {
        return Some(Change::Idle {
            keep_pid: row.auto_release,
        });
    }
    None
}

impl Change {
    fn apply_to(&self, row: &mut Reservation, now: &str) {
        match self {
            Change::InUse { pid, process } => {
                row.status = Status::InUse;
                row.pid = *pid;
                row.process_name.clone_from(process);
                row.last_seen_at = Some(now.to_string());
            }
            Change::Idle { keep_pid } => {
                row.status = Status::Reserved;
                if !keep_pid {
                    row.pid = None;
                    row.process_name = None;
                }
            }
            Change::AutoRelease { .. } => {
                row.status = Status::Free;
                row.pid = None;
                row.process_name = None;
            }
        }
        row.updated_at = now.to_string();
    }

    fn write(&self, tx: &rusqlite::Connection, port: Port, now: &str, actor: &Actor) -> Result<()> {
        match self {
            Change::InUse { pid, process } => {
                ports::set_observed(tx, port, Status::InUse, *pid, process.as_deref(), Some(now))?;
                let who = match (pid, process) {
                    (Some(pid), Some(name)) => format!("pid {pid} ({name}) listening"),
                    (Some(pid), None) => format!("pid {pid} listening"),
                    _ => "in use by a process not visible to this user".to_string(),
                };
                history::annotate(tx, port, actor, &who)
            }
            Change::Idle { keep_pid } => {
                let current = ports::get(tx, port)?;
                let (pid, process) = match (&current, keep_pid) {
                    (Some(r), true) => (r.pid, r.process_name.clone()),
                    _ => (None, None),
                };
                ports::set_observed(tx, port, Status::Reserved, pid, process.as_deref(), None)?;
                history::annotate(tx, port, actor, "listener gone; still reserved")
            }
            Change::AutoRelease { pid, process } => {
                ports::release(tx, port)?;
                let name = process
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                history::annotate(
                    tx,
                    port,
                    actor,
                    &format!("auto-release: pid {pid}{name} exited"),
                )
            }
        }
    }
}

/// Whether a process exists and has not exited: a zombie (exited, not yet reaped) counts as gone,
/// one we may not signal counts as alive.
pub fn process_alive(pid: u32) -> bool {
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S …`: the state follows the last ')' (comm may contain parentheses).
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        return !matches!(state, Some('Z' | 'X'));
    }
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_status_follows_listeners_not_the_table() {
        assert_eq!(status_of(true, true, false), Status::InUse);
        assert_eq!(status_of(true, false, false), Status::Reserved);
        assert_eq!(status_of(true, false, true), Status::InUse);
        assert_eq!(status_of(false, false, false), Status::Free);
        assert_eq!(status_of(false, true, false), Status::InUse);
    }

    #[test]
    fn our_own_process_is_alive_and_an_unused_pid_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(i32::MAX as u32 - 7));
    }
}
