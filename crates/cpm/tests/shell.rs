//! OpenSSH mode through the real `git`: `cpm shell --key-id N`, as sshd would run it from
//! `authorized_keys`, enforces the access matrix on clone, fetch, push and archive.
//!
//! git is pointed at a tiny `GIT_SSH_COMMAND` script standing in for sshd's forced command: it
//! puts git's remote command in `SSH_ORIGINAL_COMMAND` and runs `cpm shell`, exactly what
//! `command="cpm … shell --key-id N",restrict` does after sshd has checked the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::Env;

struct Host {
    env: Env,
    wrapper: std::path::PathBuf,
    repo: std::path::PathBuf,
}

impl Host {
    /// acme/web with one commit; users with every role and grant.
    fn new() -> Host {
        let env = Env::new();
        env.ok(&["org", "create", "acme"]);
        for user in ["alice", "adam", "mia", "rita", "wes", "nick"] {
            let key = env.ssh_keygen(user);
            env.ok(&["user", "add", user, "--key-file", key.to_str().unwrap()]);
        }
        env.ok(&["org", "member", "add", "acme", "alice", "--role", "owner"]);
        env.ok(&["org", "member", "add", "acme", "adam", "--role", "admin"]);
        env.ok(&["org", "member", "add", "acme", "mia", "--role", "member"]);
        env.ok(&["repo", "create", "acme/web"]);
        env.ok(&["access", "grant", "rita", "acme/web", "read"]);
        env.ok(&["access", "grant", "wes", "acme/web", "write"]);
        let repo = env.repo_dir("acme", "web");
        env.seed_commit("acme", "web");

        let wrapper = env.path("forced-command.sh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nfor last; do :; done\nSSH_ORIGINAL_COMMAND=\"$last\" exec {} shell --key-id \"$CPM_TEST_KEY_ID\"\n",
                env!("CARGO_BIN_EXE_cpm")
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Host { env, wrapper, repo }
    }

    fn key_id(&self, user: &str) -> String {
        let keys = self.env.json(&["user", "key", "list", user], 0);
        keys[0]["id"].to_string()
    }

    /// Runs git as `user` over the forced command; returns (success, stderr).
    fn git_as(&self, user: &str, dir: &Path, args: &[&str]) -> (bool, String) {
        let out = Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("HOME", self.env.home())
            .env("CPM_ALLOW_UNSUPPORTED_FS", "1")
            .env("USER", "tester")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_SSH_COMMAND", &self.wrapper)
            .env("GIT_SSH_VARIANT", "ssh")
            .env("CPM_TEST_KEY_ID", self.key_id(user))
            .env("GIT_AUTHOR_NAME", "T")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "T")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn refs(&self) -> String {
        self.env.git(
            None,
            &["--git-dir", self.repo.to_str().unwrap(), "for-each-ref"],
        )
    }
}

const URL: &str = "ssh://git@cpm.test/acme/web.git";

#[test]
fn every_role_and_grant_gets_exactly_the_access_it_should() {
    let host = Host::new();
    // user, may read, may write
    for (user, read, write) in [
        ("alice", true, true), // owner → admin
        ("adam", true, true),  // admin → admin
        ("mia", true, false),  // member → read
        ("rita", true, false), // direct read
        ("wes", true, true),   // direct write
        ("nick", false, false),
    ] {
        let work = host.env.path(&format!("clone-{user}"));
        let (cloned, err) = host.git_as(
            user,
            host.env.home(),
            &["clone", "-q", URL, work.to_str().unwrap()],
        );
        assert_eq!(cloned, read, "{user} clone: {err}");
        let (archived, err) = host.git_as(
            user,
            host.env.home(),
            &[
                "archive",
                "--remote",
                URL,
                "--output",
                host.env.path(&format!("{user}.tar")).to_str().unwrap(),
                "main",
            ],
        );
        assert_eq!(archived, read, "{user} archive: {err}");
        if !read {
            assert!(
                err.contains("does not exist or nick may not access it"),
                "{err}"
            );
            continue;
        }
        let (fetched, err) = host.git_as(user, &work, &["fetch", "-q", "origin"]);
        assert!(fetched, "{user} fetch: {err}");

        std::fs::write(work.join(format!("{user}.txt")), user).unwrap();
        host.git_as(user, &work, &["add", "."]);
        let (committed, err) = host.git_as(user, &work, &["commit", "-q", "-m", user]);
        assert!(committed, "{err}");
        let before = host.refs();
        let (pushed, err) = host.git_as(user, &work, &["push", "-q", "origin", "HEAD:main"]);
        assert_eq!(pushed, write, "{user} push: {err}");
        if write {
            assert_ne!(host.refs(), before, "{user}'s push arrived");
        } else {
            assert!(err.contains("write access is needed"), "{user}: {err}");
            assert_eq!(host.refs(), before, "a denied push changes nothing");
        }
        // Keep the next user's push a fast-forward.
        if write {
            host.git_as(user, &work, &["fetch", "-q"]);
        }
    }
    // Every successful push is in the audit log with the ref it moved.
    let log = host.env.json(&["log"], 0);
    let pushes: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "git.push")
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(pushes, ["wes", "adam", "alice"], "{log}");
    let last = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "git.push")
        .unwrap();
    assert!(
        last["details"]
            .as_str()
            .unwrap()
            .starts_with("refs/heads/main "),
        "{last}"
    );
}

#[test]
fn an_unknown_repository_and_a_forbidden_one_look_the_same() {
    let host = Host::new();
    let (ok, forbidden) = host.git_as("nick", host.env.home(), &["ls-remote", URL]);
    assert!(!ok);
    let (ok, unknown) = host.git_as(
        "nick",
        host.env.home(),
        &["ls-remote", "ssh://git@cpm.test/acme/nothing.git"],
    );
    assert!(!ok);
    let line = |s: &str| {
        s.lines()
            .next()
            .unwrap_or_default()
            .replace("acme/nothing", "acme/web")
    };
    assert_eq!(line(&forbidden), line(&unknown));
}

#[test]
fn protocol_v2_is_passed_through() {
    let host = Host::new();
    let (ok, err) = host.git_as(
        "rita",
        host.env.home(),
        &["-c", "protocol.version=2", "ls-remote", URL],
    );
    assert!(ok, "{err}");
}

#[test]
fn shells_other_programs_and_path_tricks_are_refused_with_one_line() {
    let host = Host::new();
    for command in [
        "",
        "bash",
        "sh -c id",
        "git-upload-pack '/acme/web.git'; id",
        "git-upload-pack '../acme/web.git/../../etc'",
        "git-upload-pack '/etc/passwd'",
        "git-receive-pack 'acme/web.git/../other'",
        "scp -t /tmp",
    ] {
        let out = Command::new(&host.wrapper)
            .arg("cpm.test")
            .arg(command)
            .env("HOME", host.env.home())
            .env("CPM_ALLOW_UNSUPPORTED_FS", "1")
            .env("CPM_TEST_KEY_ID", host.key_id("alice"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{command:?} ran");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{command:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "{command:?} printed {:?}",
            out.stdout
        );
    }
}

#[test]
fn info_and_repo_list_answer_for_the_key() {
    let host = Host::new();
    let run = |user: &str, command: &str| {
        let out = Command::new(&host.wrapper)
            .args(["cpm.test", command])
            .env("HOME", host.env.home())
            .env("CPM_ALLOW_UNSUPPORTED_FS", "1")
            .env("CPM_TEST_KEY_ID", host.key_id(user))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let info: serde_json::Value = serde_json::from_str(&run("mia", "info")).unwrap();
    assert_eq!(info["server"], "cpm-server");
    assert_eq!(info["user"], "mia");
    assert_eq!(run("wes", "repo list"), "acme/web write\n");
    assert_eq!(run("nick", "repo list"), "");
}

#[test]
fn authorized_keys_lists_every_key_with_a_restricted_forced_command() {
    let host = Host::new();
    let text = host.env.ok(&["authorized-keys"]);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 6);
    for line in lines {
        assert!(line.starts_with("command=\""), "{line}");
        assert!(line.contains(" shell --key-id "), "{line}");
        assert!(line.contains("\",restrict ssh-ed25519 AAAA"), "{line}");
    }
}

#[test]
fn a_key_removed_after_authorized_keys_was_written_is_refused() {
    let host = Host::new();
    let id = host.key_id("rita");
    let fingerprint = host.env.json(&["user", "key", "list", "rita"], 0)[0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    host.env
        .ok(&["user", "key", "remove", "rita", &fingerprint]);
    let out = Command::new(&host.wrapper)
        .args(["cpm.test", "info"])
        .env("HOME", host.env.home())
        .env("CPM_ALLOW_UNSUPPORTED_FS", "1")
        .env("CPM_TEST_KEY_ID", id)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not registered"));
}
