//! What an SSH connection may run, decided once for both front doors.
//!
//! `cpm serve` (the built-in SSH server) and `cpm shell` (OpenSSH's forced command) both hand the
//! requested command line and the user a key identified to [`prepare`]. It accepts only the git
//! pack commands (`git-upload-pack`, `git-receive-pack`, `git-upload-archive`, also spelled with a
//! space) on a repository, plus two admin commands, `info` and `repo list`; anything else — a
//! shell, an arbitrary program, a path outside the repository root — is refused with one line that
//! says why. Fetching and archiving need `read`, pushing needs `write`, as [`crate::access`] decides.
//! The pack protocol itself is run by the system `git`, whose stdin, stdout, stderr and exit status
//! the front door wires to the client. A push is audited with every ref it moved, old → new.

use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::Connection;
use serde::Serialize;

use crate::access::{self, Level};
use crate::error::{Error, Result};
use crate::names;
use crate::repos::{self, Repository};
use crate::users::User;

/// A command a client may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `git-upload-pack` (fetch, clone).
    UploadPack(String, String),
    /// `git-receive-pack` (push).
    ReceivePack(String, String),
    /// `git-upload-archive` (`git archive --remote`).
    UploadArchive(String, String),
    /// `info`: who the key is, and the server's version.
    Info,
    /// `repo list`: the repositories this key may read.
    RepoList,
}

impl Request {
    /// The access a request needs.
    pub fn needs(&self) -> Option<Level> {
        match self {
            Request::UploadPack(..) | Request::UploadArchive(..) => Some(Level::Read),
            Request::ReceivePack(..) => Some(Level::Write),
            Request::Info | Request::RepoList => None,
        }
    }
}

/// Parses an SSH command line such as `git-upload-pack '/acme/web.git'`.
pub fn parse(command: &str) -> Result<Request> {
    let command = command.trim();
    let words = split_words(command)?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let (verb, rest) = match words.as_slice() {
        ["git", sub, rest @ ..] => (format!("git-{sub}"), rest),
        [verb, rest @ ..] => ((*verb).to_string(), rest),
        [] => {
            return Err(refuse(
                "an interactive shell is not available; use git (clone, fetch, push) or `ssh … info`",
            ));
        }
    };
    match (verb.as_str(), rest) {
        ("info", []) => Ok(Request::Info),
        ("repo", ["list"]) => Ok(Request::RepoList),
        ("git-upload-pack" | "git-receive-pack" | "git-upload-archive", [path]) => {
            let (org, repo) = repo_spec(path)?;
            Ok(match verb.as_str() {
                "git-upload-pack" => Request::UploadPack(org, repo),
                "git-receive-pack" => Request::ReceivePack(org, repo),
                _ => Request::UploadArchive(org, repo),
            })
        }
        _ => Err(refuse(&format!(
            "'{}' is not allowed here; only git fetch/push/archive and `info`, `repo list`",
            command.chars().take(80).collect::<String>()
        ))),
    }
}

/// `/acme/web.git`, `acme/web`, `~/acme/web.git` → (`acme`, `web`).
fn repo_spec(path: &str) -> Result<(String, String)> {
    let trimmed = path.trim_start_matches('~').trim_start_matches('/');
    names::repo_path(trimmed).map_err(|_| {
        refuse(&format!(
            "'{path}' is not a repository path; use ORG/REPO, e.g. ssh://host/acme/web.git"
        ))
    })
}

/// Splits a command line the way git writes it: words separated by spaces, single quotes
/// around the path (with `'\''` for a quote inside). Nothing else of shell syntax is accepted.
fn split_words(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(refuse("unbalanced quote in the command")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err(refuse("trailing backslash in the command")),
                }
            }
            c if c.is_control() || "\"$`;&|<>(){}*?!".contains(c) => {
                return Err(refuse("shell syntax is not accepted in SSH commands"));
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn refuse(message: &str) -> Error {
    Error::Denied(message.to_string())
}

/// A request that passed every check: what to run, and for whom.
// One value per connection, matched and consumed at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Prepared {
    /// Run `git` with these arguments on this repository.
    Git {
        /// The program and arguments.
        command: Command,
        /// The repository.
        repo: Repository,
        /// The user.
        user: User,
        /// Whether it is a push (audited with the refs it moved).
        push: bool,
    },
    /// Print this text and exit 0.
    Reply(String),
}

/// The `info` reply: a stable first line that `neighbors discover` looks for.
pub const INFO_BANNER: &str = "cpm-server";

#[derive(Debug, Serialize)]
struct Info<'a> {
    server: &'a str,
    version: &'a str,
    user: &'a str,
}

/// Decides a request for `user` and builds what to run. `git_protocol` is the client's
/// `GIT_PROTOCOL` (protocol v2), passed through.
pub fn prepare(
    conn: &Connection,
    root: &Path,
    user: &User,
    request: &Request,
    git_protocol: Option<&str>,
) -> Result<Prepared> {
    let (verb, org, name) = match request {
        Request::Info => {
            let info = Info {
                server: INFO_BANNER,
                version: env!("CARGO_PKG_VERSION"),
                user: &user.username,
            };
            let json = serde_json::to_string(&info).map_err(|e| Error::Denied(e.to_string()))?;
            return Ok(Prepared::Reply(format!("{json}\n")));
        }
        Request::RepoList => {
            let mut text = String::new();
            for repo in repos::user_repositories(conn, user.id)? {
                let d = access::check(conn, user, &repo)?;
                if let Some(level) = d.level {
                    text.push_str(&format!("{} {level}\n", repo.full_name()));
                }
            }
            return Ok(Prepared::Reply(text));
        }
        Request::UploadPack(o, n) => ("upload-pack", o, n),
        Request::ReceivePack(o, n) => ("receive-pack", o, n),
        Request::UploadArchive(o, n) => ("upload-archive", o, n),
    };
    let denied = || {
        Error::Denied(format!(
            "repository '{org}/{name}' does not exist or {} may not access it",
            user.username
        ))
    };
    // Unknown and forbidden repositories get the same answer, so names cannot be probed.
    let repo = repos::find(conn, org, name).map_err(|_| denied())?;
    let decision = access::check(conn, user, &repo)?;
    let needed = request.needs().unwrap_or(Level::Read);
    if decision.level.is_none() {
        return Err(denied());
    }
    if !decision.allows(needed) {
        return Err(Error::Denied(format!(
            "{} may not {} '{}': {needed} access is needed, {}",
            user.username,
            if needed == Level::Write {
                "push to"
            } else {
                "read"
            },
            repo.full_name(),
            decision.reason
        )));
    }
    let path = PathBuf::from(&repo.path);
    let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let real = path.canonicalize().map_err(|e| Error::io(&path, e))?;
    if !real.starts_with(&root) {
        return Err(Error::Denied(format!(
            "repository '{}' is outside the repository root",
            repo.full_name()
        )));
    }
    let mut command = Command::new("git");
    command.arg(verb);
    if verb == "upload-pack" {
        command.arg("--strict");
    }
    command.arg(&real);
    command.env_clear();
    for var in ["PATH", "HOME", "LANG", "LC_ALL", "TZ"] {
        if let Some(value) = std::env::var_os(var) {
            command.env(var, value);
        }
    }
    if let Some(proto) = git_protocol.filter(|p| {
        p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "=:.-_".contains(c))
    }) {
        command.env("GIT_PROTOCOL", proto);
    }
    Ok(Prepared::Git {
        command,
        push: matches!(request, Request::ReceivePack(..)),
        repo,
        user: user.clone(),
    })
}

/// Every ref of a repository with its object id, for auditing what a push moved.
pub fn refs(repo_path: &str) -> Vec<(String, String)> {
    let out = Command::new("git")
        .args(["for-each-ref", "--format=%(objectname) %(refname)"])
        .env("GIT_DIR", repo_path)
        .output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(id, name)| (name.to_string(), id.to_string()))
        })
        .collect()
}

/// `refs/heads/main 1a2b3c4→5d6e7f8` for every ref that changed between two snapshots.
pub fn moved_refs(before: &[(String, String)], after: &[(String, String)]) -> Vec<String> {
    const ZERO: &str = "0000000";
    let short = |id: &str| id.chars().take(7).collect::<String>();
    let mut moved = Vec::new();
    for (name, new) in after {
        match before.iter().find(|(n, _)| n == name) {
            Some((_, old)) if old == new => {}
            Some((_, old)) => moved.push(format!("{name} {}→{}", short(old), short(new))),
            None => moved.push(format!("{name} {ZERO}→{}", short(new))),
        }
    }
    for (name, old) in before {
        if !after.iter().any(|(n, _)| n == name) {
            moved.push(format!("{name} {}→{ZERO}", short(old)));
        }
    }
    moved
}

/// Records a push in the audit log (who, which repository, every ref it moved), then queues its
/// replication to the registered servers: the post-receive trigger.
pub fn record_push(
    store: &store::Store,
    user: &User,
    repo: &Repository,
    before: &[(String, String)],
    status: i32,
) -> Result<()> {
    let after = refs(&repo.path);
    let moved = moved_refs(before, &after);
    if moved.is_empty() && status == 0 {
        return Ok(());
    }
    let mut details = moved.join(", ");
    if status != 0 {
        details.push_str(&format!(" (git exited with {status})"));
    }
    store.write(|tx| {
        crate::audit::record(
            tx,
            &user.username,
            "git.push",
            &repo.full_name(),
            details.trim(),
        )
    })?;
    if !moved.is_empty() {
        queue_replication(store, repo)?;
    }
    Ok(())
}

/// Starts `cpm sync ORG/REPO` in the background when any server is registered. Its outcome lands
/// in `replication_status` (see `cpm server list`); the pusher does not wait for it.
pub fn queue_replication(store: &store::Store, repo: &Repository) -> Result<()> {
    let servers: i64 =
        store.read(|c| c.query_row("SELECT count(*) FROM servers", [], |r| r.get(0)))?;
    if servers == 0 {
        return Ok(());
    }
    let Ok(exe) = std::env::current_exe() else {
        return Ok(());
    };
    let child = Command::new(exe)
        .arg("--db")
        .arg(store.path())
        .args(["sync", &repo.full_name()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Ok(mut child) = child {
        // Reap it when it ends (a long-running server must not collect zombies).
        std::thread::spawn(move || child.wait());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_commands_parse_in_both_spellings_and_path_forms() {
        let want = Request::UploadPack("acme".into(), "web".into());
        assert_eq!(parse("git-upload-pack '/acme/web.git'").unwrap(), want);
        assert_eq!(parse("git upload-pack 'acme/web'").unwrap(), want);
        assert_eq!(parse("git-upload-pack '~/acme/web.git'").unwrap(), want);
        assert!(matches!(
            parse("git-receive-pack 'acme/web.git'").unwrap(),
            Request::ReceivePack(..)
        ));
        assert!(matches!(
            parse("git-upload-archive '/acme/web.git'").unwrap(),
            Request::UploadArchive(..)
        ));
        assert_eq!(parse("info").unwrap(), Request::Info);
        assert_eq!(parse("repo list").unwrap(), Request::RepoList);
    }

    #[test]
    fn shells_programs_and_path_tricks_are_refused() {
        for bad in [
            "",
            "bash",
            "sh -c 'id'",
            "git-upload-pack '/acme/web.git'; rm -rf /",
            "git-upload-pack '../../etc'",
            "git-upload-pack 'acme/web.git/../other'",
            "git-upload-pack 'acme/../x'",
            "git-upload-pack $(id)",
            "git-upload-pack 'acme/web' extra",
            "scp -t /tmp",
            "git-upload-pack 'acme",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn moved_refs_names_created_updated_and_deleted_refs() {
        let before = vec![
            ("refs/heads/main".to_string(), "aaaaaaaaaa".to_string()),
            ("refs/heads/old".to_string(), "bbbbbbbbbb".to_string()),
        ];
        let after = vec![
            ("refs/heads/main".to_string(), "cccccccccc".to_string()),
            ("refs/tags/v1".to_string(), "dddddddddd".to_string()),
        ];
        let moved = moved_refs(&before, &after);
        assert_eq!(
            moved,
            [
                "refs/heads/main aaaaaaa→ccccccc",
                "refs/tags/v1 0000000→ddddddd",
                "refs/heads/old bbbbbbb→0000000"
            ]
        );
    }
}
