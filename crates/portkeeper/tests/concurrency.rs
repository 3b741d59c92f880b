//! Reservations are atomic across processes: real `portman` processes started at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Stdio};

use common::Env;

fn spawn_all(env: &Env, n: usize, args: impl Fn(usize) -> Vec<String>) -> Vec<Child> {
    // Create the database first, so the race is on the reservation and not on creating the file.
    env.ok(&["list"]);
    (0..n)
        .map(|i| {
            env.cmd()
                .args(args(i))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

#[test]
fn twenty_processes_reserving_one_port_give_it_to_exactly_one() {
    let env = Env::new();
    let port = common::unused_port().to_string();
    let children = spawn_all(&env, 20, |i| {
        vec!["reserve".into(), port.clone(), "-n".into(), format!("p{i}")]
    });
    let mut winners = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => winners.push(format!("p{i}")),
            Some(73) => assert!(
                stderr.contains("is reserved by project"),
                "a loser is told who has it: {stderr}"
            ),
            other => panic!("unexpected exit {other:?}: {stderr}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let owner: String = env
        .sql()
        .query_row(
            "SELECT projectName FROM ports WHERE number = ?1",
            [&port],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(owner, winners[0]);
}

#[test]
fn fifty_processes_requesting_a_port_each_get_distinct_ports() {
    let env = Env::new();
    let children = spawn_all(&env, 50, |i| {
        [
            "request",
            "-n",
            &format!("svc{i}"),
            "--start",
            "46000",
            "--end",
            "46999",
            "--json",
        ]
        .map(String::from)
        .to_vec()
    });
    let mut ports = BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let port = doc["ports"][0].as_u64().unwrap();
        assert!((46000..=46999).contains(&port));
        assert!(ports.insert(port), "port {port} handed out twice");
    }
    assert_eq!(ports.len(), 50);
    let count: i64 = env
        .sql()
        .query_row(
            "SELECT count(*) FROM ports WHERE status = 'reserved'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count, 50);
}
