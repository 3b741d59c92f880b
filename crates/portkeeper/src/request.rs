//! Allocating free ports for a project: `portman request`.
//!
//! The whole allocation runs in one `BEGIN IMMEDIATE` transaction, so concurrent `request`s queue up
//! on SQLite's write lock and each sees the ports the previous one took: fifty processes asking at
//! once get fifty distinct ports, and none fails. A candidate must be unreserved, not on the avoid
//! list, not bound in the kernel snapshot, and must pass a bind probe (so a port held by an invisible
//! process is skipped). The search is bounded by the range: before probing anything we count what
//! the range can possibly give and fail fast with a clear error if it is not enough.
//!
//! In stable mode the search starts at a point derived from the project's name (FNV-1a), so the same
//! project asks for and usually gets the same port on every machine, and wraps around the range.

use std::collections::BTreeSet;

use rusqlite::Connection;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::history::{self, Action, Actor};
use crate::port::{Port, PortRange};
use crate::ports::{self, Reservation, Status};
use crate::sockets::{self, Probe, Snapshot};
use crate::timestamp;

/// The default range `request` allocates from when none is given.
pub const DEFAULT_RANGE: PortRange = PortRange {
    start: Port::new_const(3000),
    end: Port::new_const(9999),
};

/// What to allocate.
#[derive(Debug, Clone)]
pub struct Request {
    /// The project the ports are for.
    pub project: String,
    /// How many ports.
    pub count: usize,
    /// Where to look.
    pub range: PortRange,
    /// Ports never to hand out.
    pub avoid: Vec<PortRange>,
    /// All ports in one consecutive block.
    pub contiguous: bool,
    /// Start at a port derived from the project name, so it gets the same one each time.
    pub stable: bool,
    /// Try the range's ports in a random order (each at most once).
    pub random: bool,
    /// Fields written on each new reservation.
    pub template: Template,
}

/// The fields a new reservation gets (besides port and project).
#[derive(Debug, Clone, Default)]
pub struct Template {
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Release once the process seen on it exits.
    pub auto_release: bool,
}

impl Template {
    /// A new reservation of `port` for `project` with these fields, stamped now.
    pub fn reservation(&self, port: Port, project: &str) -> Reservation {
        let now = timestamp::now();
        Reservation {
            number: port,
            project_name: project.to_string(),
            description: self.description.clone(),
            status: Status::Reserved,
            pid: None,
            process_name: None,
            reserved_at: now.clone(),
            last_seen_at: None,
            updated_at: now,
            auto_release: self.auto_release,
            tags: self.tags.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// Whether [`reserve`] made a new reservation or found the project already holding the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reserved {
    /// A new reservation.
    Reserved,
    /// The project already held it; the given fields were updated.
    Updated,
}

/// Reserves `port` for `project` inside the caller's IMMEDIATE transaction. Refuses a port held by
/// another project; for the same project, updates the fields given and keeps the rest.
pub fn reserve(
    tx: &Connection,
    port: Port,
    project: &str,
    template: &Template,
    actor: &Actor,
) -> Result<Reserved> {
    match ports::get(tx, port)? {
        Some(held) if held.status.is_held() && held.project_name != project => {
            Err(Error::Reserved {
                port,
                project: held.project_name,
                since: format!(" since {}", timestamp::to_rfc3339(&held.reserved_at)),
            })
        }
        Some(mut held) if held.status.is_held() => {
            if template.description.is_some() {
                held.description.clone_from(&template.description);
            }
            for tag in &template.tags {
                if !held.tags.contains(tag) {
                    held.tags.push(tag.clone());
                }
            }
            held.metadata.extend(template.metadata.clone());
            held.auto_release |= template.auto_release;
            ports::upsert(tx, &held)?;
            Ok(Reserved::Updated)
        }
        previous => {
            let row = template.reservation(port, project);
            ports::upsert(tx, &row)?;
            if previous.is_none() {
                history::record(
                    tx,
                    port,
                    Action::Reserved,
                    Some(project),
                    row.description.as_deref(),
                    actor,
                    "",
                )?;
            } else {
                history::annotate(tx, port, actor, "")?;
            }
            Ok(Reserved::Reserved)
        }
    }
}

/// The ports allocated.
#[derive(Debug, Clone, Serialize)]
pub struct Allocation {
    /// The project.
    pub project: String,
    /// The ports, ascending.
    pub ports: Vec<Port>,
    /// Ports that the project already held and were handed back (stable mode).
    pub reused: Vec<Port>,
}

/// FNV-1a of the project name, the stable starting offset.
fn stable_offset(project: &str, span: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in project.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % span as u64) as usize
}

/// Fisher-Yates with a xorshift generator seeded from the clock and pid: random enough to spread
/// projects over a range, and no dependency for it.
fn shuffle(ports: &mut [Port]) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut state = nanos ^ (u64::from(std::process::id()) << 32) | 1;
    for i in (1..ports.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        ports.swap(i, j);
    }
}

/// Allocates in one IMMEDIATE transaction (the caller's `Store::write`).
pub fn allocate(
    tx: &Connection,
    request: &Request,
    snapshot: &Snapshot,
    actor: &Actor,
) -> Result<Allocation> {
    let range = request.range;
    let held: BTreeSet<Port> = ports::held_ports(tx)?.into_iter().collect();
    let avoided = |p: Port| request.avoid.iter().any(|r| r.contains(p));

    // Stable mode: the project's existing reservations in the range come back first.
    let mut reused = Vec::new();
    if request.stable && !request.contiguous {
        let mine = ports::list(
            tx,
            &ports::Filter {
                project: Some(request.project.clone()),
                ..ports::Filter::default()
            },
        )?;
        reused = mine
            .iter()
            .map(|r| r.number)
            .filter(|p| range.contains(*p) && !avoided(*p))
            .take(request.count)
            .collect();
    }
    let needed = request.count - reused.len();

    // Fail fast: what the range could give at best, before probing anything.
    let candidates = range
        .iter()
        .filter(|p| !held.contains(p) && !avoided(*p) && !snapshot.is_listening(p.get()))
        .count();
    if candidates < needed {
        return Err(Error::NoFreePorts(format!(
            "{range} has {candidates} unreserved, unused port(s) outside the avoid list, but {} {} needed; widen the range with --start/--end, shorten --avoid, or release ports (`portman list --project …`)",
            needed,
            if needed == 1 { "is" } else { "are" }
        )));
    }

    let span = range.len();
    let offset = if request.stable {
        stable_offset(&request.project, span)
    } else {
        0
    };
    let mut order: Vec<Port> = (0..span)
        .map(|i| {
            let n = usize::from(range.start.get()) + (offset + i) % span;
            Port::new(n as i64).unwrap_or(range.start)
        })
        .collect();
    if request.random {
        shuffle(&mut order);
    }
    let usable = |p: Port| {
        !held.contains(&p)
            && !avoided(p)
            && !snapshot.is_listening(p.get())
            && sockets::probe(p.get()) == Probe::Free
    };

    let mut picked: Vec<Port> = Vec::with_capacity(needed);
    if needed > 0 && request.contiguous {
        // The first run of `needed` consecutive usable ports, in search order (runs do not wrap).
        let mut run: Vec<Port> = Vec::new();
        for p in order {
            if run
                .last()
                .is_some_and(|last| last.get().checked_add(1) != Some(p.get()))
            {
                run.clear();
            }
            if usable(p) {
                run.push(p);
                if run.len() == needed {
                    picked = run;
                    break;
                }
            } else {
                run.clear();
            }
        }
        if picked.is_empty() {
            return Err(Error::NoFreePorts(format!(
                "no block of {needed} consecutive free ports in {range}; widen the range or drop --contiguous"
            )));
        }
    } else if needed > 0 {
        for p in order {
            if usable(p) {
                picked.push(p);
                if picked.len() == needed {
                    break;
                }
            }
        }
        if picked.len() < needed {
            return Err(Error::NoFreePorts(format!(
                "only {} of {needed} port(s) in {range} are free (the others are reserved, in use, or fail a bind probe); widen the range or release ports",
                picked.len()
            )));
        }
    }

    for port in &picked {
        let row = request.template.reservation(*port, &request.project);
        if ports::upsert(tx, &row)? == ports::Upserted::Inserted {
            history::record(
                tx,
                *port,
                Action::Reserved,
                Some(&request.project),
                row.description.as_deref(),
                actor,
                "",
            )?;
        } else {
            history::annotate(tx, *port, actor, "")?;
        }
    }
    let mut ports: Vec<Port> = picked.iter().chain(reused.iter()).copied().collect();
    ports.sort();
    Ok(Allocation {
        project: request.project.clone(),
        ports,
        reused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stable_offset_depends_only_on_the_project_name() {
        assert_eq!(stable_offset("web", 7000), stable_offset("web", 7000));
        assert_ne!(stable_offset("web", 7000), stable_offset("api", 7000));
        assert!(stable_offset("anything", 10) < 10);
    }
}
