//! Replication: pushing this server's repositories to other servers and neighbors with git.
//!
//! This server is the master of the repositories it hosts; every target gets their refs with a
//! plain `git push` over SSH (all branches and tags), using the key pair registered for that
//! server. The push is not forced and deletes nothing: a target whose branch has moved on its own
//! (diverged) keeps it, and the ref is reported as diverged instead of being overwritten; a branch
//! that exists only on the target (made there, or deleted here) stays, because removing it could
//! lose work nobody has anywhere else. The target's host key is
//! pinned on first contact in `~/.cpm/known_hosts` and a changed key is refused (OpenSSH's
//! `StrictHostKeyChecking=accept-new`). Each (server, repository) pair keeps its last attempt,
//! last success, last error and last pushed commit in `replication_status`.

use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::repos::Repository;
use crate::servers::Server;
use crate::ssh_keys;
use store::timestamp;

/// The outcome of replicating one repository to one server.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The server's name.
    pub server: String,
    /// `org/name`.
    pub repository: String,
    /// `ok`, `diverged` or `error`.
    pub result: &'static str,
    /// Refs pushed (`refs/heads/main`), for `ok` and `diverged`.
    pub pushed: Vec<String>,
    /// Refs the target has moved on its own, left untouched.
    pub diverged: Vec<String>,
    /// What went wrong, for `error`.
    pub error: Option<String>,
    /// The commit HEAD names after the push.
    pub commit: Option<String>,
}

/// Where SSH pins the hosts cpm pushes to: `~/.cpm/known_hosts`.
pub fn known_hosts() -> Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            Error::Config(
                "HOME is not set; cpm pins servers' host keys in ~/.cpm/known_hosts".into(),
            )
        })?;
    Ok(PathBuf::from(home).join(".cpm/known_hosts"))
}

/// The SSH command git uses with `key_path`; the host and port come from the URL. `CPM_SSH` names another ssh
/// program (it receives OpenSSH's options).
pub fn ssh_command(key_path: &Path, known_hosts: &Path) -> String {
    let quote = |p: &Path| format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"));
    let program = std::env::var("CPM_SSH")
        .ok()
        .filter(|p| !p.is_empty())
        .map_or_else(|| "ssh".to_string(), |p| quote(Path::new(&p)));
    format!(
        "{program} -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o HashKnownHosts=no -o UserKnownHostsFile={} -o ConnectTimeout=10",
        quote(key_path),
        quote(known_hosts),
    )
}

/// `ssh://git@host:port/org/name.git`.
pub fn remote_url(server: &Server, repo: &Repository) -> String {
    let host = if server.host.contains(':') && !server.host.starts_with('[') {
        format!("[{}]", server.host)
    } else {
        server.host.clone()
    };
    format!(
        "ssh://git@{host}:{}/{}/{}.git",
        server.port, repo.org, repo.name
    )
}

/// Pushes `repo` to `server` and records the outcome.
pub fn push(conn: &Connection, server: &Server, repo: &Repository) -> Result<Outcome> {
    let mut outcome = Outcome {
        server: server.name.clone(),
        repository: repo.full_name(),
        result: "error",
        pushed: Vec::new(),
        diverged: Vec::new(),
        error: None,
        commit: None,
    };
    let key = match server.ssh_key_id {
        Some(id) => ssh_keys::get(conn, id)?,
        None => {
            outcome.error = Some(format!(
                "server '{}' has no key; give it one with `cpm server add … --key NAME` (see `cpm key generate`)",
                server.name
            ));
            record(conn, server, repo, &outcome)?;
            return Ok(outcome);
        }
    };
    let known = known_hosts()?;
    if let Some(dir) = known.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let out = Command::new("git")
        .args(["push", "--porcelain"])
        .arg(remote_url(server, repo))
        .args(["refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"])
        .env("GIT_DIR", &repo.path)
        .env(
            "GIT_SSH_COMMAND",
            ssh_command(Path::new(&key.private_key_path), &known),
        )
        // The port comes from the URL; git passes it as OpenSSH's -p whatever CPM_SSH is named.
        .env("GIT_SSH_VARIANT", "ssh")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| Error::Git(format!("cannot run git ({e})")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        // `<flag>\t<from>:<to>\t<summary>`; `!` rejected, `=` up to date.
        let mut fields = line.split('\t');
        let (Some(flag), Some(refs)) = (fields.next(), fields.next()) else {
            continue;
        };
        let target = refs.split_once(':').map_or(refs, |(_, to)| to).to_string();
        match flag {
            "!" => outcome.diverged.push(target),
            "=" => {}
            _ => outcome.pushed.push(target),
        }
    }
    outcome.commit = head_commit(&repo.path);
    if !outcome.diverged.is_empty() {
        outcome.result = "diverged";
        outcome.error = Some(format!(
            "{} moved on {} and was left as it is: {}",
            if outcome.diverged.len() == 1 {
                "a ref"
            } else {
                "refs"
            },
            server.name,
            outcome.diverged.join(", ")
        ));
    } else if out.status.success() {
        outcome.result = "ok";
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .find(|l| {
                l.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
                    || l.starts_with("cpm:")
                    || l.contains("denied")
                    || l.contains("Host key verification failed")
            })
            .or_else(|| stderr.lines().rfind(|l| !l.trim().is_empty()))
            .unwrap_or("git push failed")
            .trim()
            .to_string();
        outcome.error = Some(reason);
    }
    record(conn, server, repo, &outcome)?;
    Ok(outcome)
}

fn head_commit(path: &str) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--verify", "-q", "HEAD"])
        .env("GIT_DIR", path)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn record(conn: &Connection, server: &Server, repo: &Repository, o: &Outcome) -> Result<()> {
    let now = timestamp::now();
    let ok = o.result == "ok";
    conn.prepare_cached(
        "INSERT INTO replication_status (server_id, repo_id, last_attempt_at, last_ok_at, last_error, last_pushed_commit)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (server_id, repo_id) DO UPDATE SET
             last_attempt_at = excluded.last_attempt_at,
             last_ok_at = coalesce(excluded.last_ok_at, last_ok_at),
             last_error = excluded.last_error,
             last_pushed_commit = coalesce(excluded.last_pushed_commit, last_pushed_commit)",
    )?
    .execute(params![
        server.id,
        repo.id,
        now,
        ok.then(|| now.clone()),
        o.error,
        if ok { o.commit.clone() } else { None },
    ])?;
    Ok(())
}

/// One row of `replication_status`, with names.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Server name.
    pub server: String,
    /// `org/name`.
    pub repository: String,
    /// Last attempt.
    pub last_attempt_at: Option<String>,
    /// Last success.
    pub last_ok_at: Option<String>,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// The commit HEAD named at the last success.
    pub last_pushed_commit: Option<String>,
}

/// Replication status, all or of one server.
pub fn status(conn: &Connection, server_id: Option<i64>) -> Result<Vec<Status>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.name, o.name || '/' || r.name, rs.last_attempt_at, rs.last_ok_at, rs.last_error,
                rs.last_pushed_commit
         FROM replication_status rs
         JOIN servers s ON s.id = rs.server_id
         JOIN repositories r ON r.id = rs.repo_id
         JOIN organizations o ON o.id = r.org_id
         WHERE ?1 IS NULL OR rs.server_id = ?1
         ORDER BY s.name, o.name, r.name",
    )?;
    let rows = stmt.query_map([server_id], |r| {
        Ok(Status {
            server: r.get(0)?,
            repository: r.get(1)?,
            last_attempt_at: r.get(2)?,
            last_ok_at: r.get(3)?,
            last_error: r.get(4)?,
            last_pushed_commit: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A one-word summary of a server's replication for tables: `3 ok`, `2 ok, 1 failing`, `-`.
pub fn summary(statuses: &[Status], server: &str) -> String {
    let mine: Vec<&Status> = statuses.iter().filter(|s| s.server == server).collect();
    if mine.is_empty() {
        return "-".into();
    }
    let failing = mine.iter().filter(|s| s.last_error.is_some()).count();
    let ok = mine.len() - failing;
    if failing == 0 {
        format!("{ok} ok")
    } else {
        format!("{ok} ok, {failing} failing")
    }
}
