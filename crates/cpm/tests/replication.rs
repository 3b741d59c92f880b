//! Replication with the real `git`: a master pushes to a neighbor, and a neighbor whose branch
//! moved on its own is reported, never overwritten.
//!
//! The neighbor is a second cpm home reached through `CPM_SSH`, a script standing in for `ssh`
//! plus the neighbor's sshd: it runs the neighbor's `cpm shell` for the key the master's server
//! entry uses, exactly what OpenSSH mode does on a real host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::Env;

struct Pair {
    master: Env,
    neighbor: Env,
    ssh: std::path::PathBuf,
}

impl Pair {
    fn new() -> Pair {
        let master = Env::new();
        let neighbor = Env::new();
        for env in [&master, &neighbor] {
            env.ok(&["org", "create", "acme"]);
            env.ok(&["repo", "create", "acme/web"]);
        }
        // The master's replication key is a user with write access on the neighbor.
        neighbor.trust_mirror_key_of(&master);
        neighbor.ok(&["access", "grant", "master", "acme/web", "write"]);
        let key_id = neighbor.json(&["user", "key", "list", "master"], 0)[0]["id"].to_string();

        let ssh = master.path("fake-ssh.sh");
        std::fs::write(
            &ssh,
            format!(
                "#!/bin/sh\nfor last; do :; done\nHOME='{}' CPM_ALLOW_UNSUPPORTED_FS=1 SSH_ORIGINAL_COMMAND=\"$last\" exec {} shell --key-id {key_id}\n",
                neighbor.home().display(),
                env!("CARGO_BIN_EXE_cpm")
            ),
        )
        .unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
        master.ok(&[
            "neighbors",
            "add",
            "peer",
            "127.0.0.1",
            "--port",
            "2222",
            "--key",
            "mirror",
        ]);
        Pair {
            master,
            neighbor,
            ssh,
        }
    }

    fn sync(&self) -> (i32, serde_json::Value) {
        let out = self
            .master
            .cmd()
            .args(["sync", "--format", "json"])
            .env("CPM_SSH", &self.ssh)
            .output()
            .unwrap();
        let doc = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code().unwrap_or(-1), doc)
    }

    /// Commits a file straight into one side's repository through a local clone.
    fn commit(&self, env: &Env, file: &str) -> String {
        let repo = env.repo_dir("acme", "web");
        let work = env.path(&format!("work-{file}"));
        if !work.exists() {
            env.git(
                None,
                &[
                    "clone",
                    "-q",
                    repo.to_str().unwrap(),
                    work.to_str().unwrap(),
                ],
            );
        }
        let has_main = Command::new("git")
            .current_dir(&work)
            .args(["fetch", "-q", "origin"])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("git")
                .current_dir(&work)
                .args(["rev-parse", "-q", "--verify", "origin/main"])
                .output()
                .is_ok_and(|o| o.status.success());
        if has_main {
            env.git(Some(&work), &["merge", "-q", "--ff-only", "origin/main"]);
        }
        std::fs::write(work.join(file), file).unwrap();
        env.git(Some(&work), &["add", file]);
        env.git(Some(&work), &["commit", "-q", "-m", file]);
        env.git(Some(&work), &["push", "-q", "origin", "HEAD:main"]);
        env.git(Some(&work), &["rev-parse", "HEAD"])
            .trim()
            .to_string()
    }

    fn head(env: &Env) -> String {
        let repo = env.repo_dir("acme", "web");
        env.git(
            None,
            &[
                "--git-dir",
                repo.to_str().unwrap(),
                "rev-parse",
                "refs/heads/main",
            ],
        )
        .trim()
        .to_string()
    }
}

#[test]
fn a_push_to_the_master_reaches_the_neighbor_and_the_status_is_recorded() {
    let pair = Pair::new();
    let commit = pair.commit(&pair.master, "one");
    let (code, outcomes) = pair.sync();
    assert_eq!(code, 0, "{outcomes}");
    assert_eq!(outcomes[0]["result"], "ok");
    assert_eq!(
        outcomes[0]["pushed"],
        serde_json::json!(["refs/heads/main"])
    );
    assert_eq!(Pair::head(&pair.neighbor), commit);

    let servers = pair.master.json(&["neighbors", "list"], 0);
    let status = &servers[0]["replication"][0];
    assert_eq!(status["repository"], "acme/web");
    assert_eq!(status["last_pushed_commit"], commit.as_str());
    assert!(status["last_error"].is_null());
    // The neighbor audited the push as the master's key user.
    let log = pair.neighbor.json(&["log"], 0);
    assert_eq!(log[0]["action"], "git.push");
    assert_eq!(log[0]["actor"], "master");

    // Nothing new: up to date, still ok.
    let (code, outcomes) = pair.sync();
    assert_eq!(code, 0);
    assert_eq!(outcomes[0]["pushed"], serde_json::json!([]));
}

#[test]
fn a_neighbor_that_diverged_is_reported_and_not_overwritten() {
    let pair = Pair::new();
    pair.commit(&pair.master, "one");
    assert_eq!(pair.sync().0, 0);
    // Both sides move main independently.
    let theirs = pair.commit(&pair.neighbor, "theirs");
    pair.commit(&pair.master, "ours");
    let (code, outcomes) = pair.sync();
    assert_eq!(
        code, 1,
        "a diverged target is a failure to report: {outcomes}"
    );
    assert_eq!(outcomes[0]["result"], "diverged");
    assert_eq!(
        outcomes[0]["diverged"],
        serde_json::json!(["refs/heads/main"])
    );
    assert_eq!(
        Pair::head(&pair.neighbor),
        theirs,
        "the neighbor's commit was kept"
    );
    let servers = pair.master.json(&["server", "list"], 0);
    let error = servers[0]["replication"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("refs/heads/main"), "{error}");
}

#[test]
fn a_server_without_a_key_is_reported_not_skipped_silently() {
    let env = Env::new();
    env.ok(&["org", "create", "acme"]);
    env.ok(&["repo", "create", "acme/web"]);
    env.ok(&["server", "add", "backup", "127.0.0.1"]);
    let out = env
        .cmd()
        .args(["sync", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc[0]["result"], "error");
    assert!(doc[0]["error"].as_str().unwrap().contains("has no key"));
}

#[test]
fn a_push_through_cpm_queues_replication_by_itself() {
    let pair = Pair::new();
    // A user pushes to the master over OpenSSH mode; the post-receive trigger syncs the neighbor.
    let pusher = pair.master.ssh_keygen("dev");
    pair.master
        .ok(&["user", "add", "dev", "--key-file", pusher.to_str().unwrap()]);
    pair.master
        .ok(&["access", "grant", "dev", "acme/web", "write"]);
    let dev_key = pair.master.json(&["user", "key", "list", "dev"], 0)[0]["id"].to_string();
    let wrapper = pair.master.path("dev-ssh.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor last; do :; done\nHOME='{}' CPM_ALLOW_UNSUPPORTED_FS=1 CPM_SSH='{}' SSH_ORIGINAL_COMMAND=\"$last\" exec {} shell --key-id {dev_key}\n",
            pair.master.home().display(),
            pair.ssh.display(),
            env!("CARGO_BIN_EXE_cpm")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = pair.master.path("devwork");
    std::fs::create_dir_all(&work).unwrap();
    pair.master.git(Some(&work), &["init", "-q"]);
    std::fs::write(work.join("f"), "x").unwrap();
    pair.master.git(Some(&work), &["add", "f"]);
    pair.master.git(Some(&work), &["commit", "-q", "-m", "x"]);
    let out = Command::new("git")
        .current_dir(&work)
        .args(["push", "-q", "ssh://git@master/acme/web.git", "HEAD:main"])
        .env("GIT_SSH_COMMAND", &wrapper)
        .env("HOME", pair.master.home())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = Pair::head(&pair.master);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Pair::head_or_none(&pair.neighbor) != Some(want.clone()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the neighbor never got the push"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl Pair {
    fn head_or_none(env: &Env) -> Option<String> {
        let repo = env.repo_dir("acme", "web");
        let out = Command::new("git")
            .args([
                "--git-dir",
                repo.to_str().unwrap(),
                "rev-parse",
                "-q",
                "--verify",
                "refs/heads/main",
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}
