//! The socket snapshot and the bind probe against real sockets on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};

use portkeeper::sockets::{Family, Owner, Probe, Proto, Snapshot, Socket, probe};

/// The sockets on `port` in a fresh snapshot.
fn sockets_on(port: u16) -> Vec<Socket> {
    Snapshot::take().unwrap().on_port(port).cloned().collect()
}

/// What the kernel calls this test binary: the first 15 bytes of its file name.
fn our_process_name() -> String {
    let exe = std::env::current_exe().unwrap();
    let name = exe.file_name().unwrap().to_string_lossy().into_owned();
    name.chars().take(15).collect()
}

/// Our user's name as /etc/passwd has it, else our uid as text.
fn our_user() -> (u32, String) {
    let uid = rustix::process::getuid().as_raw();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 2 && fields[2] == uid.to_string())
        .map_or_else(|| uid.to_string(), |fields| fields[0].to_owned());
    (uid, name)
}

#[test]
fn a_tcp_listener_on_ipv4_loopback_appears_with_our_pid_process_and_user() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let found = sockets_on(port);

    let (uid, user) = our_user();
    assert_eq!(found.len(), 1, "{found:#?}");
    let socket = &found[0];
    assert_eq!(socket.proto, Proto::Tcp);
    assert_eq!(socket.family, Family::Ipv4);
    assert_eq!(socket.address, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(socket.state, "LISTEN");
    assert_eq!(socket.endpoint(), format!("127.0.0.1:{port}"));
    assert_eq!(socket.uid, uid);
    assert_eq!(socket.user, user);
    assert_eq!(
        socket.owners,
        [Owner {
            pid: std::process::id(),
            process: our_process_name(),
        }]
    );
}

#[test]
fn a_tcp_listener_on_ipv6_loopback_appears_once_as_ipv6() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        println!("note: cannot bind [::1] (no IPv6 here); skipping");
        return;
    };
    let port = listener.local_addr().unwrap().port();

    let found = sockets_on(port);

    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].family, Family::Ipv6);
    assert_eq!(found[0].address, "::1".parse::<IpAddr>().unwrap());
    assert_eq!(found[0].endpoint(), format!("[::1]:{port}"));
    assert_eq!(found[0].owners[0].pid, std::process::id());
}

#[test]
fn a_bound_udp_socket_appears_as_unconnected_udp() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();

    let found = sockets_on(port);

    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].proto, Proto::Udp);
    assert_eq!(found[0].state, "UNCONN");
    assert_eq!(found[0].owners[0].pid, std::process::id());
}

#[test]
fn a_connected_udp_socket_is_not_listed() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(peer.local_addr().unwrap()).unwrap();
    let port = client.local_addr().unwrap().port();

    let snapshot = Snapshot::take().unwrap();

    assert!(
        !snapshot.is_listening(port),
        "{:#?}",
        snapshot.on_port(port).collect::<Vec<_>>()
    );
    assert!(snapshot.is_listening(peer.local_addr().unwrap().port()));
}

#[test]
fn a_dual_stack_listener_on_the_ipv6_wildcard_appears_exactly_once() {
    let Ok(listener) = TcpListener::bind("[::]:0") else {
        println!("note: cannot bind [::] (no IPv6 here); skipping");
        return;
    };
    let port = listener.local_addr().unwrap().port();

    let found = sockets_on(port);

    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].family, Family::Ipv6);
    assert_eq!(found[0].endpoint(), format!("[::]:{port}"));
}

#[test]
fn a_tcp_and_a_udp_socket_on_one_port_are_two_sockets() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let Ok(_udp) = UdpSocket::bind(("127.0.0.1", port)) else {
        println!("note: UDP port {port} is taken by someone else; skipping");
        return;
    };

    let found = sockets_on(port);

    let protos: Vec<Proto> = found.iter().map(|s| s.proto).collect();
    assert_eq!(protos, [Proto::Tcp, Proto::Udp]);
    assert_eq!(
        Snapshot::take().unwrap().pids_on_port(port),
        [std::process::id()]
    );
}

/// A python3 that listens, forks, and reports its port and both pids; both processes exit when
/// their stdin closes, or after a minute whatever happens.
struct ForkedServer {
    child: Child,
    port: u16,
    parent: u32,
    forked: u32,
}

impl ForkedServer {
    fn start() -> Option<ForkedServer> {
        let script = "import os, signal, socket, sys\n\
                      s = socket.socket()\n\
                      s.bind(('127.0.0.1', 0))\n\
                      s.listen()\n\
                      pid = os.fork()\n\
                      signal.alarm(60)\n\
                      if pid:\n    print(s.getsockname()[1], os.getpid(), pid, flush=True)\n\
                      sys.stdin.read()\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let numbers: Vec<u32> = line
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(numbers.len(), 3, "python said {line:?}");
        Some(ForkedServer {
            port: u16::try_from(numbers[0]).unwrap(),
            parent: numbers[1],
            forked: numbers[2],
            child,
        })
    }
}

impl Drop for ForkedServer {
    fn drop(&mut self) {
        // Closing stdin ends both; the kill makes sure of the two pids python reported.
        drop(self.child.stdin.take());
        for pid in [self.forked, self.parent] {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.child.wait();
    }
}

#[test]
fn a_listener_shared_by_a_forked_child_names_both_processes() {
    let Some(server) = ForkedServer::start() else {
        println!("note: python3 is not available; skipping");
        return;
    };
    assert_eq!(server.parent, server.child.id());

    let snapshot = Snapshot::take().unwrap();

    let found: Vec<&Socket> = snapshot.on_port(server.port).collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    let mut expected = vec![server.parent, server.forked];
    expected.sort_unstable();
    let pids: Vec<u32> = found[0].owners.iter().map(|o| o.pid).collect();
    assert_eq!(pids, expected);
    assert_eq!(snapshot.pids_on_port(server.port), expected);
    let names: Vec<&str> = found[0].owners.iter().map(|o| o.process.as_str()).collect();
    assert!(names.iter().all(|n| n.starts_with("python")), "{names:?}");
    assert_eq!(names[0], names[1]);
}

#[test]
fn established_connections_are_not_listed_only_the_listener_is() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_served, _) = listener.accept().unwrap();

    let snapshot = Snapshot::take().unwrap();

    let found: Vec<&Socket> = snapshot.on_port(port).collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].state, "LISTEN");
    assert!(!snapshot.is_listening(client.local_addr().unwrap().port()));
}

#[test]
fn a_filtered_snapshot_holds_only_the_wanted_ports() {
    let wanted = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let wanted_port = wanted.local_addr().unwrap().port();
    let other_port = other.local_addr().unwrap().port();

    let snapshot = Snapshot::take_filtered(|port| port == wanted_port).unwrap();

    assert!(snapshot.sockets().iter().all(|s| s.port == wanted_port));
    assert_eq!(snapshot.pids_on_port(wanted_port), [std::process::id()]);
    assert!(!snapshot.is_listening(other_port));
}

#[test]
fn a_filtered_snapshot_matching_nothing_is_empty() {
    let snapshot = Snapshot::take_filtered(|_| false).unwrap();

    assert!(snapshot.is_empty());
}

#[test]
fn probe_says_in_use_for_a_port_we_listen_on() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    assert_eq!(probe(port), Probe::InUse);
}

#[test]
fn probe_says_in_use_for_a_port_held_only_by_udp() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();

    assert_eq!(probe(port), Probe::InUse);
}

#[test]
fn probe_says_free_for_a_port_we_just_released() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    assert_eq!(probe(port), Probe::Free);
}

#[test]
fn a_hand_built_snapshot_is_sorted_and_searchable_by_port() {
    let socket = |port: u16, proto: Proto| Socket {
        proto,
        family: Family::Ipv4,
        address: "0.0.0.0".parse().unwrap(),
        port,
        state: "LISTEN",
        inode: u64::from(port),
        uid: 0,
        user: "root".into(),
        owners: vec![Owner {
            pid: u32::from(port),
            process: "srv".into(),
        }],
    };
    let snapshot = Snapshot::from_sockets(vec![
        socket(8080, Proto::Udp),
        socket(22, Proto::Tcp),
        socket(8080, Proto::Tcp),
    ]);

    let order: Vec<(u16, Proto)> = snapshot
        .sockets()
        .iter()
        .map(|s| (s.port, s.proto))
        .collect();
    assert_eq!(
        order,
        [(22, Proto::Tcp), (8080, Proto::Tcp), (8080, Proto::Udp)]
    );
    assert_eq!(snapshot.on_port(8080).count(), 2);
    assert_eq!(snapshot.ports().collect::<Vec<_>>(), [22, 8080]);
    assert!(!snapshot.is_listening(23));
    assert_eq!(snapshot.sockets()[0].endpoint(), "0.0.0.0:22");
}
