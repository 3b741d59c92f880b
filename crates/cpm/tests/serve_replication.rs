//! Replication between two real `cpm serve` instances, with the real OpenSSH client and `git`.
//!
//! The master and the neighbor are two cpm homes, each with its own `cpm serve --listen
//! 127.0.0.1:0`. The neighbor knows the master by the public half of the master's `cpm key
//! generate mirror` key (a user `master` with write on acme/web); the master has the neighbor
//! registered with `cpm neighbors add peer 127.0.0.1 --port PORT --key mirror`. A push to the
//! master's `cpm serve` queues `cpm sync acme/web`, which pushes with the real `ssh`, pinning the
//! neighbor's host key in the master's `~/.cpm/known_hosts`.
//!
//! Also here: a server killed with SIGKILL in the middle of a large push leaves a repository and a
//! database that are whole. Every client runs under a deadline and every server is killed when its
//! test ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use common::server::{Ran, Server, finish, run};
use serde_json::Value;

/// How long background work (the post-push `cpm sync`) may take to show its effect.
const SETTLE: Duration = Duration::from_secs(10);

/// Polls `probe` until it gives a value, failing the test after [`SETTLE`].
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ssh://git@127.0.0.1:PORT/acme/web.git`.
fn url(port: u16) -> String {
    format!("ssh://git@127.0.0.1:{port}/acme/web.git")
}

/// The ssh command line for the key pair `<env home>/<key>`, as GIT_SSH_COMMAND takes it.
fn ssh_command(env: &Env, key: &str) -> String {
    format!(
        "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile={} -o BatchMode=yes -o ConnectTimeout=10 -o LogLevel=ERROR",
        env.path(key).display(),
        env.path("client_known_hosts").display(),
    )
}

/// `git` in `dir` as the owner of the key pair `<env home>/<key>`.
fn git_cmd(env: &Env, key: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .env("HOME", env.home())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_SSH_COMMAND", ssh_command(env, key))
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    cmd
}

fn git(env: &Env, key: &str, dir: &Path, args: &[&str]) -> Ran {
    run(git_cmd(env, key, dir, args))
}

/// Clones acme/web from the server on `port` into `<home>/<work>` (once), brings it up to date,
/// commits the file `file` and pushes it to main; returns the commit.
fn commit_and_push(env: &Env, key: &str, port: u16, work: &str, file: &str) -> String {
    let dir = env.path(work);
    if !dir.exists() {
        let cloned = git(
            env,
            key,
            env.home(),
            &["clone", "-q", &url(port), dir.to_str().unwrap()],
        );
        assert!(cloned.ok(), "clone as {key}: {cloned:?}");
    } else {
        let fetched = git(env, key, &dir, &["fetch", "-q", "origin"]);
        assert!(fetched.ok(), "fetch as {key}: {fetched:?}");
        if git(
            env,
            key,
            &dir,
            &["rev-parse", "-q", "--verify", "origin/main"],
        )
        .ok()
        {
            let reset = git(env, key, &dir, &["reset", "-q", "--hard", "origin/main"]);
            assert!(reset.ok(), "{reset:?}");
        }
    }
    std::fs::write(dir.join(file), file).unwrap();
    assert!(git(env, key, &dir, &["add", file]).ok());
    let committed = git(env, key, &dir, &["commit", "-q", "-m", file]);
    assert!(committed.ok(), "{committed:?}");
    let pushed = git(
        env,
        key,
        &dir,
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    assert!(pushed.ok(), "push as {key}: {pushed:?}");
    let head = git(env, key, &dir, &["rev-parse", "HEAD"]);
    head.stdout.trim().to_string()
}

/// Where `refs/heads/main` of acme/web points on `env`'s side, if anywhere.
fn head(env: &Env) -> Option<String> {
    let repo = env.repo_dir("acme", "web");
    let out = Command::new("git")
        .args(["--git-dir", repo.to_str().unwrap()])
        .args(["rev-parse", "-q", "--verify", "refs/heads/main"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A master and a neighbor, both serving.
struct Pair {
    master: Env,
    neighbor: Env,
    master_server: Server,
    neighbor_server: Option<Server>,
}

impl Pair {
    /// Both sides have acme/web (empty). On the master, `dev` may write; on the neighbor, `master`
    /// (the master's mirror key) and `local` may write.
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
        let local = neighbor.ssh_keygen("local");
        neighbor.ok(&[
            "user",
            "add",
            "local",
            "--key-file",
            local.to_str().unwrap(),
        ]);
        neighbor.ok(&["access", "grant", "local", "acme/web", "write"]);
        let dev = master.ssh_keygen("dev");
        master.ok(&["user", "add", "dev", "--key-file", dev.to_str().unwrap()]);
        master.ok(&["access", "grant", "dev", "acme/web", "write"]);

        let neighbor_server = Server::start(&neighbor);
        let port = neighbor_server.port.to_string();
        master.ok(&[
            "neighbors",
            "add",
            "peer",
            "127.0.0.1",
            "--port",
            &port,
            "--key",
            "mirror",
        ]);
        let master_server = Server::start(&master);
        Pair {
            master,
            neighbor,
            master_server,
            neighbor_server: Some(neighbor_server),
        }
    }

    fn neighbor_port(&self) -> u16 {
        self.neighbor_server.as_ref().unwrap().port
    }

    /// `dev` pushes a commit adding `file` to the master through its `cpm serve`.
    fn push_to_master(&self, file: &str) -> String {
        commit_and_push(
            &self.master,
            "dev",
            self.master_server.port,
            "dev-work",
            file,
        )
    }

    /// The master's replication status of acme/web on `peer`.
    fn status(&self) -> Value {
        let servers = self.master.json(&["neighbors", "list"], 0);
        assert_eq!(servers[0]["name"], "peer", "{servers}");
        servers[0]["replication"][0].clone()
    }

    /// Waits until the neighbor has `commit` on main and the master has recorded pushing it.
    fn wait_replicated(&self, commit: &str) {
        wait_for("the neighbor to get the push", || {
            (head(&self.neighbor).as_deref() == Some(commit)).then_some(())
        });
        wait_for("the master to record the push", || {
            let status = self.status();
            (status["last_pushed_commit"] == commit).then_some(())
        });
    }

    /// Waits until the master records a replication error that contains `text`; returns it.
    fn wait_error(&self, text: &str) -> String {
        wait_for(&format!("a replication error with {text:?}"), || {
            let status = self.status();
            status["last_error"]
                .as_str()
                .filter(|e| e.contains(text))
                .map(str::to_string)
        })
    }

    /// `cpm sync acme/web --format json` on the master: (exit code, outcomes).
    fn sync(&self) -> (i32, Value) {
        let (code, out, err) = self.master.run(&["sync", "acme/web", "--format", "json"]);
        let doc = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        (code, doc)
    }
}

#[test]
fn a_push_to_the_master_reaches_the_neighbor_by_itself_and_pins_its_host_key() {
    let pair = Pair::new();
    let commit = pair.push_to_master("one");
    // Nobody runs `cpm sync`: the master's post-push trigger does.
    pair.wait_replicated(&commit);
    let status = pair.status();
    assert_eq!(status["repository"], "acme/web");
    assert!(status["last_error"].is_null(), "{status}");
    assert!(status["last_ok_at"].is_string(), "{status}");

    // The neighbor audited the push as the master's mirror user.
    let log = pair.neighbor.json(&["log"], 0);
    let push = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "git.push")
        .unwrap_or_else(|| panic!("no git.push in {log}"));
    assert_eq!(push["actor"], "master");
    assert_eq!(push["target"], "acme/web");

    // The master pinned the neighbor's host key under its address and port.
    let known = pair.master.path(".cpm/known_hosts");
    let pinned = std::fs::read_to_string(&known).unwrap();
    let host_key = std::fs::read_to_string(pair.neighbor.path(".cpm/host_ed25519.pub")).unwrap();
    let blob = host_key.split_whitespace().nth(1).unwrap();
    assert!(pinned.contains(blob), "{pinned}");
    let mut lookup = Command::new("ssh-keygen");
    lookup
        .arg("-F")
        .arg(format!("[127.0.0.1]:{}", pair.neighbor_port()))
        .arg("-f")
        .arg(&known);
    let found = run(lookup);
    assert!(
        found.ok(),
        "the neighbor is not pinned by address: {found:?}"
    );

    // A second push follows the first.
    let second = pair.push_to_master("two");
    pair.wait_replicated(&second);
    let (code, outcomes) = pair.sync();
    assert_eq!(code, 0, "{outcomes}");
    assert_eq!(outcomes[0]["result"], "ok");
    assert_eq!(outcomes[0]["pushed"], serde_json::json!([]));
}

#[test]
fn a_neighbor_that_moved_on_its_own_is_reported_diverged_and_keeps_its_commit() {
    let pair = Pair::new();
    let first = pair.push_to_master("one");
    pair.wait_replicated(&first);

    // Someone with write access on the neighbor commits there directly.
    let theirs = commit_and_push(
        &pair.neighbor,
        "local",
        pair.neighbor_port(),
        "local-work",
        "theirs",
    );
    assert_eq!(head(&pair.neighbor).as_deref(), Some(theirs.as_str()));
    let ours = pair.push_to_master("ours");
    assert_ne!(ours, theirs);

    // The post-push sync finds the neighbor diverged...
    pair.wait_error("refs/heads/main");
    // ...and so does an explicit one.
    let (code, outcomes) = pair.sync();
    assert_eq!(code, 1, "a diverged neighbor is a failure: {outcomes}");
    assert_eq!(outcomes[0]["result"], "diverged", "{outcomes}");
    assert_eq!(
        outcomes[0]["diverged"],
        serde_json::json!(["refs/heads/main"])
    );
    assert_eq!(
        head(&pair.neighbor).as_deref(),
        Some(theirs.as_str()),
        "the neighbor's commit was overwritten"
    );
    let status = pair.status();
    assert_eq!(status["last_pushed_commit"], first.as_str(), "{status}");
}

#[test]
fn a_neighbor_whose_host_key_changed_is_refused_and_left_alone() {
    let mut pair = Pair::new();
    let first = pair.push_to_master("one");
    pair.wait_replicated(&first);

    // The neighbor comes back on the same port with a new host key.
    let old = pair.neighbor_server.take().unwrap();
    let (port, old_fingerprint) = (old.port, old.fingerprint.clone());
    drop(old);
    std::fs::remove_file(pair.neighbor.path(".cpm/host_ed25519")).unwrap();
    let _ = std::fs::remove_file(pair.neighbor.path(".cpm/host_ed25519.pub"));
    let again = Server::start_on(&pair.neighbor, port);
    assert_ne!(again.fingerprint, old_fingerprint, "no new host key");
    pair.neighbor_server = Some(again);
    let pinned_before = std::fs::read_to_string(pair.master.path(".cpm/known_hosts")).unwrap();

    let second = pair.push_to_master("two");
    let host_key_error = |e: &str| {
        e.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || e.contains("Host key verification failed")
    };
    // The post-push sync is refused...
    let error = wait_for("the post-push sync to fail", || {
        pair.status()["last_error"].as_str().map(str::to_string)
    });
    assert!(host_key_error(&error), "{error}");
    // ...and so is an explicit one.
    let (code, outcomes) = pair.sync();
    assert_eq!(code, 1, "{outcomes}");
    assert_eq!(outcomes[0]["result"], "error", "{outcomes}");
    let error = outcomes[0]["error"].as_str().unwrap();
    assert!(host_key_error(error), "{error}");

    assert_eq!(
        head(&pair.neighbor).as_deref(),
        Some(first.as_str()),
        "the neighbor was changed through an unverified host"
    );
    let log = pair.neighbor.json(&["log"], 0);
    let pushes = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "git.push")
        .count();
    assert_eq!(pushes, 1, "{log}");
    let status = pair.status();
    assert_eq!(status["last_pushed_commit"], first.as_str(), "{status}");
    assert_ne!(first, second);
    // The pin stays as it was: a changed key is never accepted.
    assert_eq!(
        std::fs::read_to_string(pair.master.path(".cpm/known_hosts")).unwrap(),
        pinned_before
    );
}

/// The ids of every process descending from `pid` (from /proc).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.push((child, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(child, _)| *child),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Whether a process is still running (a zombie no longer runs).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// 30 MiB that git cannot compress.
fn random_bytes() -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    (0..30 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect()
}

#[test]
fn a_server_killed_in_the_middle_of_a_push_leaves_repository_and_database_whole() {
    let env = Env::new();
    env.ok(&["org", "create", "acme"]);
    env.ok(&["repo", "create", "acme/web"]);
    let dev = env.ssh_keygen("dev");
    env.ok(&["user", "add", "dev", "--key-file", dev.to_str().unwrap()]);
    env.ok(&["access", "grant", "dev", "acme/web", "write"]);
    let server = Server::start(&env);
    let old = commit_and_push(&env, "dev", server.port, "work", "small");

    let work = env.path("work");
    std::fs::write(work.join("big.bin"), random_bytes()).unwrap();
    assert!(git(&env, "dev", &work, &["add", "big.bin"]).ok());
    assert!(git(&env, "dev", &work, &["commit", "-q", "-m", "big"]).ok());
    let new = git(&env, "dev", &work, &["rev-parse", "HEAD"])
        .stdout
        .trim()
        .to_string();

    let repo = env.repo_dir("acme", "web");
    let objects = repo.join("objects");
    let push = git_cmd(&env, "dev", &work, &["push", "-q", "origin", "HEAD:main"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once receive-pack has started taking the pack in (its quarantine directory
    // appears), or after a short while whatever happened.
    let started = Instant::now();
    let receiving = || {
        std::fs::read_dir(&objects)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("incoming"))
    };
    while !receiving() && started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let seen = receiving();
    std::thread::sleep(Duration::from_millis(20));
    let orphans = descendants(server.pid());
    let killed_after = started.elapsed();
    drop(server); // SIGKILL
    let pushed = finish(push, "the interrupted push");
    eprintln!(
        "killed after {killed_after:?} (receiving: {seen}); {} orphans; push: {pushed:?}",
        orphans.len()
    );

    // Whatever git the server had started finishes on its own (EOF, EPIPE); wait for that.
    wait_for("the server's git processes to end", || {
        (!orphans.iter().any(|&pid| running(pid))).then_some(())
    });

    let fsck = Command::new("git")
        .args(["--git-dir", repo.to_str().unwrap(), "fsck", "--full"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "git fsck: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let main = head(&env).expect("main is gone or unreadable");
    assert!(
        main == old || main == new,
        "main is {main}, neither {old} nor {new}"
    );
    if pushed.ok() {
        assert_eq!(main, new, "git push succeeded but main did not move");
    } else {
        assert!(!pushed.stderr.is_empty(), "the push failed silently");
    }
    env.ok(&["db", "check"]);
    let log = env.json(&["log"], 0);
    assert!(log.as_array().is_some_and(|l| !l.is_empty()), "{log}");
    env.assert_foreign_keys_hold();

    // A new server takes the push again.
    let server = Server::start(&env);
    let pushed = git(
        &env,
        "dev",
        &work,
        &["remote", "set-url", "origin", &url(server.port)],
    );
    assert!(pushed.ok(), "{pushed:?}");
    let pushed = git(&env, "dev", &work, &["push", "-q", "origin", "HEAD:main"]);
    assert!(
        pushed.ok(),
        "push after the restart: {pushed:?} {:?}",
        server.log()
    );
    assert_eq!(head(&env).as_deref(), Some(new.as_str()));
}
