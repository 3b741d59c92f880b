//! Shared helpers for portman's integration tests: a private database per test, the real binary,
//! and real listeners (python3 processes) on loopback.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// A test's own database in a temp directory.
pub struct Env {
    pub dir: TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("portkeeper").join("database.db")
    }

    /// `portman` with this test's database (tmpfs is allowed for tests).
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portman"));
        cmd.env("PORTMAN_DB", self.db())
            .env("PORTMAN_ALLOW_UNSUPPORTED_FS", "1")
            .env("USER", "tester")
            .env_remove("HOME");
        cmd
    }

    /// Runs portman with `args`; returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out: Output = self.cmd().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs portman, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "portman {args:?} failed: {out}{err}");
        out
    }

    /// Runs portman with `--json` appended, asserts the exit code, and parses stdout.
    pub fn json(&self, args: &[&str], want_code: i32) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let (code, out, err) = self.run(&all);
        assert_eq!(code, want_code, "portman {all:?}: {out}{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Opens the database directly, as the documented SQL would.
    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db()).unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

const LISTENER: &str = r#"
import socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
typ = socket.SOCK_DGRAM if kind == 'udp' else socket.SOCK_STREAM
s = socket.socket(fam, typ)
if kind == 'dual':
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
if kind == 'ignore-term':
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
held = []
if typ == socket.SOCK_STREAM:
    s.listen(16)
print(s.getsockname()[1], flush=True)
if typ == socket.SOCK_STREAM:
    s.settimeout(0.2)
    while True:
        try:
            c, _ = s.accept()
            held.append(c)
        except socket.timeout:
            pass
        except OSError:
            break
else:
    sys.stdin.read()
"#;

/// A real process listening on loopback; killed (if still running) when dropped.
pub struct Listener {
    pub child: Child,
    pub port: u16,
    _stdin: ChildStdin,
}

impl Listener {
    /// `kind`: tcp, udp, dual (IPv6 socket with V6ONLY off), ignore-term (tcp that ignores TERM).
    pub fn start(kind: &str, host: &str, port: u16) -> Option<Listener> {
        let mut child = Command::new("python3")
            .args(["-c", LISTENER, kind, host, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed for the listener tests");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Ok(port) = line.trim().parse() else {
            let _ = child.kill();
            let _ = child.wait();
            return None; // e.g. no IPv6 on this host
        };
        Some(Listener {
            child,
            port,
            _stdin: stdin,
        })
    }

    pub fn tcp(host: &str) -> Listener {
        Listener::start("tcp", host, 0).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it and waits until it is gone.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real client connected to `port`, held open until dropped.
pub struct Client {
    pub child: Child,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let script = "import socket,sys\ns=socket.create_connection(('127.0.0.1', int(sys.argv[1])))\nprint('connected', flush=True)\nsys.stdin.read()";
        let mut child = Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "connected");
        Client { child }
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now, and that is not in the ranges tests request from.
pub fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Every row of `ports`, as the documented columns, for comparing databases.
pub fn ports_rows(conn: &rusqlite::Connection) -> Vec<Vec<String>> {
    let mut stmt = conn
        .prepare(
            "SELECT number, projectName, coalesce(description,''), status, reservedAt,
                    coalesce(lastSeenAt,''), updatedAt, coalesce(autoRelease,0),
                    coalesce(tags,''), coalesce(metadata,'')
             FROM ports ORDER BY number",
        )
        .unwrap();
    stmt.query_map([], |r| {
        (0..10)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                    rusqlite::types::Value::Integer(n) => n.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
            })
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .unwrap()
    .collect::<rusqlite::Result<Vec<_>>>()
    .unwrap()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
