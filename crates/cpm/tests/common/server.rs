//! A real `cpm serve` for tests: started on a loopback port read from its first log line, its log
//! collected, killed (SIGKILL) when dropped; and a runner for client commands with a deadline.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Env;

/// How long any one client command may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A running `cpm serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// The host key fingerprint from the first log line.
    pub fingerprint: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `cpm serve --listen 127.0.0.1:0` for `env`.
    pub fn start(env: &Env) -> Server {
        Server::try_start(env, "127.0.0.1:0").unwrap_or_else(|log| panic!("{log}"))
    }

    /// Starts `cpm serve` on `127.0.0.1:port`, retrying for a while should the port still be
    /// taken by the instance that just stopped.
    pub fn start_on(env: &Env, port: u16) -> Server {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match Server::try_start(env, &format!("127.0.0.1:{port}")) {
                Ok(server) => return server,
                Err(log) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot restart on port {port}: {log}"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Starts `cpm serve --listen ADDR`; the log so far when it ends before listening.
    pub fn try_start(env: &Env, listen: &str) -> Result<Server, String> {
        let mut child = env
            .cmd()
            .args(["serve", "--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (first, listening) = mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening on") {
                    let _ = first.send(Some(line.clone()));
                }
                lines.lock().unwrap().push(line);
            }
            // The server ended (or closed stderr) without listening.
            let _ = first.send(None);
        });
        let line = match listening.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(line)) => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "cpm serve did not start: {:?}",
                    log.lock().unwrap()
                ));
            }
        };
        // cpm serve: listening on 127.0.0.1:PORT, host key SHA256:… (ssh-ed25519)
        let addr = line
            .split("listening on ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        let fingerprint = line
            .split("host key ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "port {port} never accepted a connection"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Server {
            child,
            port,
            fingerprint,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (briefly) for a log line containing `text`; returns it.
    pub fn wait_for_log(&self, text: &str) -> String {
        self.wait_for_logs(text, 1)
    }

    /// Waits (briefly) until `count` log lines contain `text`; returns the last of them.
    pub fn wait_for_logs(&self, text: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let log = self.log.lock().unwrap();
                let found: Vec<&String> = log.iter().filter(|l| l.contains(text)).collect();
                if found.len() >= count {
                    return found[count - 1].clone();
                }
                assert!(
                    Instant::now() < deadline,
                    "not {count} log lines with {text:?} in {log:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL: no chance to shut down cleanly, which is what some tests want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a client command did.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Collects a spawned command's output, killing it (and failing the test) past [`DEADLINE`].
pub fn finish(mut child: Child, what: &str) -> Ran {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ran {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

/// Runs a command with no stdin under [`DEADLINE`].
pub fn run(mut cmd: Command) -> Ran {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child, &what)
}
