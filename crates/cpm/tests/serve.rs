//! `cpm serve`, the built-in SSH server, driven by the real OpenSSH client and the real `git`.
//!
//! Each test starts its own `cpm serve --listen 127.0.0.1:0` as a child process (reading the port
//! from its `listening on` log line), sets up users, keys and grants with the real `cpm` binary, and talks
//! to it with `ssh -i KEY -o IdentitiesOnly=yes -o BatchMode=yes …` and `git` over `ssh://`. Every
//! client runs under a deadline, and the server is killed when the test ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Env;
use common::server::{Ran, Server, run};

const URL: &str = "ssh://git@127.0.0.1/acme/web.git";

/// A server with acme/web (one commit on main) and users: alice owns acme, rita may read,
/// wes may write, nick may do nothing; eve's key is not registered at all.
struct Host {
    env: Env,
    server: Server,
    repo: PathBuf,
    /// The commit on main.
    head: String,
}

impl Host {
    fn new() -> Host {
        let env = Env::new();
        env.ok(&["org", "create", "acme"]);
        for user in ["alice", "rita", "wes", "nick"] {
            let key = env.ssh_keygen(user);
            env.ok(&["user", "add", user, "--key-file", key.to_str().unwrap()]);
        }
        env.ssh_keygen("eve");
        env.ok(&["org", "member", "add", "acme", "alice", "--role", "owner"]);
        env.ok(&["repo", "create", "acme/web"]);
        env.ok(&["access", "grant", "rita", "acme/web", "read"]);
        env.ok(&["access", "grant", "wes", "acme/web", "write"]);
        let repo = env.repo_dir("acme", "web");
        let head = env.seed_commit("acme", "web");
        let server = Server::start(&env);
        Host {
            env,
            server,
            repo,
            head,
        }
    }

    /// The ssh command line for `user`'s key, as GIT_SSH_COMMAND takes it.
    fn ssh_command(&self, user: &str) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile={} -o BatchMode=yes -o ConnectTimeout=10 -o LogLevel=ERROR -p {}",
            self.env.path(user).display(),
            self.env.path("known_hosts").display(),
            self.server.port
        )
    }

    /// `ssh` as `user` with extra arguments (options, then `git@127.0.0.1`, then the command).
    fn ssh(&self, user: &str, args: &[&str]) -> Ran {
        let line = self.ssh_command(user);
        let mut words = line.split(' ');
        let mut cmd = Command::new(words.next().unwrap());
        cmd.args(words).args(args).env("HOME", self.env.home());
        run(cmd)
    }

    /// `git` as `user` in `dir`.
    fn git(&self, user: &str, dir: &Path, args: &[&str]) -> Ran {
        let mut cmd = Command::new("git");
        cmd.current_dir(dir)
            .args(["-c", "init.defaultBranch=main"])
            .args(args)
            .env("HOME", self.env.home())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_SSH_COMMAND", self.ssh_command(user))
            .env("GIT_AUTHOR_NAME", "T")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "T")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR");
        run(cmd)
    }

    /// Every ref of acme/web.
    fn refs(&self) -> String {
        self.env.git(
            None,
            &["--git-dir", self.repo.to_str().unwrap(), "for-each-ref"],
        )
    }

    /// Clones acme/web as `user` into `name` and commits a file there.
    fn clone_and_commit(&self, user: &str, name: &str) -> PathBuf {
        let work = self.env.path(name);
        let cloned = self.git(
            user,
            self.env.home(),
            &["clone", "-q", URL, work.to_str().unwrap()],
        );
        assert!(cloned.ok(), "{user} clone: {cloned:?}");
        std::fs::write(work.join(format!("{name}.txt")), name).unwrap();
        assert!(self.git(user, &work, &["add", "."]).ok());
        assert!(self.git(user, &work, &["commit", "-q", "-m", name]).ok());
        work
    }
}

#[test]
fn a_push_with_write_access_arrives_is_audited_and_a_reader_clones_it() {
    let host = Host::new();
    let work = host.clone_and_commit("wes", "wes-work");
    let pushed = host.git("wes", &work, &["push", "-q", "origin", "HEAD:main"]);
    assert!(pushed.ok(), "{pushed:?}");
    let new_head = host
        .git("wes", &work, &["rev-parse", "HEAD"])
        .stdout
        .trim()
        .to_string();
    assert!(host.refs().contains(&new_head), "{}", host.refs());

    // The audit log has the push, by wes, with the ref it moved.
    let log = host.env.json(&["log"], 0);
    let push = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "git.push")
        .unwrap_or_else(|| panic!("no git.push in {log}"));
    assert_eq!(push["actor"], "wes");
    assert_eq!(push["target"], "acme/web");
    let details = push["details"].as_str().unwrap();
    assert!(details.starts_with("refs/heads/main "), "{details}");
    assert!(details.ends_with(&new_head[..7]), "{details}");
    host.server
        .wait_for_log("wes: git-receive-pack '/acme/web.git' → git exited with 0");

    // A reader's clone has the pushed commit.
    let copy = host.env.path("rita-copy");
    let cloned = host.git(
        "rita",
        host.env.home(),
        &["clone", "-q", URL, copy.to_str().unwrap()],
    );
    assert!(cloned.ok(), "{cloned:?}");
    let log = host.git("rita", &copy, &["log", "--format=%H %s"]).stdout;
    assert!(log.starts_with(&format!("{new_head} wes-work")), "{log}");
    assert!(log.contains(&host.head), "{log}");
}

#[test]
fn packs_larger_than_the_ssh_window_stream_both_ways() {
    let host = Host::new();
    let work = host.clone_and_commit("alice", "alice-work");
    // 8 MiB that git cannot compress: four times the 2 MiB channel window, in each direction.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let big: Vec<u8> = (0..8 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    std::fs::write(work.join("big.bin"), &big).unwrap();
    assert!(host.git("alice", &work, &["add", "big.bin"]).ok());
    assert!(
        host.git("alice", &work, &["commit", "-q", "-m", "big"])
            .ok()
    );
    let pushed = host.git("alice", &work, &["push", "-q", "origin", "HEAD:main"]);
    assert!(pushed.ok(), "{pushed:?}");

    let copy = host.env.path("big-copy");
    let cloned = host.git(
        "rita",
        host.env.home(),
        &["clone", "-q", URL, copy.to_str().unwrap()],
    );
    assert!(cloned.ok(), "{cloned:?}");
    assert!(
        std::fs::read(copy.join("big.bin")).unwrap() == big,
        "the clone's big.bin differs"
    );
}

#[test]
fn a_push_with_only_read_access_is_denied_and_changes_nothing() {
    let host = Host::new();
    let work = host.clone_and_commit("rita", "rita-work");
    let before = host.refs();
    let pushed = host.git("rita", &work, &["push", "origin", "HEAD:main"]);
    assert!(!pushed.ok(), "{pushed:?}");
    assert!(
        pushed
            .stderr
            .contains("cpm: denied: rita may not push to 'acme/web': write access is needed"),
        "{}",
        pushed.stderr
    );
    assert_eq!(host.refs(), before);
    let log = host.env.json(&["log"], 0);
    assert!(!log.to_string().contains("git.push"), "{log}");
    host.server
        .wait_for_log("rita: git-receive-pack '/acme/web.git' → refused");
}

#[test]
fn an_unknown_key_is_refused_at_authentication() {
    let host = Host::new();
    let ran = host.ssh("eve", &["git@127.0.0.1", "info"]);
    assert_eq!(ran.code, Some(255), "{ran:?}");
    assert!(
        ran.stderr.contains("Permission denied (publickey)"),
        "{}",
        ran.stderr
    );
    assert!(ran.stdout.is_empty());
    let fingerprint = common::fingerprint(&host.env.path("eve.pub"));
    host.server
        .wait_for_log(&format!("rejected key {fingerprint}"));
    // The same for git.
    let cloned = host.git("eve", host.env.home(), &["ls-remote", URL]);
    assert!(!cloned.ok());
    assert!(
        cloned.stderr.contains("Permission denied (publickey)"),
        "{}",
        cloned.stderr
    );
}

#[test]
fn a_forbidden_repository_and_a_missing_one_get_the_same_answer() {
    let host = Host::new();
    let forbidden = host.git("nick", host.env.home(), &["ls-remote", URL]);
    let missing = host.git(
        "nick",
        host.env.home(),
        &["ls-remote", "ssh://git@127.0.0.1/acme/nothing.git"],
    );
    assert!(!forbidden.ok() && !missing.ok());
    let first = |s: &str| {
        s.lines()
            .next()
            .unwrap_or_default()
            .replace("acme/nothing", "acme/web")
    };
    assert_eq!(first(&forbidden.stderr), first(&missing.stderr));
    assert_eq!(
        first(&forbidden.stderr),
        "cpm: denied: repository 'acme/web' does not exist or nick may not access it"
    );
    // Archive is refused the same way.
    let tar = host.env.path("nick.tar");
    let archived = host.git(
        "nick",
        host.env.home(),
        &[
            "archive",
            "--remote",
            URL,
            "--output",
            tar.to_str().unwrap(),
            "main",
        ],
    );
    assert!(!archived.ok());
    assert!(
        archived
            .stderr
            .contains("does not exist or nick may not access it"),
        "{}",
        archived.stderr
    );
}

#[test]
fn info_and_repo_list_answer_for_the_key_whatever_the_user_name() {
    let host = Host::new();
    let started = Instant::now();
    let ran = host.ssh("rita", &["anybody@127.0.0.1", "info"]);
    let took = started.elapsed();
    assert!(ran.ok(), "{ran:?}");
    let info: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(info["server"], "cpm-server");
    assert_eq!(info["user"], "rita");
    eprintln!("one `ssh … info` round trip: {took:?}");
    let listed = host.ssh("wes", &["git@127.0.0.1", "repo list"]);
    assert!(listed.ok(), "{listed:?}");
    assert_eq!(listed.stdout, "acme/web write\n");
    host.server.wait_for_log("rita: info → ok after ");
}

#[test]
fn shells_ptys_other_programs_subsystems_and_forwarding_are_refused() {
    let host = Host::new();
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_port = target.local_addr().unwrap().port();

    // A plain `ssh host` asks for a shell.
    let shell = host.ssh("alice", &["git@127.0.0.1"]);
    assert_eq!(shell.code, Some(1), "{shell:?}");
    assert!(
        shell
            .stderr
            .contains("cpm: interactive shells are not available; use git"),
        "{}",
        shell.stderr
    );
    assert!(shell.stdout.is_empty());

    // A forced PTY is refused, and the client gives up.
    let pty = host.ssh("alice", &["-tt", "git@127.0.0.1"]);
    assert!(!pty.ok(), "{pty:?}");
    assert!(
        pty.stderr.contains("PTY allocation request failed"),
        "{}",
        pty.stderr
    );
    host.server.wait_for_log("alice: refused a PTY");

    // Any other program.
    for command in [
        "bash",
        "sh -c id",
        "git-upload-pack '/acme/web.git'; id",
        "scp -t /tmp",
    ] {
        let ran = host.ssh("alice", &["git@127.0.0.1", command]);
        assert_eq!(ran.code, Some(1), "{command}: {ran:?}");
        assert!(
            ran.stderr.starts_with("cpm: denied: "),
            "{command}: {}",
            ran.stderr
        );
        assert_eq!(ran.stderr.lines().count(), 1, "{command}: {}", ran.stderr);
        assert!(ran.stdout.is_empty());
    }

    // sftp and other subsystems.
    let sftp = host.ssh("alice", &["-s", "git@127.0.0.1", "sftp"]);
    assert!(!sftp.ok());
    assert!(
        sftp.stderr.contains("subsystem request failed"),
        "{}",
        sftp.stderr
    );

    // Local forwarding (`-W` is the same request without a listener)...
    let stdio = host.ssh(
        "alice",
        &["-W", &format!("127.0.0.1:{target_port}"), "git@127.0.0.1"],
    );
    assert!(!stdio.ok());
    assert!(
        stdio.stderr.contains("stdio forwarding failed"),
        "{}",
        stdio.stderr
    );
    host.server.wait_for_log(&format!(
        "alice: refused port forwarding to 127.0.0.1:{target_port}"
    ));

    // ...including through a listening `ssh -N -L`: the connection is closed, nothing reaches the
    // target.
    let local_port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let line = host.ssh_command("alice");
    let mut words = line.split(' ');
    let mut forward = Command::new(words.next().unwrap())
        .args(words)
        .args([
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            &format!("127.0.0.1:{local_port}:127.0.0.1:{target_port}"),
            "git@127.0.0.1",
        ])
        .env("HOME", host.env.home())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut conn = loop {
        if let Ok(conn) = TcpStream::connect(("127.0.0.1", local_port)) {
            break conn;
        }
        assert!(Instant::now() < deadline, "ssh -L never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    match conn.read(&mut buf) {
        // Closed (or reset) by ssh once the server refused the channel.
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the forwarded connection must be closed, got {other:?}"),
    }
    host.server.wait_for_logs(
        &format!("alice: refused port forwarding to 127.0.0.1:{target_port}"),
        2,
    );
    let _ = forward.kill();
    let _ = forward.wait();
    target.set_nonblocking(true).unwrap();
    assert!(
        target.accept().is_err(),
        "a forwarded connection reached the target"
    );

    // Remote forwarding.
    let remote = host.ssh(
        "alice",
        &[
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            "127.0.0.1:0:127.0.0.1:22",
            "git@127.0.0.1",
        ],
    );
    assert!(!remote.ok());
    assert!(
        remote.stderr.contains("remote port forwarding failed"),
        "{}",
        remote.stderr
    );
}

#[test]
fn protocol_v2_ls_remote_and_archive_work_with_read_access() {
    let host = Host::new();
    let mut cmd = Command::new("git");
    cmd.args(["-c", "protocol.version=2", "ls-remote", URL])
        .current_dir(host.env.home())
        .env("HOME", host.env.home())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_SSH_COMMAND", host.ssh_command("rita"))
        .env("GIT_TRACE_PACKET", "1");
    let listed = run(cmd);
    assert!(listed.ok(), "{listed:?}");
    assert!(
        listed
            .stdout
            .contains(&format!("{}\trefs/heads/main", host.head)),
        "{}",
        listed.stdout
    );
    // The server answered in protocol v2: GIT_PROTOCOL reached git upload-pack.
    assert!(listed.stderr.contains("< version 2"), "{}", listed.stderr);

    let tar = host.env.path("web.tar");
    let archived = host.git(
        "rita",
        host.env.home(),
        &[
            "archive",
            "--remote",
            URL,
            "--output",
            tar.to_str().unwrap(),
            "main",
        ],
    );
    assert!(archived.ok(), "{archived:?}");
    let mut cmd = Command::new("tar");
    cmd.arg("tf").arg(&tar);
    let listing = run(cmd);
    assert_eq!(listing.stdout, "README\n", "{listing:?}");
}

#[test]
fn the_host_key_is_private_and_survives_a_restart() {
    let host = Host::new();
    let key = host.env.path(".cpm/host_ed25519");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        host.server.fingerprint,
        common::fingerprint(&host.env.path(".cpm/host_ed25519.pub"))
    );
    // The client pins the key under a fixed name (the port changes with every start).
    let pinned = |env: &Env, port: u16, checking: &str| {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(env.path("rita"))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "HostKeyAlias=cpm-test",
            ])
            .arg("-o")
            .arg(format!("StrictHostKeyChecking={checking}"))
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                env.path("pinned_hosts").display()
            ))
            .args(["-p", &port.to_string(), "git@127.0.0.1", "info"])
            .env("HOME", env.home());
        run(cmd)
    };
    let first = pinned(&host.env, host.server.port, "accept-new");
    assert!(first.ok(), "{first:?}");

    let Host { env, server, .. } = host;
    let fingerprint = server.fingerprint.clone();
    drop(server);
    let again = Server::start(&env);
    assert_eq!(again.fingerprint, fingerprint);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let second = pinned(&env, again.port, "yes");
    assert!(
        second.ok(),
        "the restarted server's key no longer matches: {second:?}"
    );
}

#[test]
fn ten_clones_at_once_all_succeed() {
    let host = Arc::new(Host::new());
    let started = Instant::now();
    let clones: Vec<_> = (0..10)
        .map(|i| {
            let host = Arc::clone(&host);
            std::thread::spawn(move || {
                let dir = host.env.path(&format!("clone-{i}"));
                let user = ["alice", "rita", "wes"][i % 3];
                let cloned = host.git(
                    user,
                    host.env.home(),
                    &["clone", "-q", URL, dir.to_str().unwrap()],
                );
                assert!(cloned.ok(), "clone {i}: {cloned:?}");
                host.git(user, &dir, &["rev-parse", "HEAD"])
                    .stdout
                    .trim()
                    .to_string()
            })
        })
        .collect();
    for clone in clones {
        assert_eq!(clone.join().unwrap(), host.head);
    }
    eprintln!("10 concurrent clones: {:?}", started.elapsed());
}

// ---- neighbors ping and discover against a real `cpm serve` ----

/// A master home whose `mirror` key is a user on `peer_env`'s server.
fn master_knowing(peer_env: &Env) -> Env {
    let master = Env::new();
    peer_env.trust_mirror_key_of(&master);
    master
}

#[test]
fn ping_reports_the_banner_the_info_round_trip_and_pins_the_host_key() {
    let peer = Env::new();
    let master = master_knowing(&peer);
    let server = Server::start(&peer);
    let port = server.port.to_string();
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
    let pinged = master.json(&["neighbors", "ping"], 0);
    assert_eq!(pinged[0]["ok"], true, "{pinged}");
    assert!(
        pinged[0]["banner"]
            .as_str()
            .unwrap()
            .starts_with("SSH-2.0-cpm_")
    );
    assert_eq!(pinged[0]["host_key"], server.fingerprint.as_str());
    assert!(pinged[0]["info"]["millis"].as_u64().is_some());

    // A neighbor that does not know our key answers the banner but not `info`.
    master.ok(&["key", "generate", "stranger"]);
    master.ok(&[
        "server",
        "add",
        "cold",
        "127.0.0.1",
        "--port",
        &port,
        "--key",
        "stranger",
        "--neighbor",
    ]);
    let out = master.fails(&["neighbors", "ping", "cold", "--format", "json"], 1);
    assert!(out.contains("\"ok\": false"), "{out}");
}

#[test]
fn ping_of_a_closed_port_says_unreachable() {
    let master = Env::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    master.ok(&["neighbors", "add", "gone", "127.0.0.1", "--port", &port]);
    let (code, out, _) = master.run(&["neighbors", "ping"]);
    assert_eq!(code, 1);
    assert!(out.contains("unreachable"), "{out}");
}

#[test]
fn discover_confirms_a_peer_by_banner_and_info_shows_its_host_key_and_adds_nothing() {
    let peer = Env::new();
    let master = master_knowing(&peer);
    let server = Server::start(&peer);
    let port = server.port.to_string();
    let found = master.json(
        &[
            "neighbors",
            "discover",
            "--network",
            "127.0.0.1/32",
            "--port",
            &port,
            "--key",
            "mirror",
        ],
        0,
    );
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["confirmed"], true);
    assert_eq!(found[0]["host_key"], server.fingerprint.as_str());
    // Without a key the peer cannot answer `info`: shown, host key and all, but unconfirmed.
    let found = master.json(
        &[
            "neighbors",
            "discover",
            "--network",
            "127.0.0.1/32",
            "--port",
            &port,
        ],
        0,
    );
    assert_eq!(found[0]["confirmed"], false);
    assert_eq!(found[0]["host_key"], server.fingerprint.as_str());
    assert_eq!(
        master.json(&["server", "list"], 0),
        serde_json::json!([]),
        "nothing was added"
    );
}

#[test]
fn discover_ignores_a_port_that_is_open_but_not_cpm() {
    let master = Env::new();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port().to_string();
    std::thread::spawn(move || {
        for stream in other.incoming().take(2) {
            let _ = std::io::Write::write_all(&mut stream.unwrap(), b"SSH-2.0-OpenSSH_9.2\r\n");
        }
    });
    let found = master.json(
        &[
            "neighbors",
            "discover",
            "--network",
            "127.0.0.1/32",
            "--port",
            &port,
        ],
        0,
    );
    assert_eq!(
        found,
        serde_json::json!([]),
        "an SSH server that is not cpm is no peer"
    );
    master.fails(
        &[
            "neighbors",
            "discover",
            "--network",
            "10.0.0.0/8",
            "--port",
            &port,
        ],
        64,
    );
}

// ---- the whole access matrix through `cpm serve` ----

#[test]
fn every_role_and_grant_gets_exactly_its_access_over_ssh() {
    let host = Host::new();
    // Roles the default host lacks, added while the server runs (it reads the database per
    // connection).
    for (user, role) in [("adam", "admin"), ("mia", "member")] {
        let key = host.env.ssh_keygen(user);
        host.env
            .ok(&["user", "add", user, "--key-file", key.to_str().unwrap()]);
        host.env
            .ok(&["org", "member", "add", "acme", user, "--role", role]);
    }
    let archive = |user: &str| {
        host.git(
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
        )
    };
    for (user, read, write) in [
        ("alice", true, true), // owner → admin
        ("adam", true, true),  // admin → admin
        ("mia", true, false),  // member → read
        ("rita", true, false), // direct read
        ("wes", true, true),   // direct write
        ("nick", false, false),
    ] {
        let work = host.env.path(&format!("m-{user}"));
        let cloned = host.git(
            user,
            host.env.home(),
            &["clone", "-q", URL, work.to_str().unwrap()],
        );
        assert_eq!(cloned.ok(), read, "{user} clone: {cloned:?}");
        assert_eq!(archive(user).ok(), read, "{user} archive");
        if !read {
            assert!(
                cloned
                    .stderr
                    .contains("does not exist or nick may not access it"),
                "{cloned:?}"
            );
            continue;
        }
        assert!(
            host.git(user, &work, &["fetch", "-q", "origin"]).ok(),
            "{user} fetch"
        );
        std::fs::write(work.join(format!("{user}.txt")), user).unwrap();
        assert!(host.git(user, &work, &["add", "."]).ok());
        assert!(host.git(user, &work, &["commit", "-q", "-m", user]).ok());
        // Start from the current tip so every allowed push is a fast-forward.
        assert!(
            host.git(user, &work, &["pull", "-q", "--rebase", "origin", "main"])
                .ok()
        );
        let before = host.refs();
        let pushed = host.git(user, &work, &["push", "-q", "origin", "HEAD:main"]);
        assert_eq!(pushed.ok(), write, "{user} push: {pushed:?}");
        if write {
            assert_ne!(host.refs(), before, "{user}'s push arrived");
        } else {
            assert!(
                pushed.stderr.contains("write access is needed"),
                "{pushed:?}"
            );
            assert_eq!(host.refs(), before, "a denied push changes nothing");
        }
    }
}

#[test]
fn path_tricks_are_refused_over_ssh() {
    let host = Host::new();
    for command in [
        "git-upload-pack '../acme/web.git'",
        "git-upload-pack '/acme/web.git/../../etc'",
        "git-upload-pack 'acme/web.git/../other'",
        "git-upload-pack '/etc/passwd'",
        "git-upload-pack 'acme/../acme/web.git'",
        "git-receive-pack '/tmp/x.git'",
    ] {
        let ran = host.ssh("alice", &["git@127.0.0.1", command]);
        assert!(!ran.ok(), "{command:?} ran: {ran:?}");
        assert!(ran.stdout.is_empty(), "{command:?}: {ran:?}");
        assert!(ran.stderr.starts_with("cpm: "), "{command:?}: {ran:?}");
    }
}
