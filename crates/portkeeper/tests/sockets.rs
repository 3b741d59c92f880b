//! The socket snapshot and the bind probe against real sockets on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};

use portkeeper::sockets::{
    Family, Owner, Probe, Proto, Snapshot, Socket, Source, probe, user_name,
};

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

/// True when `pids` is this test process, plus at most children of ours caught between `fork` and
/// `exec` (another test thread spawning python holds copies of our sockets for that moment).
fn only_us(pids: &[u32]) -> bool {
    let me = std::process::id();
    pids.contains(&me)
        && pids.iter().all(|&pid| {
            pid == me
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| {
                        let rest = stat.rsplit_once(')')?.1.to_string();
                        rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                    })
                    .is_none_or(|parent| parent == me)
        })
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
    let pids: Vec<u32> = socket.owners.iter().map(|o| o.pid).collect();
    assert!(only_us(&pids), "{socket:#?}");
    let me = socket
        .owners
        .iter()
        .find(|o| o.pid == std::process::id())
        .unwrap();
    assert_eq!(
        me,
        &Owner {
            pid: std::process::id(),
            process: our_process_name(),
        }
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
    assert!(only_us(
        &found[0].owners.iter().map(|o| o.pid).collect::<Vec<_>>()
    ));
}

#[test]
fn a_bound_udp_socket_appears_as_unconnected_udp() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();

    let found = sockets_on(port);

    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].proto, Proto::Udp);
    assert_eq!(found[0].state, "UNCONN");
    assert!(only_us(
        &found[0].owners.iter().map(|o| o.pid).collect::<Vec<_>>()
    ));
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
    assert!(only_us(&Snapshot::take().unwrap().pids_on_port(port)));
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
    assert!(only_us(&snapshot.pids_on_port(wanted_port)));
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

/// The inode of a socket, which a snapshot names it by.
fn inode_of(socket: &impl rustix::fd::AsFd) -> u64 {
    rustix::fs::fstat(socket).unwrap().st_ino
}

/// Sockets of every kind a snapshot lists, and three it must not: both ends of an established
/// connection and a connected UDP socket. IPv6 ones are left out where this host has no IPv6.
///
/// Tests run in parallel, and another test's socket may have one of these port numbers in the
/// other protocol or family, so snapshots are compared on these sockets only, known by inode.
struct Listeners {
    _tcp: Vec<TcpListener>,
    _udp: Vec<UdpSocket>,
    _connections: Vec<TcpStream>,
    /// `(proto, endpoint)` of each socket that must be listed, sorted.
    expected: Vec<(Proto, String)>,
    /// The inodes of the sockets that must be listed, sorted.
    listed: Vec<u64>,
    /// The inodes of all our sockets, listed or not, sorted.
    all: Vec<u64>,
    /// Every port in use here, listed or not.
    ports: Vec<u16>,
}

impl Listeners {
    fn open() -> Listeners {
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        let mut expected = Vec::new();
        for address in [
            "127.0.0.1:0",
            "0.0.0.0:0",
            "[::1]:0",
            "[::]:0",
            "[::ffff:127.0.0.1]:0",
        ] {
            if let Ok(listener) = TcpListener::bind(address) {
                expected.push((Proto::Tcp, listener.local_addr().unwrap().to_string()));
                tcp.push(listener);
            }
            if let Ok(socket) = UdpSocket::bind(address) {
                expected.push((Proto::Udp, socket.local_addr().unwrap().to_string()));
                udp.push(socket);
            }
        }
        expected.sort();
        let mut listed: Vec<u64> = tcp.iter().map(inode_of).collect();
        listed.extend(udp.iter().map(inode_of));
        listed.sort_unstable();
        let mut ports: Vec<u16> = tcp.iter().map(|l| l.local_addr().unwrap().port()).collect();
        ports.extend(udp.iter().map(|s| s.local_addr().unwrap().port()));

        // An established connection on both ends, and a connected UDP socket: not listed.
        let client = TcpStream::connect(tcp[0].local_addr().unwrap()).unwrap();
        let (served, _) = tcp[0].accept().unwrap();
        let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
        connected.connect(udp[0].local_addr().unwrap()).unwrap();
        ports.push(client.local_addr().unwrap().port());
        ports.push(connected.local_addr().unwrap().port());
        let mut all = listed.clone();
        all.extend([inode_of(&client), inode_of(&served), inode_of(&connected)]);
        all.sort_unstable();
        udp.push(connected);
        Listeners {
            _tcp: tcp,
            _udp: udp,
            _connections: vec![client, served],
            expected,
            listed,
            all,
            ports,
        }
    }

    fn wanted(&self) -> impl Fn(u16) -> bool + '_ {
        |port| self.ports.contains(&port)
    }

    /// The sockets of `snapshot` that are ours, in snapshot order.
    fn ours(&self, snapshot: &Snapshot) -> Vec<Socket> {
        snapshot
            .sockets()
            .iter()
            .filter(|s| self.all.binary_search(&s.inode).is_ok())
            .cloned()
            .collect()
    }

    /// Checks that `snapshot` lists exactly our listed sockets, at the right endpoints.
    fn check(&self, snapshot: &Snapshot) {
        let ours = self.ours(snapshot);
        let mut inodes: Vec<u64> = ours.iter().map(|s| s.inode).collect();
        inodes.sort_unstable();
        assert_eq!(inodes, self.listed, "{ours:#?}");
        let mut endpoints: Vec<(Proto, String)> =
            ours.iter().map(|s| (s.proto, s.endpoint())).collect();
        endpoints.sort();
        assert_eq!(endpoints, self.expected);
    }
}

#[test]
fn netlink_and_proc_list_the_same_sockets_with_the_same_owners() {
    let listeners = Listeners::open();

    let from_proc = Snapshot::take_from(Source::Procfs, listeners.wanted()).unwrap();
    listeners.check(&from_proc);
    let from_netlink = match Snapshot::take_from(Source::Netlink, listeners.wanted()) {
        Ok(snapshot) => snapshot,
        Err(err) => {
            println!("note: netlink sock_diag is not available here ({err}); skipping");
            return;
        }
    };

    listeners.check(&from_netlink);
    let ours = listeners.ours(&from_netlink);
    assert_eq!(ours, listeners.ours(&from_proc));
    assert!(
        ours.iter()
            .all(|s| s.owners.iter().any(|o| o.pid == std::process::id())),
        "{ours:#?}"
    );
    let automatic = Snapshot::take_filtered(listeners.wanted()).unwrap();
    assert_eq!(listeners.ours(&automatic), ours);
}

#[test]
fn netlink_and_proc_agree_on_the_whole_table() {
    // Other tests open and close sockets meanwhile, and their processes fork and exit, so our own
    // sockets are compared whole, and any other socket both reads saw (the same inode) is
    // compared without its owners.
    let listeners = Listeners::open();
    let Ok(from_netlink) = Snapshot::take_from(Source::Netlink, |_| true) else {
        println!("note: netlink sock_diag is not available here; skipping");
        return;
    };
    let from_proc = Snapshot::take_from(Source::Procfs, |_| true).unwrap();

    listeners.check(&from_netlink);
    assert_eq!(listeners.ours(&from_netlink), listeners.ours(&from_proc));
    let unowned = |s: &Socket| Socket {
        owners: Vec::new(),
        ..s.clone()
    };
    let mut compared = 0;
    for socket in from_netlink.sockets() {
        if let Some(same) = from_proc.sockets().iter().find(|s| s.inode == socket.inode) {
            assert_eq!(unowned(socket), unowned(same));
            compared += 1;
        }
    }
    assert!(compared >= listeners.listed.len());
}

#[test]
fn an_unowned_snapshot_lists_the_sockets_with_users_but_no_owners() {
    let listeners = Listeners::open();
    let (uid, user) = our_user();

    let unowned = Snapshot::take_unowned(listeners.wanted()).unwrap();
    let owned = Snapshot::take_filtered(listeners.wanted()).unwrap();

    listeners.check(&unowned);
    let ours = listeners.ours(&unowned);
    assert!(ours.iter().all(|s| s.owners.is_empty()));
    assert!(ours.iter().all(|s| s.uid == uid && s.user == user));
    assert!(unowned.pids_on_port(listeners.ports[0]).is_empty());
    let without_owners: Vec<Socket> = listeners
        .ours(&owned)
        .into_iter()
        .map(|s| Socket {
            owners: Vec::new(),
            ..s
        })
        .collect();
    assert_eq!(ours, without_owners);
}

#[test]
fn user_name_names_our_uid_as_passwd_does() {
    let (uid, user) = our_user();

    assert_eq!(user_name(uid), user);
    assert_eq!(user_name(uid), user);
}

#[test]
fn hundreds_of_listeners_in_one_process_are_all_found_with_their_owner() {
    // More files than one job of the owner search reads, so that the process is cut in slices.
    let listeners: Vec<TcpListener> = (0..400)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    ports.sort_unstable();
    let mut inodes: Vec<u64> = listeners.iter().map(inode_of).collect();
    inodes.sort_unstable();

    let snapshot = Snapshot::take_filtered(|port| ports.binary_search(&port).is_ok()).unwrap();

    // Other processes' sockets may share these port numbers; ours are known by inode.
    let ours: Vec<&Socket> = snapshot
        .sockets()
        .iter()
        .filter(|s| inodes.binary_search(&s.inode).is_ok())
        .collect();
    assert_eq!(ours.len(), inodes.len());
    for socket in ours {
        let pids: Vec<u32> = socket.owners.iter().map(|o| o.pid).collect();
        assert!(only_us(&pids), "{socket:#?}");
    }
}
