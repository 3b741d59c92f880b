//! The data plane's benchmark, in one run on loopback, against the real `portunus-standalone`
//! process:
//!
//! - throughput of one TCP stream through one rule, next to the same stream sent directly to the
//!   target (goal: at least 0.8× direct);
//! - added round-trip latency of a 1-byte request/response, p50 and p99, forwarded minus direct
//!   (goal: p50 under 50 µs);
//! - the forwarder's resident memory while it carries 1,000 TCP connections and 1,000 UDP flows
//!   (goal: under 50 MB).
//!
//! Run: `cargo bench -p portunus-client --bench forward` (add `-- --json` for one JSON line).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STREAM_BYTES: u64 = 2 << 30;
const ROUND_TRIPS: usize = 20_000;
const CONNECTIONS: usize = 1_000;
const FLOWS: usize = 1_000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP server that discards everything (counting is the client's job).
fn sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                let _ = stream.write_all(b"k");
            });
        }
    });
    addr
}

/// A TCP echo server, one thread per connection.
fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                })
                .unwrap();
        }
    });
    addr
}

/// A UDP echo server.
fn udp_echo() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    addr
}

/// Sends `STREAM_BYTES` to `to` and waits for the sink's acknowledgement; returns Gbit/s.
fn stream(to: SocketAddr) -> f64 {
    let mut s = TcpStream::connect(to).unwrap();
    let chunk = vec![7u8; 256 * 1024];
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < STREAM_BYTES {
        s.write_all(&chunk).unwrap();
        sent += chunk.len() as u64;
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).unwrap();
    sent as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e9
}

/// Round-trip times of 1-byte messages.
fn round_trips(to: SocketAddr) -> Vec<Duration> {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_nodelay(true).unwrap();
    let mut byte = [1u8; 1];
    for _ in 0..1000 {
        s.write_all(&byte).unwrap();
        s.read_exact(&mut byte).unwrap();
    }
    let mut times: Vec<Duration> = (0..ROUND_TRIPS)
        .map(|_| {
            let at = Instant::now();
            s.write_all(&byte).unwrap();
            s.read_exact(&mut byte).unwrap();
            at.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // /proc reports in USER_HZ, which Linux fixes at 100 for user space.
    ticks / 100.0
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the forwarder never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut raised = limit;
    raised.current = limit.maximum.map(|m| m.min(65_536)).or(Some(65_536));
    let _ = setrlimit(Resource::Nofile, raised);
}

struct Forwarder(Child);

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    raise_fd_limit();
    let (sink, echo, uecho) = (sink(), tcp_echo(), udp_echo());
    let (p_stream, p_echo, p_udp) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portunus.toml");
    std::fs::write(
        &config,
        format!(
            "[[rule]]\nid = \"stream\"\nprotocol = \"tcp\"\nlisten = \"{p_stream}\"\nlisten_addr = \"127.0.0.1\"\ntargets = [\"{sink}\"]\n\n\
             [[rule]]\nid = \"echo\"\nprotocol = \"tcp\"\nlisten = \"{p_echo}\"\nlisten_addr = \"127.0.0.1\"\ntargets = [\"{echo}\"]\n\n\
             [[rule]]\nid = \"udp\"\nprotocol = \"udp\"\nlisten = \"{p_udp}\"\nlisten_addr = \"127.0.0.1\"\ntargets = [\"{uecho}\"]\n"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_portunus-standalone"))
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let forwarder = Forwarder(child);
    wait_for(p_stream);
    wait_for(p_echo);
    let pid = forwarder.0.id();
    let idle_rss = rss_kib(pid);

    // Throughput: alternate direct and forwarded runs, best of three each.
    let (mut direct, mut via) = (0f64, 0f64);
    let cpu_before = cpu_seconds(pid);
    for _ in 0..3 {
        direct = direct.max(stream(sink));
        via = via.max(stream(SocketAddr::from(([127, 0, 0, 1], p_stream))));
    }
    // What forwarding costs the forwarder itself, whatever the sender and receiver cost: on a
    // machine with two cores the three processes share them, so throughput alone undersells it.
    let cpu_per_gib =
        (cpu_seconds(pid) - cpu_before) / (3.0 * STREAM_BYTES as f64 / (1u64 << 30) as f64);
    let capacity_gbit = 8.0 * (1u64 << 30) as f64 / 1e9 / cpu_per_gib;

    // Latency.
    let direct_rt = round_trips(echo);
    let via_rt = round_trips(SocketAddr::from(([127, 0, 0, 1], p_echo)));
    let added =
        |p: f64| pct(&via_rt, p).as_secs_f64() * 1e6 - pct(&direct_rt, p).as_secs_f64() * 1e6;

    // Memory with 1,000 TCP connections and 1,000 UDP flows held open.
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut s = TcpStream::connect(("127.0.0.1", p_echo)).unwrap();
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        conns.push(s);
    }
    let mut flows = Vec::with_capacity(FLOWS);
    for _ in 0..FLOWS {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        u.send_to(b"x", ("127.0.0.1", p_udp)).unwrap();
        let mut b = [0u8; 16];
        u.recv_from(&mut b).unwrap();
        flows.push(u);
    }
    let loaded_rss = rss_kib(pid);
    drop(conns);
    drop(flows);

    let ratio = via / direct;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "throughput_gbit_direct": direct, "throughput_gbit_forwarded": via, "ratio": ratio,
                "rtt_p50_us_direct": pct(&direct_rt, 0.5).as_secs_f64() * 1e6,
                "rtt_p50_us_forwarded": pct(&via_rt, 0.5).as_secs_f64() * 1e6,
                "added_p50_us": added(0.5), "added_p99_us": added(0.99),
                "forwarder_cpu_s_per_gib": cpu_per_gib, "forwarder_gbit_per_core": capacity_gbit,
                "rss_idle_kib": idle_rss, "rss_loaded_kib": loaded_rss,
                "tcp_connections": CONNECTIONS, "udp_flows": FLOWS,
            })
        );
        return;
    }
    println!("Portunus forwarder on loopback (portunus-standalone, one run)");
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "case", "direct", "forwarded", "ratio"
    );
    println!(
        "{:<44} {:>12.2} {:>12.2} {:>8.2}",
        "TCP throughput, one stream, Gbit/s (best of 3)", direct, via, ratio
    );
    println!(
        "{:<44} {:>12} {:>12.3} {:>8}",
        "forwarder CPU seconds per GiB forwarded",
        "",
        cpu_per_gib,
        format!("{capacity_gbit:.0} Gbit/s per core")
    );
    println!(
        "{:<44} {:>12.1} {:>12.1} {:>8}",
        "round trip p50, µs",
        pct(&direct_rt, 0.5).as_secs_f64() * 1e6,
        pct(&via_rt, 0.5).as_secs_f64() * 1e6,
        format!("{:+.1}", added(0.5))
    );
    println!(
        "{:<44} {:>12.1} {:>12.1} {:>8}",
        "round trip p99, µs",
        pct(&direct_rt, 0.99).as_secs_f64() * 1e6,
        pct(&via_rt, 0.99).as_secs_f64() * 1e6,
        format!("{:+.1}", added(0.99))
    );
    println!(
        "{:<44} {:>12} {:>12}",
        "forwarder RSS, MiB: idle / 1,000 TCP + 1,000 UDP",
        format!("{:.1}", idle_rss as f64 / 1024.0),
        format!("{:.1}", loaded_rss as f64 / 1024.0)
    );
}
