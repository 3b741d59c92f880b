//! The client against a real `portunus-server` on loopback: enrollment, forwarding, fail-static
//! through server outages and client restarts, failover, quotas, PROXY protocol, revocation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use rustix::process::Signal;
use serde_json::json;

/// A TCP echo target, a rule forwarding `listen` to it, and a client that has applied it.
fn echo_rule_running(f: &Fleet) -> (Background, u16, Client) {
    let target = tcp_echo(0);
    let listen = free_port();
    f.op.rule(tcp_rule(&f.client_id, listen, target.port));
    let client = Client::start(&f.home);
    client
        .log
        .wait_for("event=rules_applied generation=1 active=1");
    (target, listen, client)
}

#[test]
fn an_enrolled_client_forwards_tcp_and_udp() {
    let f = Fleet::new();
    let mut client = Client::start(&f.home);
    client.log.wait_for("event=connected");

    // One tcp+udp rule to a target port that has a TCP and a UDP echo server.
    let target = free_port();
    let _tcp = tcp_echo(target);
    let _udp = udp_echo(target);
    let listen = free_port();
    let mut rule = tcp_rule(&f.client_id, listen, target);
    rule["protocol"] = json!("tcp+udp");
    f.op.rule(rule);
    client
        .log
        .wait_for("event=rules_applied generation=1 active=1 failed=0");

    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(tcp_roundtrip(listen, &big).unwrap(), big);
    let reply = eventually("a UDP reply", || udp_roundtrip(listen, b"datagram").ok());
    assert_eq!(reply, b"datagram");

    // The server learns the rule runs, and the traffic is reported.
    eventually("the status to reach the server", || {
        let rules =
            f.op.ok("GET", &format!("/v1/rules?client_id={}", f.client_id), None);
        (rules[0]["status"] == "active").then_some(())
    });
    let used = eventually("usage to be reported", || {
        let quotas = f.op.ok("GET", "/v1/quotas", None);
        quotas
            .as_array()
            .and_then(|q| q.first())
            .and_then(|q| q["used_bytes"].as_u64())
            .filter(|b| *b >= 2 * big.len() as u64)
    });
    assert!(used >= 400_000, "{used}");

    // `status` shows the rule with its live counters.
    let snapshot = eventually("a status snapshot with the traffic", || {
        let out = client_cmd(&f.home)
            .args(["status", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["rules"][0]["bytes_in"].as_u64()? >= big.len() as u64).then_some(v)
    });
    assert_eq!(snapshot["connected"], true, "{snapshot}");
    assert_eq!(snapshot["generation"], 1, "{snapshot}");
    assert_eq!(snapshot["rules"][0]["state"], "active", "{snapshot}");
    assert_eq!(snapshot["rules"][0]["protocol"], "tcp+udp", "{snapshot}");
    let out = client_cmd(&f.home).arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("connected  generation 1"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{listen}  active")),
        "{text}"
    );

    assert!(client.stop().success());
    let out = client_cmd(&f.home).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is portunus-client running"));
    let log = client.log.text();
    assert!(log.contains("event=shutdown signal=SIGTERM"), "{log}");
    // The token never reaches the log.
    let bundle =
        std::fs::read_to_string(f.home.join("config/portunus/client.bundle.json")).unwrap();
    let token: serde_json::Value = serde_json::from_str(&bundle).unwrap();
    assert!(!log.contains(token["token"].as_str().unwrap()));
}

#[test]
fn a_server_outage_keeps_traffic_flowing_and_the_reconnect_causes_no_churn() {
    let mut f = Fleet::new();
    let mut client = Client::start(&f.home);
    let target = tcp_echo(0);
    let listen = free_port();
    f.op.rule(tcp_rule(&f.client_id, listen, target.port));
    client.log.wait_for("event=rules_applied generation=1");
    wait_tcp(listen);
    let mut established = connect(listen).unwrap();
    assert_eq!(echo_on(&mut established, b"before").unwrap(), b"before");

    f.server.kill();
    client.log.wait_for("event=disconnected");
    client.log.wait_for("event=connect_failed");
    assert_eq!(echo_on(&mut established, b"during").unwrap(), b"during");
    assert_eq!(tcp_roundtrip(listen, b"new during").unwrap(), b"new during");

    let applied_before = client.log.count("event=rules_applied");
    let restarted = f.server.restart();
    client.log.wait_count("event=connected", 2);
    client
        .log
        .wait_for("event=rules_unchanged generation=1 rules=1");
    assert_eq!(echo_on(&mut established, b"after").unwrap(), b"after");
    assert_eq!(tcp_roundtrip(listen, b"new after").unwrap(), b"new after");
    assert_eq!(
        client.log.count("event=rules_applied"),
        applied_before,
        "the reconnect re-applied rules:\n{}",
        client.log.text()
    );
    let log = client.log.text();
    assert!(log.contains("event=reconnecting in="), "{log}");
    drop(restarted);
    assert!(client.stop().success());
}

#[test]
fn a_rule_pushed_while_the_client_is_offline_applies_when_it_connects() {
    let f = Fleet::new();
    let target = tcp_echo(0);
    let listen = free_port();
    f.op.rule(tcp_rule(&f.client_id, listen, target.port));
    assert!(connect(listen).is_err());
    let mut client = Client::start(&f.home);
    client
        .log
        .wait_for("event=rules_applied generation=1 active=1");
    wait_tcp(listen);
    let info = eventually("the applied generation to be recorded", || {
        let info = f.op.client_info(&f.client_id);
        (info["applied_generation"] == 1).then_some(info)
    });
    assert_eq!(info["connected"], true);

    // A client that was stopped catches up when it comes back: its persisted generation 1
    // runs at once, generation 2 arrives on connect, and only the new rule is added.
    assert!(client.stop().success());
    let second = free_port();
    let other = tcp_echo(0);
    f.op.rule(tcp_rule(&f.client_id, second, other.port));
    let mut client = Client::start(&f.home);
    client.log.wait_for("event=rules_applied generation=1 active=1 failed=0 added=1 changed=0 removed=0 source=persisted");
    client.log.wait_for("event=rules_applied generation=2 active=2 failed=0 added=1 changed=0 removed=0 source=server");
    wait_tcp(second);
    wait_tcp(listen);
    assert!(client.stop().success());
}

#[test]
fn a_client_restarted_while_the_server_is_down_forwards_its_persisted_rules() {
    let mut f = Fleet::new();
    let (_target, listen, mut client) = echo_rule_running(&f);
    assert!(client.stop().success());
    wait_refused(listen);
    let state = f
        .home
        .join(format!("state/portunus-client/{}.rules.json", f.client_id));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["client_id"], f.client_id.as_str());
    assert_eq!(saved["generation"], 1);
    assert_eq!(saved["rules"].as_array().unwrap().len(), 1);

    f.server.kill();
    let mut client = Client::start(&f.home);
    client
        .log
        .wait_for("event=rules_applied generation=1 active=1 failed=0 added=1 changed=0 removed=0 source=persisted");
    wait_tcp(listen);
    client.log.wait_for("event=connect_failed");
    // Applied before the first dial.
    let lines = client.log.lines();
    let applied = lines
        .iter()
        .position(|l| l.contains("source=persisted"))
        .unwrap();
    let dialled = lines
        .iter()
        .position(|l| l.contains("connect_failed"))
        .unwrap();
    assert!(applied < dialled, "{lines:#?}");
    assert!(client.stop().success());
}

#[test]
fn traffic_fails_over_when_the_first_target_dies() {
    let f = Fleet::new();
    let primary = tcp_tag(0, "primary");
    let backup = tcp_tag(0, "backup");
    let listen = free_port();
    let mut rule = tcp_rule(&f.client_id, listen, primary.port);
    rule["targets"] = json!([
        { "host": "127.0.0.1", "port": primary.port, "priority": 0 },
        { "host": "127.0.0.1", "port": backup.port, "priority": 1 },
    ]);
    f.op.rule(rule);
    let mut client = Client::start(&f.home);
    client
        .log
        .wait_for("event=rules_applied generation=1 active=1");
    let first = eventually("an answer", || tcp_read_all(listen).ok());
    assert_eq!(first, b"primary");
    primary.stop();
    let answer = eventually("the backup to answer", || {
        tcp_read_all(listen).ok().filter(|a| !a.is_empty())
    });
    assert_eq!(answer, b"backup");
    assert!(client.stop().success());
}

#[test]
fn an_exhausted_quota_cuts_new_connections() {
    let f = Fleet::new();
    let target = tcp_echo(0);
    let listen = free_port();
    f.op.rule(tcp_rule(&f.client_id, listen, target.port));
    f.op.ok(
        "PUT",
        "/v1/quotas",
        Some(json!({ "user": f.op.user_id, "client_id": f.client_id, "monthly_bytes": 10_000 })),
    );
    let mut client = Client::start(&f.home);
    client.log.wait_for("event=rules_applied");
    wait_tcp(listen);
    let data = vec![7u8; 20_000];
    assert_eq!(tcp_roundtrip(listen, &data).unwrap(), data);
    // The report goes out within a second; the server drops the rule from the desired state.
    client.log.wait_for("removed=1");
    wait_refused(listen);
    let quota = f.op.ok("GET", "/v1/quotas", None);
    assert_eq!(quota[0]["exhausted"], true, "{quota}");
    assert!(
        quota[0]["used_bytes"].as_u64().unwrap() >= 40_000,
        "{quota}"
    );
    assert!(client.stop().success());
}

#[test]
fn the_target_receives_a_proxy_v2_header() {
    let f = Fleet::new();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let tx = std::sync::Arc::new(std::sync::Mutex::new(tx));
    let target = tcp_server(0, move |mut s| {
        let mut head = vec![0u8; 16 + 12];
        if s.read_exact(&mut head).is_ok() {
            let _ = tx.lock().unwrap().send(head);
        }
    });
    let listen = free_port();
    let mut rule = tcp_rule(&f.client_id, listen, target.port);
    rule["targets"][0]["proxy_protocol"] = json!("v2");
    f.op.rule(rule);
    let mut client = Client::start(&f.home);
    client
        .log
        .wait_for("event=rules_applied generation=1 active=1");
    let mut s = eventually("a connection", || connect(listen).ok());
    let local = s.local_addr().unwrap();
    std::io::Write::write_all(&mut s, b"payload").unwrap();
    let head = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(head[12], 0x21, "version 2, PROXY command");
    assert_eq!(head[13], 0x11, "TCP over IPv4");
    assert_eq!(u16::from_be_bytes([head[14], head[15]]), 12);
    assert_eq!(&head[16..20], &[127, 0, 0, 1]);
    assert_eq!(&head[20..24], &[127, 0, 0, 1]);
    assert_eq!(u16::from_be_bytes([head[24], head[25]]), local.port());
    assert_eq!(u16::from_be_bytes([head[26], head[27]]), listen);
    assert!(client.stop().success());
}

#[test]
fn a_revoked_client_stops_forwarding_and_exits_77() {
    let f = Fleet::new();
    let (_target, listen, mut client) = echo_rule_running(&f);
    wait_tcp(listen);
    f.op.ok("DELETE", &format!("/v1/clients/{}", f.client_id), None);
    let status = client.wait();
    assert_eq!(status.code(), Some(77), "{}", client.log.text());
    let log = client.log.text();
    assert!(
        log.contains("error: the server refused this client (client_revoked)"),
        "{log}"
    );
    wait_refused(listen);
    // Its persisted rules are gone too, so a restart cannot bring them back.
    let state = f
        .home
        .join(format!("state/portunus-client/{}.rules.json", f.client_id));
    assert!(!state.exists());
    let mut again = Client::start(&f.home);
    assert_eq!(again.wait().code(), Some(77));
    // Reconnecting with the old token is told the client is revoked, not just "unauthorized".
    assert!(
        again
            .log
            .text()
            .contains("refused this client (client_revoked)"),
        "{}",
        again.log.text()
    );
}

#[test]
fn sigint_reports_usage_before_exiting() {
    let f = Fleet::new();
    let target = tcp_echo(0);
    let listen = free_port();
    f.op.rule(tcp_rule(&f.client_id, listen, target.port));
    // A long report interval: only the final report can deliver the bytes.
    let mut cmd = client_cmd(&f.home);
    cmd.env("PORTUNUS_CLIENT_REPORT_SECS", "3600");
    let mut client = Client::spawn(cmd);
    client
        .log
        .wait_for("event=rules_applied generation=1 active=1");
    let data = vec![1u8; 3_000];
    let got = eventually("traffic", || tcp_roundtrip(listen, &data).ok());
    assert_eq!(got, data);
    std::thread::sleep(Duration::from_millis(100));
    client.signal(Signal::INT);
    assert!(client.wait().success());
    assert!(
        client
            .log
            .text()
            .contains("event=usage_reported final=true"),
        "{}",
        client.log.text()
    );
    let quotas = f.op.ok("GET", "/v1/quotas", None);
    assert!(
        quotas[0]["used_bytes"].as_u64().unwrap() >= 6_000,
        "{quotas}"
    );
}

#[test]
fn usage_from_an_outage_is_reported_later_even_across_a_client_restart() {
    let mut f = Fleet::new();
    let (_target, listen, mut client) = echo_rule_running(&f);
    wait_tcp(listen);
    let used = |op: &Operator| {
        op.ok("GET", "/v1/quotas", None)[0]["used_bytes"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = eventually("the first usage report", || {
        Some(used(&f.op)).filter(|b| *b > 0)
    });

    f.server.kill();
    client.log.wait_for("event=connect_failed");
    let data = vec![9u8; 50_000];
    assert_eq!(tcp_roundtrip(listen, &data).unwrap(), data);
    std::thread::sleep(Duration::from_millis(700));
    assert!(client.stop().success());
    client.log.wait_for("event=usage_unsent");
    assert!(
        client.log.text().contains("kept=true"),
        "{}",
        client.log.text()
    );

    let restarted = f.server.restart();
    let op = Operator {
        http: restarted.http(),
        token: f.op.token.clone(),
        user_id: f.op.user_id.clone(),
    };
    let mut client = Client::start(&f.home);
    client.log.wait_for("event=usage_restored");
    let after = eventually("the outage's usage to be reported", || {
        Some(used(&op)).filter(|b| *b >= before + 100_000)
    });
    assert!(after >= before + 100_000);
    assert!(client.stop().success());
}
