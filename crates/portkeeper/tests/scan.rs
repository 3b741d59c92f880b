//! `scan` lists every listener once, with the right protocol and family, from the kernel's tables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Env, Listener};
use serde_json::Value;

fn sockets_on(env: &Env, port: u16) -> Vec<Value> {
    let doc = env.json(&["scan", "--port", &port.to_string()], 0);
    doc["sockets"].as_array().unwrap().clone()
}

#[test]
fn ipv4_ipv6_udp_and_dual_stack_listeners_each_appear_once_with_the_right_protocol() {
    let env = Env::new();
    let v4 = Listener::tcp("127.0.0.1");
    let found = sockets_on(&env, v4.port);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["proto"], "tcp");
    assert_eq!(found[0]["family"], "ipv4");
    assert_eq!(found[0]["address"], "127.0.0.1");
    assert_eq!(found[0]["pid"], v4.pid());
    assert_eq!(found[0]["processName"], "python3");
    assert_eq!(found[0]["state"], "LISTEN");

    let udp = Listener::start("udp", "127.0.0.1", 0).unwrap();
    let found = sockets_on(&env, udp.port);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["proto"], "udp");
    assert_eq!(found[0]["state"], "UNCONN");
    assert_eq!(found[0]["pid"], udp.pid());

    let Some(v6) = Listener::start("tcp", "::1", 0) else {
        eprintln!("no IPv6 on this host; skipping the IPv6 cases");
        return;
    };
    let found = sockets_on(&env, v6.port);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["family"], "ipv6");
    assert_eq!(found[0]["address"], "::1");

    let udp6 = Listener::start("udp", "::1", 0).unwrap();
    let found = sockets_on(&env, udp6.port);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0]["proto"].as_str(), found[0]["family"].as_str()),
        (Some("udp"), Some("ipv6"))
    );

    let dual = Listener::start("dual", "::", 0).unwrap();
    let found = sockets_on(&env, dual.port);
    assert_eq!(
        found.len(),
        1,
        "a dual-stack socket is one socket: {found:?}"
    );
    assert_eq!(found[0]["proto"], "tcp");
    assert_eq!(found[0]["address"], "::");
    // And it makes the port busy for IPv4 too: never reported free.
    assert_eq!(
        env.json(&["check", &dual.port.to_string()], 3)["status"],
        "in-use"
    );
}

#[test]
fn scan_joins_reservations_and_records_what_it_saw() {
    let env = Env::new();
    let l = Listener::tcp("127.0.0.1");
    let port = l.port.to_string();
    env.ok(&["reserve", &port, "-n", "web", "-d", "dev"]);
    let found = sockets_on(&env, l.port);
    assert_eq!(found[0]["projectName"], "web");
    let (pid, proto, state): (i64, String, String) = env
        .sql()
        .query_row(
            "SELECT pid, protocol, state FROM active_scans WHERE port = ?1",
            [&port],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(pid, i64::from(l.pid()));
    assert_eq!((proto.as_str(), state.as_str()), ("tcp", "LISTEN"));
    let last_seen: Option<String> = env
        .sql()
        .query_row(
            "SELECT lastSeenAt FROM ports WHERE number = ?1",
            [&port],
            |r| r.get(0),
        )
        .unwrap();
    assert!(last_seen.is_some());

    // The next scan forgets what is gone.
    l.stop();
    env.ok(&["scan", "--port", &port]);
    let rows: i64 = env
        .sql()
        .query_row(
            "SELECT count(*) FROM active_scans WHERE port = ?1",
            [&port],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0);
}

#[test]
fn the_human_scan_is_a_table_with_the_process() {
    let env = Env::new();
    let l = Listener::tcp("127.0.0.1");
    let out = env.ok(&["scan", "--port", &l.port.to_string()]);
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("PROTO"));
    let row = lines.next().unwrap();
    assert!(
        row.contains("127.0.0.1") && row.contains(&l.pid().to_string()) && row.contains("python3"),
        "{row}"
    );
}
