//! End-to-end tests of the forwarder over real loopback sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::*;
use crate::rule::{PortRange, ProxyProtocol, Target};
use crate::wire::Caps;

const LOCAL: &str = "127.0.0.1";
/// Upper bound for anything a test waits for.
const PATIENCE: Duration = Duration::from_secs(5);

fn target(host: &str, port: u16, priority: u8, proxy: ProxyProtocol) -> Target {
    Target {
        host: host.into(),
        port,
        priority,
        proxy_protocol: proxy,
    }
}

fn rule(
    id: &str,
    owner: &str,
    protocol: Protocol,
    listen: (u16, u16),
    targets: Vec<Target>,
) -> RuleSpec {
    RuleSpec {
        id: id.into(),
        owner_id: owner.into(),
        protocol,
        listen_addr: LOCAL.into(),
        listen: PortRange::new(i64::from(listen.0), i64::from(listen.1)).unwrap(),
        targets,
        caps: Caps::default(),
        owner_caps: Caps::default(),
    }
}

fn tcp_rule(id: &str, listen: u16, target_port: u16) -> RuleSpec {
    rule(
        id,
        "usr_1",
        Protocol::Tcp,
        (listen, listen),
        vec![target(LOCAL, target_port, 0, ProxyProtocol::None)],
    )
}

fn config() -> ForwarderConfig {
    ForwarderConfig {
        connect_timeout: Duration::from_secs(2),
        ..ForwarderConfig::default()
    }
}

/// `n` consecutive ports on `ip` that are free for both TCP and UDP right now. Ports come
/// from below the usual ephemeral range (so servers bound to port 0 do not take them) and
/// are never handed out twice in one test process (tests run in parallel).
fn free_ports(ip: &str, n: u16) -> u16 {
    use std::sync::atomic::AtomicU16;
    static CURSOR: AtomicU16 = AtomicU16::new(0);
    let ip: IpAddr = ip.parse().unwrap();
    let _ = CURSOR.compare_exchange(
        0,
        20_000 + u16::try_from(std::process::id() % 4000).unwrap() * 2,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    for _ in 0..500 {
        let base = CURSOR.fetch_add(n, Ordering::AcqRel);
        assert!(base < 32_000, "ran out of test ports");
        let ok = (base..base + n).all(|p| {
            std::net::TcpListener::bind((ip, p)).is_ok()
                && std::net::UdpSocket::bind((ip, p)).is_ok()
        });
        if ok {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

fn free_port() -> u16 {
    free_ports(LOCAL, 1)
}

fn assert_active(statuses: &[RuleStatus]) {
    for s in statuses {
        assert_eq!(s.state, RuleState::Active, "{s:?}");
    }
}

/// A TCP echo server; returns its port.
async fn echo_server(ip: &str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

/// A server that greets each connection with `tag`, then echoes.
async fn tagged_server_on(addr: SocketAddr, tag: &'static str) {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = s.write_all(tag.as_bytes()).await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

/// A server that reads each connection to its end, then answers with the byte count.
async fn counting_server() -> u16 {
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0usize;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                let _ = s.write_all(format!("got {total}").as_bytes()).await;
            });
        }
    });
    port
}

async fn connect(ip: &str, port: u16) -> TcpStream {
    tokio::time::timeout(PATIENCE, TcpStream::connect((ip, port)))
        .await
        .unwrap()
        .unwrap()
}

/// Writes `msg` and reads the same number of bytes back.
async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(PATIENCE, s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    back
}

async fn read_tag(s: &mut TcpStream) -> String {
    let mut tag = [0u8; 1];
    tokio::time::timeout(PATIENCE, s.read_exact(&mut tag))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(tag.to_vec()).unwrap()
}

/// Whether the connection is closed (end of stream or reset) within the patience.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(PATIENCE, s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn stats_of(fwd: &Forwarder, id: &str) -> RuleStats {
    fwd.stats()
        .into_iter()
        .find(|s| s.rule_id == id)
        .unwrap_or_else(|| panic!("no stats for {id}"))
}

/// Polls until `cond` holds on the rule's stats.
async fn wait_stats(fwd: &Forwarder, id: &str, cond: impl Fn(&RuleStats) -> bool) -> RuleStats {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = stats_of(fwd, id);
        if cond(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_echo_is_forwarded_and_counted_per_rule_and_owner() {
    let fwd = Forwarder::new(config());
    let echo = echo_server(LOCAL).await;
    let listen = free_port();
    assert_active(&fwd.apply(&[tcp_rule("r1", listen, echo)]).await);

    let mut s = connect(LOCAL, listen).await;
    let msg = vec![7u8; 1000];
    assert_eq!(round_trip(&mut s, &msg).await, msg);
    // Half-close: the echo server sees the end and closes its side in turn.
    s.shutdown().await.unwrap();
    assert!(closed(&mut s).await);
    drop(s);

    let stats = wait_stats(&fwd, "r1", |s| s.active_connections == 0).await;
    assert_eq!((stats.bytes_in, stats.bytes_out), (1000, 1000));
    assert_eq!((stats.total_connections, stats.refused), (1, 0));
    if cfg!(target_os = "linux") {
        assert_eq!(
            stats.spliced_connections, 1,
            "no cap applies: splice(2) is used"
        );
    }
    assert_eq!(
        fwd.take_usage(),
        [OwnerUsage {
            owner_id: "usr_1".into(),
            bytes_in: 1000,
            bytes_out: 1000
        }]
    );
    assert!(fwd.take_usage().is_empty());
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn half_close_keeps_the_other_direction_open() {
    let fwd = Forwarder::new(config());
    let counter = counting_server().await;
    let listen = free_port();
    assert_active(&fwd.apply(&[tcp_rule("r1", listen, counter)]).await);

    let mut s = connect(LOCAL, listen).await;
    s.write_all(&[1u8; 300_000]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, s.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, "got 300000");
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_range_maps_each_listen_port_to_its_target_port() {
    let fwd = Forwarder::new(config());
    let targets = free_ports(LOCAL, 3);
    for (i, tag) in ["a", "b", "c"].into_iter().enumerate() {
        let port = targets + u16::try_from(i).unwrap();
        tagged_server_on(SocketAddr::new(LOCAL.parse().unwrap(), port), tag).await;
    }
    let listen = free_ports(LOCAL, 3);
    let spec = rule(
        "range",
        "usr_1",
        Protocol::Tcp,
        (listen, listen + 2),
        vec![target(LOCAL, targets, 0, ProxyProtocol::None)],
    );
    assert_active(&fwd.apply(&[spec]).await);
    for (i, tag) in ["a", "b", "c"].into_iter().enumerate() {
        let mut s = connect(LOCAL, listen + u16::try_from(i).unwrap()).await;
        assert_eq!(read_tag(&mut s).await, tag);
    }
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_listen_and_target_work() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("IPv6 loopback unavailable; skipping");
        return;
    }
    let fwd = Forwarder::new(config());
    let echo = echo_server("::1").await;
    let listen = free_ports("::1", 1);
    let mut spec = rule(
        "v6",
        "usr_1",
        Protocol::Tcp,
        (listen, listen),
        vec![target("[::1]", echo, 0, ProxyProtocol::None)],
    );
    spec.listen_addr = "::1".into();
    assert_active(&fwd.apply(&[spec]).await);
    let mut s = connect("::1", listen).await;
    assert_eq!(round_trip(&mut s, b"over six").await, b"over six");
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dual_stack_wildcard_accepts_ipv4_too() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("IPv6 unavailable; skipping");
        return;
    }
    let fwd = Forwarder::new(config());
    let echo = echo_server(LOCAL).await;
    let listen = free_ports("::", 1);
    let mut spec = tcp_rule("ds", listen, echo);
    spec.listen_addr = "::".into();
    assert_active(&fwd.apply(&[spec]).await);
    let mut s = connect(LOCAL, listen).await;
    assert_eq!(round_trip(&mut s, b"mapped").await, b"mapped");
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_skips_a_dead_target_until_it_has_been_unhealthy_long_enough() {
    let fwd = Forwarder::new(ForwarderConfig {
        unhealthy_for: Duration::from_millis(500),
        ..config()
    });
    let dead = free_port();
    let backup = free_port();
    tagged_server_on(SocketAddr::new(LOCAL.parse().unwrap(), backup), "b").await;
    let listen = free_port();
    let spec = rule(
        "fo",
        "usr_1",
        Protocol::Tcp,
        (listen, listen),
        vec![
            target(LOCAL, backup, 1, ProxyProtocol::None),
            target(LOCAL, dead, 0, ProxyProtocol::None),
        ],
    );
    assert_active(&fwd.apply(&[spec]).await);

    let mut s = connect(LOCAL, listen).await;
    assert_eq!(
        read_tag(&mut s).await,
        "b",
        "failover within the same connection"
    );
    // The first target comes back, but stays skipped while marked unhealthy.
    tagged_server_on(SocketAddr::new(LOCAL.parse().unwrap(), dead), "a").await;
    let mut s = connect(LOCAL, listen).await;
    assert_eq!(read_tag(&mut s).await, "b");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut s = connect(LOCAL, listen).await;
    assert_eq!(read_tag(&mut s).await, "a");
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn equal_priorities_take_turns() {
    let fwd = Forwarder::new(config());
    let (a, b) = (free_port(), free_port());
    tagged_server_on(SocketAddr::new(LOCAL.parse().unwrap(), a), "a").await;
    tagged_server_on(SocketAddr::new(LOCAL.parse().unwrap(), b), "b").await;
    let listen = free_port();
    let spec = rule(
        "rr",
        "usr_1",
        Protocol::Tcp,
        (listen, listen),
        vec![
            target(LOCAL, a, 3, ProxyProtocol::None),
            target("localhost", b, 3, ProxyProtocol::None),
        ],
    );
    assert_active(&fwd.apply(&[spec]).await);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let mut s = connect(LOCAL, listen).await;
        seen.push(read_tag(&mut s).await);
    }
    assert_eq!(seen, ["a", "b", "a", "b"]);
    fwd.shutdown().await;
}

/// A parsed PROXY v2 header: (command byte, family byte, source, destination).
fn parse_v2(h: &[u8]) -> (u8, u8, SocketAddr, SocketAddr) {
    assert_eq!(&h[..12], &proxy::V2_SIGNATURE);
    let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    assert_eq!(h.len(), 16 + len);
    let body = &h[16..];
    let (src, dst) = match h[13] >> 4 {
        1 => {
            let ip = |b: &[u8]| IpAddr::from(<[u8; 4]>::try_from(b).unwrap());
            let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
            (
                SocketAddr::new(ip(&body[0..4]), port(&body[8..10])),
                SocketAddr::new(ip(&body[4..8]), port(&body[10..12])),
            )
        }
        2 => {
            let ip = |b: &[u8]| IpAddr::from(<[u8; 16]>::try_from(b).unwrap());
            let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
            (
                SocketAddr::new(ip(&body[0..16]), port(&body[32..34])),
                SocketAddr::new(ip(&body[16..32]), port(&body[34..36])),
            )
        }
        other => panic!("unexpected family {other}"),
    };
    (h[12], h[13], src, dst)
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_headers_carry_the_peer_and_the_listener() {
    let fwd = Forwarder::new(config());
    let upstream = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let up_port = upstream.local_addr().unwrap().port();
    let udp_up = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let udp_up_port = udp_up.local_addr().unwrap().port();
    let (l1, l2, l3) = (free_port(), free_port(), free_port());
    let v1 = rule(
        "v1",
        "usr_1",
        Protocol::Tcp,
        (l1, l1),
        vec![target(LOCAL, up_port, 0, ProxyProtocol::V1)],
    );
    let v2 = rule(
        "v2",
        "usr_1",
        Protocol::Tcp,
        (l2, l2),
        vec![target(LOCAL, up_port, 0, ProxyProtocol::V2)],
    );
    let v2u = rule(
        "v2u",
        "usr_1",
        Protocol::Udp,
        (l3, l3),
        vec![target(LOCAL, udp_up_port, 0, ProxyProtocol::V2)],
    );
    assert_active(&fwd.apply(&[v1, v2, v2u]).await);

    // v1: one text line, then the payload.
    let mut c = connect(LOCAL, l1).await;
    c.write_all(b"payload").await.unwrap();
    let (mut t, _) = upstream.accept().await.unwrap();
    let want = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {} {l1}\r\npayload",
        c.local_addr().unwrap().port()
    );
    let mut got = vec![0u8; want.len()];
    t.read_exact(&mut got).await.unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), want);

    // v2 over TCP: the binary block, then the payload.
    let mut c = connect(LOCAL, l2).await;
    c.write_all(b"payload").await.unwrap();
    let (mut t, _) = upstream.accept().await.unwrap();
    let mut got = vec![0u8; 16 + 12 + 7];
    t.read_exact(&mut got).await.unwrap();
    let (cmd, fam, src, dst) = parse_v2(&got[..28]);
    assert_eq!((cmd, fam), (0x21, 0x11));
    assert_eq!(src, c.local_addr().unwrap());
    assert_eq!(dst, SocketAddr::new(LOCAL.parse().unwrap(), l2));
    assert_eq!(&got[28..], b"payload");

    // v2 over UDP: the block (DGRAM) before every datagram.
    let peer = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let mut buf = [0u8; 256];
    for msg in [&b"one"[..], b"two"] {
        peer.send_to(msg, (LOCAL, l3)).await.unwrap();
        let (n, _) = tokio::time::timeout(PATIENCE, udp_up.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let (cmd, fam, src, dst) = parse_v2(&buf[..28]);
        assert_eq!((cmd, fam), (0x21, 0x12));
        assert_eq!(src, peer.local_addr().unwrap());
        assert_eq!(dst, SocketAddr::new(LOCAL.parse().unwrap(), l3));
        assert_eq!(&buf[28..n], msg);
    }
    fwd.shutdown().await;
}

/// A UDP echo server; returns its port.
async fn udp_echo_server() -> u16 {
    let socket = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let port = socket.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    port
}

async fn udp_round_trip(peer: &UdpSocket, to: u16, msg: &[u8]) -> Option<Vec<u8>> {
    peer.send_to(msg, (LOCAL, to)).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, from) = tokio::time::timeout(Duration::from_millis(1000), peer.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    assert_eq!(
        from,
        SocketAddr::new(LOCAL.parse().unwrap(), to),
        "replies come from the listener"
    );
    Some(buf[..n].to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_flows_are_relayed_reaped_and_capped() {
    let fwd = Forwarder::new(ForwarderConfig {
        udp_idle_timeout: Duration::from_millis(300),
        udp_max_flows: 2,
        ..config()
    });
    let echo = udp_echo_server().await;
    let listen = free_port();
    let spec = rule(
        "u",
        "usr_1",
        Protocol::Udp,
        (listen, listen),
        vec![target(LOCAL, echo, 0, ProxyProtocol::None)],
    );
    assert_active(&fwd.apply(&[spec]).await);

    let a = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let b = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let c = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    assert_eq!(
        udp_round_trip(&a, listen, b"from a").await.unwrap(),
        b"from a"
    );
    assert_eq!(
        udp_round_trip(&b, listen, b"from b").await.unwrap(),
        b"from b"
    );
    assert_eq!(
        udp_round_trip(&a, listen, b"again a").await.unwrap(),
        b"again a"
    );
    let stats = stats_of(&fwd, "u");
    assert_eq!((stats.udp_flows, stats.total_connections), (2, 2));

    // A third peer is over the flow limit.
    c.send_to(b"from c", (LOCAL, listen)).await.unwrap();
    wait_stats(&fwd, "u", |s| s.refused == 1).await;

    // Idle flows are reaped, which makes room.
    wait_stats(&fwd, "u", |s| s.udp_flows == 0).await;
    assert_eq!(
        udp_round_trip(&c, listen, b"c now").await.unwrap(),
        b"c now"
    );
    let stats = stats_of(&fwd, "u");
    assert_eq!(stats.bytes_in, 6 + 6 + 7 + 5);
    assert_eq!(stats.bytes_out, 6 + 6 + 7 + 5);
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_and_udp_share_ports_in_one_rule() {
    let fwd = Forwarder::new(config());
    let tcp_echo = echo_server(LOCAL).await;
    // The UDP echo needs the same port number as the TCP one; use a dedicated UDP socket there.
    let udp = UdpSocket::bind((LOCAL, tcp_echo)).await.unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(&buf[..n], from).await;
        }
    });
    let listen = free_port();
    let spec = rule(
        "both",
        "usr_1",
        Protocol::Both,
        (listen, listen),
        vec![target(LOCAL, tcp_echo, 0, ProxyProtocol::None)],
    );
    assert_active(&fwd.apply(&[spec]).await);
    let mut s = connect(LOCAL, listen).await;
    assert_eq!(round_trip(&mut s, b"tcp").await, b"tcp");
    let peer = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    assert_eq!(udp_round_trip(&peer, listen, b"udp").await.unwrap(), b"udp");
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_reconciles_without_churn_and_closes_removed_rules() {
    let fwd = Forwarder::new(config());
    let echo = echo_server(LOCAL).await;
    let (la, lb) = (free_port(), free_port());
    let a = tcp_rule("a", la, echo);
    let b = tcp_rule("b", lb, echo);
    assert_active(&fwd.apply(std::slice::from_ref(&a)).await);
    let mut conn = connect(LOCAL, la).await;
    assert_eq!(round_trip(&mut conn, b"1").await, b"1");

    // Adding B leaves A (and its connection) alone.
    assert_active(&fwd.apply(&[a.clone(), b.clone()]).await);
    assert_eq!(round_trip(&mut conn, b"2").await, b"2");
    let mut conn_b = connect(LOCAL, lb).await;
    assert_eq!(round_trip(&mut conn_b, b"b").await, b"b");

    // A caps-only change is applied in place.
    let mut a_capped = a.clone();
    a_capped.caps.max_connections = Some(10);
    a_capped.owner_caps.new_conn_per_sec = Some(1000);
    assert_active(&fwd.apply(&[a_capped.clone(), b.clone()]).await);
    assert_eq!(round_trip(&mut conn, b"3").await, b"3");
    assert_eq!(stats_of(&fwd, "a").total_connections, 1);

    // A changed target replaces A: its connection closes, new ones go to the new target.
    let tagged = free_port();
    tagged_server_on(SocketAddr::new(LOCAL.parse().unwrap(), tagged), "t").await;
    let a2 = tcp_rule("a", la, tagged);
    assert_active(&fwd.apply(&[a2.clone(), b.clone()]).await);
    assert!(closed(&mut conn).await);
    let mut conn = connect(LOCAL, la).await;
    assert_eq!(read_tag(&mut conn).await, "t");
    assert_eq!(round_trip(&mut conn_b, b"b still").await, b"b still");

    // Removing A closes its connection and its listener.
    assert_active(&fwd.apply(std::slice::from_ref(&b)).await);
    assert!(closed(&mut conn).await);
    assert!(TcpStream::connect((LOCAL, la)).await.is_err());
    assert_eq!(fwd.stats().len(), 1);

    fwd.shutdown().await;
    assert!(closed(&mut conn_b).await);
    assert!(TcpStream::connect((LOCAL, lb)).await.is_err());
    let after = fwd.apply(&[b]).await;
    assert_eq!(after[0].state, RuleState::Failed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_that_cannot_bind_fails_alone_and_leaves_nothing_open() {
    let fwd = Forwarder::new(config());
    let echo = echo_server(LOCAL).await;
    let base = free_ports(LOCAL, 3);
    // Occupy the last port of the range.
    let _squatter = std::net::TcpListener::bind((LOCAL, base + 2)).unwrap();
    let ok_port = free_port();
    let good = tcp_rule("good", ok_port, echo);
    let bad = rule(
        "bad",
        "usr_2",
        Protocol::Tcp,
        (base, base + 2),
        vec![target(LOCAL, echo, 0, ProxyProtocol::None)],
    );
    let dup = tcp_rule("good", free_port(), echo);
    let statuses = fwd.apply(&[good, bad, dup]).await;
    assert_eq!(statuses[0].state, RuleState::Active);
    assert_eq!(statuses[1].state, RuleState::Failed);
    assert_eq!(
        statuses[1].reason.as_deref(),
        Some(
            format!(
                "cannot listen on 127.0.0.1:{}/tcp: address in use",
                base + 2
            )
            .as_str()
        )
    );
    assert_eq!(statuses[2].state, RuleState::Failed);
    // The ports bound before the failure were released again.
    std::net::TcpListener::bind((LOCAL, base)).unwrap();
    std::net::TcpListener::bind((LOCAL, base + 1)).unwrap();
    let mut s = connect(LOCAL, ok_port).await;
    assert_eq!(round_trip(&mut s, b"fine").await, b"fine");

    let mut nonsense = tcp_rule("nonsense", free_port(), echo);
    nonsense.listen_addr = "example.com".into();
    let statuses = fwd.apply(&[nonsense]).await;
    assert!(
        statuses[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("not an IP address")
    );
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn max_connections_refuses_the_extra_connection() {
    let fwd = Forwarder::new(config());
    let echo = echo_server(LOCAL).await;
    let listen = free_port();
    let mut spec = tcp_rule("m", listen, echo);
    spec.caps.max_connections = Some(1);
    assert_active(&fwd.apply(&[spec]).await);

    let mut first = connect(LOCAL, listen).await;
    assert_eq!(round_trip(&mut first, b"x").await, b"x");
    let mut second = connect(LOCAL, listen).await;
    assert!(closed(&mut second).await);
    assert_eq!(stats_of(&fwd, "m").refused, 1);
    drop(first);
    wait_stats(&fwd, "m", |s| s.active_connections == 0).await;
    let mut third = connect(LOCAL, listen).await;
    assert_eq!(round_trip(&mut third, b"y").await, b"y");
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_rate_cap_refuses_bursts() {
    let fwd = Forwarder::new(config());
    let echo = echo_server(LOCAL).await;
    let listen = free_port();
    let mut spec = tcp_rule("rate", listen, echo);
    spec.caps.new_conn_per_sec = Some(2);
    assert_active(&fwd.apply(&[spec]).await);
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(connect(LOCAL, listen).await);
    }
    assert_eq!(round_trip(&mut conns[0], b"1").await, b"1");
    assert_eq!(round_trip(&mut conns[1], b"2").await, b"2");
    assert!(closed(&mut conns[2]).await);
    assert_eq!(stats_of(&fwd, "rate").refused, 1);
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bandwidth_cap_slows_a_transfer_and_uses_the_userspace_copy() {
    let fwd = Forwarder::new(config());
    let counter = counting_server().await;
    let listen = free_port();
    let mut spec = tcp_rule("bw", listen, counter);
    spec.caps.bandwidth_bps = Some(1_000_000);
    assert_active(&fwd.apply(&[spec]).await);

    let started = Instant::now();
    let mut s = connect(LOCAL, listen).await;
    s.write_all(&vec![0u8; 1_000_000]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(answer, "got 1000000");
    assert!(
        took >= Duration::from_millis(500),
        "1 MB at 1 MB/s took only {took:?}"
    );
    let stats = wait_stats(&fwd, "bw", |s| s.active_connections == 0).await;
    assert_eq!(stats.spliced_connections, 0);
    assert_eq!(stats.bytes_in, 1_000_000);
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn owner_caps_are_shared_by_the_owners_rules() {
    let fwd = Forwarder::new(config());
    let echo = echo_server(LOCAL).await;
    let (la, lb, lc) = (free_port(), free_port(), free_port());
    let owner_caps = Caps {
        max_connections: Some(1),
        ..Caps::default()
    };
    let mut a = tcp_rule("a", la, echo);
    let mut b = tcp_rule("b", lb, echo);
    let mut other = tcp_rule("c", lc, echo);
    a.owner_caps = owner_caps;
    b.owner_caps = owner_caps;
    other.owner_id = "usr_2".into();
    other.owner_caps = owner_caps;
    assert_active(&fwd.apply(&[a.clone(), b.clone(), other.clone()]).await);

    let mut held = connect(LOCAL, la).await;
    assert_eq!(round_trip(&mut held, b"a").await, b"a");
    let mut refused = connect(LOCAL, lb).await;
    assert!(closed(&mut refused).await);
    assert_eq!(stats_of(&fwd, "b").refused, 1);
    // Another owner has its own budget.
    let mut c = connect(LOCAL, lc).await;
    assert_eq!(round_trip(&mut c, b"c").await, b"c");

    // Raising the owner's cap takes effect in place, without closing anything.
    a.owner_caps.max_connections = Some(2);
    b.owner_caps.max_connections = Some(2);
    assert_active(&fwd.apply(&[a, b, other]).await);
    let mut now_ok = connect(LOCAL, lb).await;
    assert_eq!(round_trip(&mut now_ok, b"b").await, b"b");
    assert_eq!(round_trip(&mut held, b"still").await, b"still");
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_of_removed_rules_is_still_reported() {
    let fwd = Forwarder::new(config());
    let echo = echo_server(LOCAL).await;
    let listen = free_port();
    let mut spec = tcp_rule("gone", listen, echo);
    spec.owner_id = "usr_9".into();
    assert_active(&fwd.apply(&[spec]).await);
    let mut s = connect(LOCAL, listen).await;
    assert_eq!(round_trip(&mut s, b"12345").await, b"12345");
    fwd.apply(&[]).await;
    assert_eq!(
        fwd.take_usage(),
        [OwnerUsage {
            owner_id: "usr_9".into(),
            bytes_in: 5,
            bytes_out: 5
        }]
    );
    assert!(fwd.take_usage().is_empty());
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_fails_over_when_a_target_is_unreachable() {
    let fwd = Forwarder::new(config());
    let dead = free_port();
    let echo = udp_echo_server().await;
    let listen = free_port();
    let spec = rule(
        "ufo",
        "usr_1",
        Protocol::Udp,
        (listen, listen),
        vec![
            target(LOCAL, dead, 0, ProxyProtocol::None),
            target(LOCAL, echo, 1, ProxyProtocol::None),
        ],
    );
    assert_active(&fwd.apply(&[spec]).await);
    let peer = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    // The first datagram goes to the dead target; its ICMP "port unreachable" ends the flow
    // and marks the target, so a retry (as any UDP client does) reaches the second one.
    let mut answer = None;
    for _ in 0..5 {
        answer = udp_round_trip(&peer, listen, b"anyone?").await;
        if answer.is_some() {
            break;
        }
    }
    assert_eq!(answer.unwrap(), b"anyone?");
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_leaves_no_task_behind() {
    let echo = echo_server(LOCAL).await;
    let udp_echo = udp_echo_server().await;
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let baseline = alive();

    let fwd = Forwarder::new(config());
    let (lt, lu) = (free_ports(LOCAL, 2), free_port());
    let tcp = rule(
        "t",
        "usr_1",
        Protocol::Tcp,
        (lt, lt + 1),
        vec![target(LOCAL, echo, 0, ProxyProtocol::None)],
    );
    let udp = rule(
        "u",
        "usr_1",
        Protocol::Udp,
        (lu, lu),
        vec![target(LOCAL, udp_echo, 0, ProxyProtocol::None)],
    );
    assert_active(&fwd.apply(&[tcp, udp]).await);
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut s = connect(LOCAL, lt).await;
        round_trip(&mut s, b"hi").await;
        conns.push(s);
    }
    let mut peers = Vec::new();
    for _ in 0..2 {
        let p = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        udp_round_trip(&p, lu, b"hi").await.unwrap();
        peers.push(p);
    }
    assert!(alive() > baseline);

    fwd.shutdown().await;
    for s in &mut conns {
        assert!(closed(s).await);
    }
    // The echo server's own connection tasks end once they see the forwarder hang up.
    let deadline = Instant::now() + PATIENCE;
    while alive() > baseline {
        assert!(
            Instant::now() < deadline,
            "{} tasks left",
            alive() - baseline
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Not a test: throughput and round-trip latency through one TCP rule next to a direct
/// connection, and memory with 1,000 TCP connections and 1,000 UDP flows. Run with
/// `cargo test --release -p portunus-core bench_ -- --ignored --nocapture --test-threads 1`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; run by hand"]
async fn bench_throughput_and_latency() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let fwd = Forwarder::new(config());
    let sink = counting_server().await;
    let echo = echo_server(LOCAL).await;
    let (l_sink, l_echo) = (free_port(), free_port());
    assert_active(
        &fwd.apply(&[
            tcp_rule("sink", l_sink, sink),
            tcp_rule("echo", l_echo, echo),
        ])
        .await,
    );

    async fn throughput(port: u16, secs: u64) -> f64 {
        let mut s = connect(LOCAL, port).await;
        let chunk = vec![0u8; 256 * 1024];
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(secs) {
            s.write_all(&chunk).await.unwrap();
        }
        s.shutdown().await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        let total: f64 = answer.trim_start_matches("got ").parse().unwrap();
        total * 8.0 / started.elapsed().as_secs_f64() / 1e9
    }

    async fn latency(port: u16) -> (Duration, Duration) {
        let mut s = connect(LOCAL, port).await;
        s.set_nodelay(true).unwrap();
        let mut times = Vec::with_capacity(20_000);
        let mut buf = [0u8; 64];
        for i in 0..20_000 {
            let started = Instant::now();
            s.write_all(&buf).await.unwrap();
            s.read_exact(&mut buf).await.unwrap();
            if i >= 1000 {
                times.push(started.elapsed());
            }
        }
        times.sort();
        (times[times.len() / 2], times[times.len() * 99 / 100])
    }

    let direct = throughput(sink, secs).await;
    let proxied = throughput(l_sink, secs).await;
    println!(
        "throughput: direct {direct:.2} Gbit/s, through a rule {proxied:.2} Gbit/s ({:.0}%)",
        proxied / direct * 100.0
    );
    let (d50, d99) = latency(echo).await;
    let (p50, p99) = latency(l_echo).await;
    println!(
        "round trip (64 B): direct p50 {d50:?} p99 {d99:?}; through a rule p50 {p50:?} p99 {p99:?}; \
         added p50 {:?}",
        p50.saturating_sub(d50)
    );
    println!("stats: {:?}", fwd.stats());
    fwd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; run by hand"]
async fn bench_memory_with_1000_connections_and_1000_flows() {
    // An echo server with a small buffer, so the harness itself stays light.
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let echo = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let udp_echo = udp_echo_server().await;
    let fwd = Forwarder::new(config());
    let (lt, lu) = (free_port(), free_port());
    let tcp = tcp_rule("t", lt, echo);
    let udp = rule(
        "u",
        "usr_1",
        Protocol::Udp,
        (lu, lu),
        vec![target(LOCAL, udp_echo, 0, ProxyProtocol::None)],
    );
    assert_active(&fwd.apply(&[tcp, udp]).await);
    // Warm up the runtime and allocator.
    let mut warm = connect(LOCAL, lt).await;
    round_trip(&mut warm, b"w").await;
    let before = rss_kib();

    let mut conns = Vec::new();
    for _ in 0..1000 {
        let mut s = connect(LOCAL, lt).await;
        round_trip(&mut s, b"hello").await;
        conns.push(s);
    }
    let mut peers = Vec::new();
    for _ in 0..1000 {
        let p = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        udp_round_trip(&p, lu, b"hello").await.unwrap();
        peers.push(p);
    }
    let after = rss_kib();
    let stats = fwd.stats();
    println!(
        "RSS before {before} KiB, after {after} KiB: +{} KiB for 1000 TCP connections and 1000 UDP \
         flows (forwarder, echo servers and clients together); stats {stats:?}",
        after - before
    );
    assert_eq!(stats[0].active_connections, 1001);
    assert_eq!(stats[1].udp_flows, 1000);
    fwd.shutdown().await;
}
