//! Live per-rule figures of a running client, for `portunus-client status`.
//!
//! An edge node's operator wants to know, on the box, whether a rule is up and carrying
//! traffic without asking the server (which may be the thing that is down). The running client
//! writes a small snapshot next to its persisted rules on every usage tick
//! (`<client_id>.status.json`, mode 0600): whether it is connected, which generation runs, and
//! for each rule its state and the forwarder's counters. `status` reads and prints it. A file
//! is simpler and safer than a control socket, and a stale timestamp says the client stopped.

use std::path::{Path, PathBuf};

use portunus_core::forward::RuleStats;
use portunus_core::wire::{RuleSpec, RuleState, RuleStatus};
use serde::{Deserialize, Serialize};
use store::cli::{Table, human_bytes};

use crate::atomic::{self, Existing};

/// A snapshot older than this is reported as stale.
pub const STALE_MS: i64 = 60_000;

/// What the running client publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The client.
    pub client_id: String,
    /// The process writing it.
    pub pid: u32,
    /// When it was written, Unix milliseconds.
    pub updated_at_ms: i64,
    /// Whether a control session is open.
    pub connected: bool,
    /// The generation running (`None` before the first).
    pub generation: Option<u64>,
    /// One row per rule of that generation.
    pub rules: Vec<RuleRow>,
}

/// One rule's state and counters (since it was started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRow {
    /// The rule.
    pub rule_id: String,
    /// Its owner.
    pub owner_id: String,
    /// `tcp`, `udp` or `tcp+udp`.
    pub protocol: String,
    /// `addr:ports`.
    pub listen: String,
    /// `active` or `failed`.
    pub state: String,
    /// Why it failed.
    #[serde(default)]
    pub reason: Option<String>,
    /// TCP connections open now.
    pub active_connections: u64,
    /// UDP flows now.
    pub udp_flows: u64,
    /// Connections and flows admitted so far.
    pub total_connections: u64,
    /// Bytes peers → targets.
    pub bytes_in: u64,
    /// Bytes targets → peers.
    pub bytes_out: u64,
    /// Refused by a cap.
    pub refused: u64,
}

/// The snapshot file of `client_id` in `dir`.
pub fn path(dir: &Path, client_id: &str) -> PathBuf {
    dir.join(format!("{client_id}.status.json"))
}

/// Builds the rows from what runs and the forwarder's counters.
pub fn rows(rules: &[RuleSpec], statuses: &[RuleStatus], stats: &[RuleStats]) -> Vec<RuleRow> {
    rules
        .iter()
        .map(|r| {
            let status = statuses.iter().find(|s| s.rule_id == r.id);
            let stat = stats.iter().find(|s| s.rule_id == r.id);
            let listen_addr = if r.listen_addr.contains(':') {
                format!("[{}]", r.listen_addr)
            } else {
                r.listen_addr.clone()
            };
            RuleRow {
                rule_id: r.id.clone(),
                owner_id: r.owner_id.clone(),
                protocol: r.protocol.to_string(),
                listen: format!("{listen_addr}:{}", r.listen),
                state: status
                    .map_or(RuleState::Failed, |s| s.state)
                    .as_str()
                    .to_string(),
                reason: status.and_then(|s| s.reason.clone()),
                active_connections: stat.map_or(0, |s| s.active_connections),
                udp_flows: stat.map_or(0, |s| s.udp_flows),
                total_connections: stat.map_or(0, |s| s.total_connections),
                bytes_in: stat.map_or(0, |s| s.bytes_in),
                bytes_out: stat.map_or(0, |s| s.bytes_out),
                refused: stat.map_or(0, |s| s.refused),
            }
        })
        .collect()
}

/// Writes the snapshot (atomically, 0600).
pub fn write(path: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(snapshot).map_err(std::io::Error::other)?;
    atomic::write_private(path, &bytes, Existing::Replace)
}

/// Reads a snapshot.
pub fn read(path: &Path) -> Result<Snapshot, String> {
    let text = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "no status at {}: is portunus-client running (with this bundle and state directory)?",
                path.display()
            )
        } else {
            format!("cannot read {}: {e}", path.display())
        }
    })?;
    serde_json::from_slice(&text).map_err(|e| format!("{} is not valid: {e}", path.display()))
}

/// The snapshot as text: a summary line and a table.
pub fn render(s: &Snapshot, now_ms: i64) -> String {
    let age = (now_ms - s.updated_at_ms).max(0) / 1000;
    let mut out = format!(
        "client {}  {}  generation {}  updated {age}s ago (pid {})\n",
        s.client_id,
        if s.connected {
            "connected"
        } else {
            "disconnected (forwarding continues)"
        },
        s.generation
            .map_or_else(|| "none".to_string(), |g| g.to_string()),
        s.pid
    );
    if now_ms - s.updated_at_ms > STALE_MS {
        out.push_str("warning: this snapshot is stale; the client may have stopped\n");
    }
    let mut table = Table::new(&[
        "RULE", "PROTO", "LISTEN", "STATE", "CONNS", "FLOWS", "TOTAL", "IN", "OUT", "REFUSED",
    ]);
    for r in &s.rules {
        let state = match &r.reason {
            Some(reason) => format!("{} ({reason})", r.state),
            None => r.state.clone(),
        };
        table.row(vec![
            r.rule_id.clone(),
            r.protocol.clone(),
            r.listen.clone(),
            state,
            r.active_connections.to_string(),
            r.udp_flows.to_string(),
            r.total_connections.to_string(),
            human_bytes(r.bytes_in),
            human_bytes(r.bytes_out),
            r.refused.to_string(),
        ]);
    }
    if table.is_empty() {
        out.push_str("no rules\n");
    } else {
        out.push_str(&table.render());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use portunus_core::rule::{PortRange, Protocol, ProxyProtocol, Target};
    use portunus_core::wire::Caps;

    use super::*;

    #[test]
    fn snapshots_round_trip_and_render() {
        let spec = RuleSpec {
            id: "rul_1".into(),
            owner_id: "usr_1".into(),
            protocol: Protocol::Both,
            listen_addr: "::".into(),
            listen: PortRange::new(8000, 8001).unwrap(),
            targets: vec![Target {
                host: "h".into(),
                port: 1,
                priority: 0,
                proxy_protocol: ProxyProtocol::None,
            }],
            caps: Caps::default(),
            owner_caps: Caps::default(),
        };
        let statuses = [RuleStatus {
            rule_id: "rul_1".into(),
            state: RuleState::Failed,
            reason: Some("address in use".into()),
        }];
        let snapshot = Snapshot {
            client_id: "cli_a".into(),
            pid: 7,
            updated_at_ms: 1_000,
            connected: false,
            generation: Some(3),
            rules: rows(&[spec], &statuses, &[]),
        };
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "cli_a");
        write(&p, &snapshot).unwrap();
        assert_eq!(read(&p).unwrap(), snapshot);
        let text = render(&snapshot, 100_000);
        assert!(text.contains("generation 3"), "{text}");
        assert!(text.contains("stale"), "{text}");
        assert!(
            text.contains("rul_1  tcp+udp  [::]:8000-8001  failed (address in use)"),
            "{text}"
        );
        assert!(
            read(&dir.path().join("nope"))
                .unwrap_err()
                .contains("running")
        );
    }
}
