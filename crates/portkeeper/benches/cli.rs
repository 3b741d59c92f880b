//! portman's benchmark: wall time of the real binary, with baselines measured in the same run.
//!
//! `cargo bench -p portkeeper --bench cli` (or `scripts/bench-portman.sh`, which installs `ss` and
//! `lsof` first). Prints, for each case, the median and minimum over repeated runs:
//!
//! * `check`, `reserve`, `release`, next to starting `true` (the cost of any process);
//! * `list` with 200 and 1,000 reservations;
//! * `scan` with about 1,000 sockets open (900 TCP listeners, 100 UDP sockets), next to
//!   `ss -tulpn` and `lsof -i -P -n` on the same host at the same moment.
//!
//! These machines are noisy, so read the ratios, not the absolute figures; nothing here asserts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 30;

struct Timing {
    median: Duration,
    min: Duration,
}

fn time(runs: usize, mut f: impl FnMut()) -> Timing {
    f(); // warm up caches
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    Timing {
        median: samples[samples.len() / 2],
        min: samples[0],
    }
}

fn ms(d: Duration) -> String {
    format!("{:7.2} ms", d.as_secs_f64() * 1000.0)
}

fn report(name: &str, t: &Timing, baseline: Option<(&str, &Timing)>) {
    let ratio = baseline
        .map(|(b, bt)| {
            format!(
                "  ({:.2}x {b})",
                t.median.as_secs_f64() / bt.median.as_secs_f64()
            )
        })
        .unwrap_or_default();
    println!(
        "{name:<38} median {}  min {}{ratio}",
        ms(t.median),
        ms(t.min)
    );
}

fn run(cmd: &mut Command) {
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success() || status.code() == Some(2),
        "{cmd:?}: {status}"
    );
}

fn portman(db: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portman"));
    cmd.env("PORTMAN_DB", db)
        .env("PORTMAN_ALLOW_UNSUPPORTED_FS", "1");
    cmd
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn populate(db: &Path, count: u16) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    for i in 0..count {
        tx.execute(
            "INSERT INTO ports (number, projectName, status, reservedAt, updatedAt, tags)
             VALUES (?1, ?2, 'reserved', datetime('now'), datetime('now'), '[\"bench\"]')",
            rusqlite::params![20_000 + i, format!("project-{}", i % 50)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("database.db");
    println!(
        "portman benchmark: {} runs per case, release build, {}",
        RUNS,
        std::env::consts::ARCH
    );
    run(portman(&db).arg("list")); // create and migrate the database

    let baseline = time(RUNS, || run(&mut Command::new("true")));
    report("true (process start baseline)", &baseline, None);
    let base = Some(("true", &baseline));

    let check = time(RUNS, || run(portman(&db).args(["check", "43999"])));
    report("portman check 43999", &check, base);
    let mut n = 0u16;
    let reserve = time(RUNS, || {
        n += 1;
        run(portman(&db).args(["reserve", &(41_000 + n).to_string(), "-n", "bench"]));
    });
    report("portman reserve P -n bench", &reserve, base);
    let mut m = 0u16;
    let release = time(RUNS, || {
        m += 1;
        run(portman(&db).args(["release", &(41_000 + m).to_string()]));
    });
    report("portman release P", &release, base);

    for count in [200u16, 1000] {
        let db = dir.path().join(format!("list-{count}.db"));
        run(portman(&db).arg("list"));
        populate(&db, count);
        let t = time(RUNS, || run(portman(&db).args(["list", "--json"])));
        report(&format!("portman list --json ({count} reserved)"), &t, base);
    }

    // About 1,000 sockets on the host, held by this process.
    let mut held_tcp = Vec::new();
    let mut held_udp = Vec::new();
    for _ in 0..900 {
        held_tcp.push(TcpListener::bind("127.0.0.1:0").unwrap());
    }
    for _ in 0..100 {
        held_udp.push(UdpSocket::bind("127.0.0.1:0").unwrap());
    }
    let sockets = Command::new(env!("CARGO_BIN_EXE_portman"))
        .env("PORTMAN_DB", &db)
        .env("PORTMAN_ALLOW_UNSUPPORTED_FS", "1")
        .args(["scan", "--json", "--no-record"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&sockets.stdout).unwrap();
    println!(
        "\nscan with {} sockets listed ({} held by the benchmark):",
        doc["sockets"].as_array().map_or(0, Vec::len),
        held_tcp.len() + held_udp.len()
    );
    let scan = time(RUNS, || {
        run(portman(&db).args(["scan", "--json", "--no-record"]))
    });
    report("portman scan --json --no-record", &scan, base);
    let scan_rec = time(RUNS, || run(portman(&db).args(["scan", "--json"])));
    report("portman scan --json (records)", &scan_rec, base);
    if installed("ss") {
        let ss = time(RUNS, || run(Command::new("ss").arg("-tulpn")));
        report("ss -tulpn", &ss, base);
        println!(
            "{:<38} {:.2}x (target: at most 2x)",
            "scan / ss -tulpn",
            scan.median.as_secs_f64() / ss.median.as_secs_f64()
        );
    } else {
        println!("ss: not installed (apt-get install iproute2)");
    }
    if installed("lsof") {
        let lsof = time(10, || {
            let _ = Command::new("lsof")
                .args(["-i", "-P", "-n"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        });
        report("lsof -i -P -n", &lsof, base);
        println!(
            "{:<38} {:.1}x (target: at least 10x)",
            "lsof / scan",
            lsof.median.as_secs_f64() / scan.median.as_secs_f64()
        );
    } else {
        println!("lsof: not installed (apt-get install lsof)");
    }
    drop(held_tcp);
    drop(held_udp);
}
