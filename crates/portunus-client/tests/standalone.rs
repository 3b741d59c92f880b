//! `portunus-standalone`: checking a configuration file, forwarding from one, reloading it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use rustix::process::Signal;

fn standalone(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portunus-standalone"));
    cmd.arg("-c").arg(config).stdin(Stdio::null());
    cmd
}

fn rule(listen: u16, target: u16) -> String {
    format!(
        "[[rule]]\nid = \"r{listen}\"\nlisten = \"{listen}\"\nlisten_addr = \"127.0.0.1\"\ntargets = [\"127.0.0.1:{target}\"]\n"
    )
}

#[test]
fn check_says_ok_or_lists_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, format!("{}\n{}", rule(8080, 80), rule(8081, 81))).unwrap();
    let out = standalone(&good).arg("--check").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok: 2 rules\n");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        r#"
        [[rule]]
        id = "web"
        listen = "8000-8010"
        targets = ["10.0.0.5:80"]

        [[rule]]
        id = "web"
        protocol = "tcp+udp"
        listen = "8005"
        targets = []

        [[rule]]
        listen = "99999"
        protocol = "quic"
        targets = ["10.0.0.5"]
        "#,
    )
    .unwrap();
    let out = standalone(&bad).arg("--check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "rule 2 (web): id: 'web' is also the id of rule 1",
        "rule 2 (web): targets: a rule needs 1 to 8 targets, not 0",
        "rule 3: listen: port 99999 is out of range",
        "rule 3: protocol: unknown protocol 'quic'",
        "rule 3: targets[1]: '10.0.0.5' is not host:port",
        "5 errors",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in\n{err}");
    }

    // An invalid file at startup (without --check) exits 2 as well, and so does a missing one.
    let out = standalone(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = standalone(&dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    // The format is documented in --help.
    let out = Command::new(env!("CARGO_BIN_EXE_portunus-standalone"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("[[rule]]") && help.contains("proxy_protocol"),
        "{help}"
    );
}

#[test]
fn forwards_from_a_file_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portunus.toml");
    let target = tcp_echo(0);
    let first = free_port();
    std::fs::write(&config, rule(first, target.port)).unwrap();
    let mut cmd = standalone(&config);
    cmd.current_dir(dir.path());
    let mut proc = Client::spawn(cmd);
    proc.log
        .wait_for("event=rules_applied active=1 failed=0 source=startup");
    wait_tcp(first);
    let mut established = connect(first).unwrap();
    assert_eq!(echo_on(&mut established, b"one").unwrap(), b"one");

    // A second rule is added; the first keeps its connection.
    let second = free_port();
    std::fs::write(
        &config,
        format!("{}{}", rule(first, target.port), rule(second, target.port)),
    )
    .unwrap();
    proc.signal(Signal::HUP);
    proc.log
        .wait_for("event=rules_applied active=2 failed=0 source=reload");
    wait_tcp(second);
    assert_eq!(echo_on(&mut established, b"two").unwrap(), b"two");

    // A broken file keeps the running rules.
    std::fs::write(&config, "[[rule]]\nlisten = \"nope\"\n").unwrap();
    proc.signal(Signal::HUP);
    proc.log
        .wait_for("event=reload_failed errors=2 kept_rules=2");
    assert!(proc.log.text().contains("rule 1: listen:"));
    wait_tcp(second);

    // Dropping the first rule closes its port.
    std::fs::write(&config, rule(second, target.port)).unwrap();
    proc.signal(Signal::HUP);
    proc.log
        .wait_for("event=rules_applied active=1 failed=0 source=reload");
    wait_refused(first);
    wait_tcp(second);

    assert!(proc.stop().success());
    assert!(proc.log.text().contains("event=shutdown signal=SIGTERM"));
    wait_refused(second);
}
