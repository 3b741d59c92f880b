//! `kill` signals only listeners, all of them, escalates to KILL, and records what it did.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, Env, Listener};

#[test]
fn kill_stops_the_server_and_leaves_a_connected_client_alone() {
    let env = Env::new();
    let mut server = Listener::tcp("127.0.0.1");
    let port = server.port.to_string();
    let mut client = Client::connect(server.port);
    env.ok(&["reserve", &port, "-n", "web"]);

    let out = env.json(&["kill", &port], 0);
    let result = &out["results"][0];
    assert_eq!(result["status"], "killed");
    assert_eq!(result["free"], true);
    let targets = result["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "only the listener is a target: {out}");
    assert_eq!(targets[0]["pid"], server.pid());
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!server.running(), "the server was stopped");
    assert!(client.running(), "the client was not touched");

    // Recorded, and the reservation is back to `reserved`.
    let history = env.json(&["history", &port], 0);
    assert_eq!(history[0]["action"], "reserved");
    assert_eq!(history[1]["action"], "killed");
    assert!(history[1]["details"].as_str().unwrap().contains("TERM"));
    assert_eq!(env.json(&["check", &port], 2)["status"], "reserved");
}

#[test]
fn kill_shows_its_targets_first_and_a_dry_run_signals_nothing() {
    let env = Env::new();
    let mut server = Listener::tcp("127.0.0.1");
    let port = server.port.to_string();
    let out = env.ok(&["kill", &port, "--dry-run"]);
    assert!(
        out.contains(&format!("Would send TERM to pid {} (python3", server.pid())),
        "{out}"
    );
    assert!(server.running());
}

#[test]
fn a_process_that_ignores_term_gets_kill_after_the_timeout() {
    let env = Env::new();
    let mut server = Listener::start("ignore-term", "127.0.0.1", 0).unwrap();
    let port = server.port.to_string();
    let out = env.json(&["kill", &port, "--timeout", "300ms"], 0);
    assert_eq!(out["results"][0]["escalated"][0], server.pid());
    assert_eq!(out["results"][0]["free"], true);
    assert!(!server.running());
}

#[test]
fn killing_a_port_nobody_listens_on_is_a_harmless_no_op() {
    let env = Env::new();
    let port = common::unused_port().to_string();
    let out = env.json(&["kill", &port], 0);
    assert_eq!(out["results"][0]["status"], "not-listening");
}

#[test]
fn every_process_sharing_the_listening_socket_is_signalled() {
    let env = Env::new();
    // A pre-forking server: parent and child share one listening socket.
    let script = "import os,socket,sys,time\ns=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\npid=os.fork()\nif pid==0:\n    time.sleep(60); sys.exit(0)\nprint(s.getsockname()[1], pid, flush=True)\ntime.sleep(60)";
    let mut parent = std::process::Command::new("python3")
        .args(["-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(parent.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let mut words = line.split_whitespace();
    let port = words.next().unwrap().to_string();
    let child_pid: u32 = words.next().unwrap().parse().unwrap();
    let out = env.json(&["kill", &port], 0);
    let mut pids: Vec<u64> = out["results"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pid"].as_u64().unwrap())
        .collect();
    pids.sort();
    let mut want = vec![u64::from(parent.id()), u64::from(child_pid)];
    want.sort();
    assert_eq!(pids, want);
    assert_eq!(out["results"][0]["free"], true);
    let _ = parent.wait();
}
