//! Shared harness of the client's integration tests: a real `portunus-server` on loopback, the
//! operator steps over its HTTP API, `portunus-client` processes with their stderr captured,
//! and small echo/probe servers to send traffic through.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};

pub const PASSWORD: &str = "correct horse battery";
/// How long anything in these tests may take before it counts as hanging.
pub const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Processes

static BUILD: Once = Once::new();

/// The `portunus-server` binary: `$PORTUNUS_SERVER_BIN`, else the one next to this test's
/// directory in the target dir, built (or brought up to date) once per test binary.
pub fn server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PORTUNUS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<test> → target/<profile>/portunus-server
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    BUILD.call_once(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "portunus-server",
            "--bin",
            "portunus-server",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        if let Some(target_dir) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target_dir);
        }
        let status = cmd
            .status()
            .expect("cannot run cargo to build portunus-server");
        assert!(status.success(), "building portunus-server failed");
    });
    let bin = profile_dir.join("portunus-server");
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

/// Sends `signal` to a child.
pub fn signal(child: &Child, signal: Signal) {
    let _ = kill_process(Pid::from_child(child), signal);
}

/// Collected stderr lines of a child, with a way to wait for one.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn capture(stream: impl Read + Send + 'static, echo: &'static str) -> Log {
        let log = Log::default();
        let lines = log.0.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if std::env::var_os("PORTUNUS_TEST_ECHO").is_some() {
                    eprintln!("[{echo}] {line}");
                }
                lines.lock().unwrap().push(line);
            }
        });
        log
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until at least `n` lines contain `needle`; the last of them.
    pub fn wait_count(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let found: Vec<String> = self
                .lines()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {n}× {needle:?} within {WAIT:?}; log:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_count(needle, 1)
    }
}

/// The value of `key=` in an `event=…` line (unquoted values only).
pub fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

/// A running `portunus-server serve`.
pub struct Server {
    child: Option<Child>,
    pub data: PathBuf,
    pub api: String,
    pub api_addr: String,
    pub control: String,
    pub setup_token: Option<String>,
    pub log: Log,
}

impl Server {
    /// Starts on ephemeral loopback ports.
    pub fn start(data: &Path) -> Server {
        Server::start_on(data, "127.0.0.1:0", "127.0.0.1:0")
    }

    /// Starts with the given API and control addresses and waits until it is ready.
    pub fn start_on(data: &Path, api: &str, control: &str) -> Server {
        let mut child = Command::new(server_bin())
            .env("PORTUNUS_SERVER_ALLOW_UNSUPPORTED_FS", "1")
            .env_remove("PORTUNUS_DATA_DIR")
            .env_remove("PORTUNUS_TOKEN")
            .env_remove("PORTUNUS_SERVER")
            .arg("--data-dir")
            .arg(data)
            .args([
                "serve",
                "--api-listen",
                api,
                "--control-listen",
                control,
                "--metrics-listen",
                "off",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Log::capture(child.stderr.take().unwrap(), "server");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(ready) = log
                .lines()
                .iter()
                .find(|l| l.starts_with("event=startup.ready"))
            {
                let api = field(ready, "api").unwrap();
                let setup_token = log
                    .lines()
                    .iter()
                    .find(|l| l.starts_with("event=startup.setup_token"))
                    .and_then(|l| field(l, "token"));
                return Server {
                    child: Some(child),
                    data: data.to_path_buf(),
                    api_addr: api.trim_start_matches("http://").to_string(),
                    api,
                    control: field(ready, "control").unwrap(),
                    setup_token,
                    log,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited with {status}: {}", log.text());
            }
            assert!(
                Instant::now() < deadline,
                "server not ready: {}",
                log.text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same data directory and addresses.
    pub fn restart(&self) -> Server {
        // The old listener's port may need a moment to be free again after a SIGKILL.
        let deadline = Instant::now() + WAIT;
        loop {
            let probe_api = TcpListener::bind(&self.api_addr);
            let probe_control = TcpListener::bind(&self.control);
            if probe_api.is_ok() && probe_control.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "ports stayed busy");
            thread::sleep(Duration::from_millis(50));
        }
        Server::start_on(&self.data, &self.api_addr, &self.control)
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn http(&self) -> Http {
        Http::new(&self.api)
    }

    /// Creates the first superadmin and returns an operator handle.
    pub fn bootstrap(&self) -> Operator {
        let http = self.http();
        let (status, body) = http.call(
            "POST",
            "/v1/setup",
            None,
            Some(json!({
                "setup_token": self.setup_token.as_ref().unwrap(),
                "username": "admin",
                "password": PASSWORD,
            })),
        );
        assert_eq!(status, 201, "{body}");
        Operator {
            http,
            token: body["token"].as_str().unwrap().to_string(),
            user_id: body["user"]["id"].as_str().unwrap().to_string(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The API client the server's own tests use.
#[path = "../../../portunus-server/tests/common/http.rs"]
mod http;
pub use http::Http;

/// The superadmin's side of a test.
pub struct Operator {
    pub http: Http,
    pub token: String,
    pub user_id: String,
}

impl Operator {
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, out) = self.http.call(method, path, Some(&self.token), body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {out}"
        );
        out
    }

    /// A new client: (id, enrollment URI).
    pub fn client(&self, name: &str) -> (String, String) {
        let out = self.ok("POST", "/v1/clients", Some(json!({ "name": name })));
        (
            out["client"]["id"].as_str().unwrap().to_string(),
            out["enrollment"]["uri"].as_str().unwrap().to_string(),
        )
    }

    /// Pushes a rule; its id.
    pub fn rule(&self, body: Value) -> String {
        let out = self.ok("POST", "/v1/rules", Some(body));
        out["id"].as_str().unwrap().to_string()
    }

    pub fn client_info(&self, id: &str) -> Value {
        self.ok("GET", &format!("/v1/clients/{id}"), None)
    }
}

/// A TCP rule body to one target on loopback.
pub fn tcp_rule(client: &str, listen: u16, target: u16) -> Value {
    json!({
        "client_id": client,
        "protocol": "tcp",
        "listen_addr": "127.0.0.1",
        "listen": listen.to_string(),
        "targets": [{ "host": "127.0.0.1", "port": target }],
    })
}

// ---------------------------------------------------------------------------------------------
// The client

pub fn client_bin() -> &'static str {
    env!("CARGO_BIN_EXE_portunus-client")
}

/// A `portunus-client` command with a clean environment rooted in `home`.
pub fn client_cmd(home: &Path) -> Command {
    let mut cmd = Command::new(client_bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("PORTUNUS_CLIENT_REPORT_SECS", "0.5")
        .current_dir(home)
        .stdin(Stdio::null());
    cmd
}

/// Enrolls with `uri`; the bundle's path.
pub fn enroll(home: &Path, uri: &str) -> PathBuf {
    let out = client_cmd(home).args(["enroll", uri]).output().unwrap();
    assert!(
        out.status.success(),
        "enroll failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    home.join("config/portunus/client.bundle.json")
}

/// A running `portunus-client`.
pub struct Client {
    child: Option<Child>,
    pub log: Log,
}

impl Client {
    /// `portunus-client` (run) with `home`'s bundle and state.
    pub fn start(home: &Path) -> Client {
        Client::spawn(client_cmd(home))
    }

    pub fn spawn(mut cmd: Command) -> Client {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Log::capture(child.stderr.take().unwrap(), "client");
        Client {
            child: Some(child),
            log,
        }
    }

    pub fn signal(&self, sig: Signal) {
        if let Some(child) = &self.child {
            signal(child, sig);
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("client did not exit; log:\n{}", self.log.text());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::TERM);
        self.wait()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic

/// A loopback port free for both TCP and UDP right now.
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A background server that stops when dropped.
pub struct Background {
    stop: Arc<AtomicBool>,
    pub port: u16,
    handle: Option<thread::JoinHandle<()>>,
}

impl Background {
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A TCP server on `port` (0: any) that runs `handle` per connection. Stopping it closes the
/// listener (connections already accepted finish on their own).
pub fn tcp_server(
    port: u16,
    handle: impl Fn(TcpStream) + Send + Sync + Clone + 'static,
) -> Background {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    let h = handle.clone();
                    thread::spawn(move || h(stream));
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Background {
        stop,
        port,
        handle: Some(handle),
    }
}

/// A TCP echo server.
pub fn tcp_echo(port: u16) -> Background {
    tcp_server(port, |mut s| {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// A TCP server that answers every connection with `tag` and closes.
pub fn tcp_tag(port: u16, tag: &'static str) -> Background {
    tcp_server(port, move |mut s| {
        let _ = s.write_all(tag.as_bytes());
    })
}

/// A UDP echo server.
pub fn udp_echo(port: u16) -> Background {
    let socket = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        let mut buf = [0u8; 65_536];
        while !flag.load(Ordering::SeqCst) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], from);
            }
        }
    });
    Background {
        stop,
        port,
        handle: Some(handle),
    }
}

/// Connects to a local port.
pub fn connect(port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), WAIT)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Sends `data` on an open connection and reads the same number of bytes back.
pub fn echo_on(s: &mut TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(data)?;
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

/// One fresh connection, `data` there and back.
pub fn tcp_roundtrip(port: u16, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = connect(port)?;
    echo_on(&mut s, data)
}

/// Everything a fresh connection receives until the peer closes.
pub fn tcp_read_all(port: u16) -> std::io::Result<Vec<u8>> {
    let mut s = connect(port)?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)?;
    Ok(got)
}

/// One datagram there and back.
pub fn udp_roundtrip(port: u16, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.send_to(data, ("127.0.0.1", port))?;
    let mut buf = [0u8; 65_536];
    let (n, _) = s.recv_from(&mut buf)?;
    Ok(buf[..n].to_vec())
}

/// Retries `f` until it returns `Some` (or panics after [`WAIT`] with `what`).
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until a TCP round trip through `port` works.
pub fn wait_tcp(port: u16) {
    eventually(&format!("TCP through port {port}"), || {
        tcp_roundtrip(port, b"ping").ok().filter(|r| r == b"ping")
    });
}

/// Waits until connections to `port` are refused.
pub fn wait_refused(port: u16) {
    eventually(
        &format!("port {port} to refuse connections"),
        || match TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), WAIT) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        },
    );
}

/// A fleet: a server with its admin, one enrolled client home.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub op: Operator,
    pub client_id: String,
    pub home: PathBuf,
}

impl Fleet {
    /// A server, its admin, and a client enrolled into `dir/home` (not running yet).
    pub fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("data"));
        let op = server.bootstrap();
        let (client_id, uri) = op.client("edge");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        enroll(&home, &uri);
        Fleet {
            dir,
            server,
            op,
            client_id,
            home,
        }
    }
}
