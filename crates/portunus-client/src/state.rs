//! The last applied desired state, kept on disk so forwarding survives restarts (fail-static).
//!
//! Rules are desired state owned by the server, but a client that restarts while the server is
//! away must not come up empty: that would turn a control-plane outage into a traffic outage.
//! So after every successful apply the client writes `{client_id, generation, rules}` atomically
//! (mode 0600) to `<state-dir>/<client_id>.rules.json`, and at start it applies that file before
//! dialling. A file that cannot be read is reported and ignored (the server's next push replaces
//! it); it never stops the client. Usage the client could not report before it stopped is kept
//! next to it (`<client_id>.usage.json`) and sent after the next start, so a restart during an
//! outage does not lose billed bytes either.

use std::io;
use std::path::{Path, PathBuf};

use portunus_core::wire::{RuleSpec, UsageSample};
use serde::{Deserialize, Serialize};

use crate::atomic::{self, Existing};

/// The largest state file read (1,000 rules of 8 targets is well under this).
const MAX_STATE: u64 = 64 * 1024 * 1024;

/// A persisted rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// The client the rules belong to.
    pub client_id: String,
    /// The generation they were pushed with.
    pub generation: u64,
    /// The rules.
    pub rules: Vec<RuleSpec>,
}

/// Usage not yet reported, kept over a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Unreported {
    client_id: String,
    samples: Vec<UsageSample>,
}

/// Where one client's rules (and unreported usage) are kept.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    usage_path: PathBuf,
    status_path: PathBuf,
    client_id: String,
}

impl StateFile {
    /// The file for `client_id` in `dir`.
    pub fn new(dir: &Path, client_id: &str) -> StateFile {
        StateFile {
            path: dir.join(format!("{client_id}.rules.json")),
            usage_path: dir.join(format!("{client_id}.usage.json")),
            status_path: crate::status::path(dir, client_id),
            client_id: client_id.to_string(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the running client publishes its live status ([`crate::status`]).
    pub fn status_path(&self) -> &Path {
        &self.status_path
    }

    /// The persisted rules: `Ok(None)` when there are none yet; an error when the file exists
    /// but cannot be used (unreadable, malformed, or another client's).
    pub fn load(&self) -> Result<Option<Persisted>, String> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        if meta.len() > MAX_STATE {
            return Err(format!(
                "{} is too large to be a rule set",
                self.path.display()
            ));
        }
        let text = std::fs::read(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let state: Persisted = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not a valid rule set: {e}", self.path.display()))?;
        if state.client_id != self.client_id {
            return Err(format!(
                "{} belongs to client {}, not {}",
                self.path.display(),
                state.client_id,
                self.client_id
            ));
        }
        Ok(Some(state))
    }

    /// Writes the rule set atomically (mode 0600, directory 0700).
    pub fn save(&self, generation: u64, rules: &[RuleSpec]) -> io::Result<()> {
        let state = Persisted {
            client_id: self.client_id.clone(),
            generation,
            rules: rules.to_vec(),
        };
        let bytes = serde_json::to_vec(&state).map_err(io::Error::other)?;
        atomic::write_private(&self.path, &bytes, Existing::Replace)
    }

    /// Removes the rules and any unreported usage (after a revocation): a revoked client must
    /// not resurrect its rules at the next start. Missing files are fine.
    pub fn remove(&self) -> io::Result<()> {
        remove_if_there(&self.usage_path)?;
        remove_if_there(&self.path)
    }

    /// Keeps `samples` for the next start (replacing what was kept); nothing to keep removes
    /// the file.
    pub fn save_usage(&self, samples: Vec<UsageSample>) -> io::Result<()> {
        if samples.is_empty() {
            return remove_if_there(&self.usage_path);
        }
        let kept = Unreported {
            client_id: self.client_id.clone(),
            samples,
        };
        let bytes = serde_json::to_vec(&kept).map_err(io::Error::other)?;
        atomic::write_private(&self.usage_path, &bytes, Existing::Replace)
    }

    /// Takes the usage kept by the last run (removing the file); an unusable file is an error
    /// and is removed too, since it would fail again every start.
    pub fn take_usage(&self) -> Result<Vec<UsageSample>, String> {
        let text = match std::fs::read(&self.usage_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot read {}: {e}", self.usage_path.display())),
        };
        let _ = remove_if_there(&self.usage_path);
        let kept: Unreported = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not valid: {e}", self.usage_path.display()))?;
        if kept.client_id != self.client_id {
            return Err(format!(
                "{} belongs to client {}",
                self.usage_path.display(),
                kept.client_id
            ));
        }
        Ok(kept.samples)
    }
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use portunus_core::rule::{PortRange, Protocol, ProxyProtocol, Target};
    use portunus_core::wire::Caps;

    use super::*;

    fn rule() -> RuleSpec {
        RuleSpec {
            id: "rul_1".into(),
            owner_id: "usr_1".into(),
            protocol: Protocol::Tcp,
            listen_addr: "127.0.0.1".into(),
            listen: PortRange::new(8080, 8080).unwrap(),
            targets: vec![Target {
                host: "10.0.0.1".into(),
                port: 80,
                priority: 0,
                proxy_protocol: ProxyProtocol::None,
            }],
            caps: Caps::default(),
            owner_caps: Caps::default(),
        }
    }

    #[test]
    fn saved_rules_load_back_privately() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(&dir.path().join("state"), "cli_a");
        assert_eq!(file.load().unwrap(), None);
        file.save(4, &[rule()]).unwrap();
        let loaded = file.load().unwrap().unwrap();
        assert_eq!(loaded.generation, 4);
        assert_eq!(loaded.rules, [rule()]);
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(file.path().ends_with("state/cli_a.rules.json"));
        file.remove().unwrap();
        file.remove().unwrap();
        assert_eq!(file.load().unwrap(), None);
    }

    #[test]
    fn unreported_usage_is_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path(), "cli_a");
        assert_eq!(file.take_usage().unwrap(), []);
        let sample = UsageSample {
            owner_id: "usr_1".into(),
            minute: 60_000,
            bytes_in: 5,
            bytes_out: 6,
        };
        file.save_usage(vec![sample.clone()]).unwrap();
        let path = dir.path().join("cli_a.usage.json");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(file.take_usage().unwrap(), std::slice::from_ref(&sample));
        assert_eq!(file.take_usage().unwrap(), []);
        file.save_usage(vec![sample]).unwrap();
        file.save(1, &[]).unwrap();
        file.remove().unwrap();
        assert!(!path.exists());
        assert!(!file.path().exists());
    }

    #[test]
    fn foreign_or_broken_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        StateFile::new(dir.path(), "cli_a").save(1, &[]).unwrap();
        std::fs::rename(
            dir.path().join("cli_a.rules.json"),
            dir.path().join("cli_b.rules.json"),
        )
        .unwrap();
        let err = StateFile::new(dir.path(), "cli_b").load().unwrap_err();
        assert!(err.contains("belongs to client cli_a"), "{err}");
        std::fs::write(dir.path().join("cli_c.rules.json"), "{").unwrap();
        assert!(StateFile::new(dir.path(), "cli_c").load().is_err());
    }
}
