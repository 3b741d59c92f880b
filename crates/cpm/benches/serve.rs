//! `cpm serve` against plain git on the same machine, in one run: clone and push of a
//! 10,000-commit repository, the per-connection cost of `ssh … info`, and 50 clones at once.
//!
//! A self-contained harness (`harness = false`): it builds a private cpm home in a temp directory,
//! makes the repository with `git fast-import` from a stream generated here, starts the release
//! `cpm serve --listen 127.0.0.1:0`, and times the real `git` and OpenSSH client. It prints
//! figures and asserts nothing about them. `CPM_BENCH_RUNS` sets how many timed runs each
//! median takes (default 7).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Commits in the benchmark repository.
const COMMITS: usize = 10_000;

/// Clones at once in part (d).
const CONCURRENT: usize = 50;

/// The goal for the cpm / git ratios.
const GOAL: f64 = 1.5;

fn main() {
    let runs: usize = std::env::var("CPM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(7);
    let bench = Bench::new();
    println!("cpm serve benchmark");
    println!(
        "  {}; {}; {} CPUs; cpm binary {}",
        first_line(&bench.output(Command::new("git").arg("--version"))),
        first_line(&String::from_utf8_lossy(
            &Command::new("ssh").arg("-V").output().unwrap().stderr
        )),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        env!("CARGO_BIN_EXE_cpm"),
    );

    let started = Instant::now();
    let source = bench.fast_import();
    let built = started.elapsed();
    let big = bench.repo_dir("big");
    bench.cpm(&["repo", "create", "acme/big"]);
    bench.git(
        &source,
        &[
            "push",
            "-q",
            big.to_str().unwrap(),
            "refs/heads/main:refs/heads/main",
        ],
    );
    let count = bench.git(&source, &["rev-list", "--count", "main"]);
    println!(
        "  repository: {} commits, built with git fast-import in {}, {} on disk",
        count.trim(),
        ms(built),
        mib(dir_size(&big.join("objects")))
    );
    println!("  {runs} timed runs per median (after one warm-up run each)");
    println!();

    // (a) clone.
    let clones = bench.home.join("clones");
    std::fs::create_dir_all(&clones).unwrap();
    let ssh_url = bench.url("acme/big");
    let file_url = format!("file://{}", big.display());
    let n = std::cell::Cell::new(0);
    let clone = |url: &str| {
        n.set(n.get() + 1);
        let dest = clones.join(format!("c{}.git", n.get()));
        let took = bench.time_git(
            &bench.home,
            &["clone", "-q", "--bare", url, dest.to_str().unwrap()],
        );
        std::fs::remove_dir_all(&dest).unwrap();
        took
    };
    let (served, plain) = alternate(runs, || clone(&ssh_url), || clone(&file_url));
    println!("(a) git clone --bare of {COMMITS} commits, median of {runs}");
    row("through cpm serve (ssh://127.0.0.1)", served);
    row("git clone file:// of the same repository", plain);
    ratio(served, plain);
    println!();

    // (b) push into an empty repository.
    let targets = bench.home.join("targets");
    std::fs::create_dir_all(&targets).unwrap();
    let mut n = 0;
    let mut push_cpm = || {
        n += 1;
        let name = format!("acme/push{n}");
        bench.cpm(&["repo", "create", &name]);
        let took = bench.time_git(
            &source,
            &[
                "push",
                "-q",
                &bench.url(&name),
                "refs/heads/main:refs/heads/main",
            ],
        );
        bench.cpm(&["repo", "delete", &name, "--purge"]);
        took
    };
    let mut m = 0;
    let mut push_local = || {
        m += 1;
        let dest = targets.join(format!("t{m}.git"));
        bench.git(
            &bench.home,
            &["init", "-q", "--bare", dest.to_str().unwrap()],
        );
        let took = bench.time_git(
            &source,
            &[
                "push",
                "-q",
                dest.to_str().unwrap(),
                "refs/heads/main:refs/heads/main",
            ],
        );
        std::fs::remove_dir_all(&dest).unwrap();
        took
    };
    let (served, plain) = alternate(runs, &mut push_cpm, &mut push_local);
    println!("(b) git push of {COMMITS} commits into an empty repository, median of {runs}");
    row("through cpm serve (ssh://127.0.0.1)", served);
    row("git push to a local bare repository path", plain);
    ratio(served, plain);
    println!();

    // (c) one connection's authentication and decision.
    let info_runs = runs * 3;
    let (info, version) = alternate(
        info_runs,
        || {
            let mut ssh = bench.ssh();
            ssh.args(["-p", &bench.port.to_string(), "git@127.0.0.1", "info"]);
            bench.time(&mut ssh)
        },
        || bench.time(&mut bench.cpm_cmd(&["--version"])),
    );
    println!("(c) one connection, median of {info_runs}");
    row(
        "`ssh … git@127.0.0.1 info` round trip through cpm serve",
        info,
    );
    println!(
        "      (ssh process start, TCP connect, key exchange, public key auth, access decision, reply)"
    );
    row(
        "baseline in the same run: `cpm --version` (process start only)",
        version,
    );
    println!();

    // (d) many clones at once.
    let started = Instant::now();
    let threads: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let mut cmd = bench.git_cmd(
                &bench.home,
                &[
                    "clone",
                    "-q",
                    "--bare",
                    &ssh_url,
                    clones.join(format!("many{i}.git")).to_str().unwrap(),
                ],
            );
            std::thread::spawn(move || {
                let out = cmd.output().unwrap();
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
        })
        .collect();
    let results: Vec<(bool, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let total = started.elapsed();
    let succeeded = results.iter().filter(|(ok, _)| *ok).count();
    println!("(d) {CONCURRENT} concurrent git clone --bare through cpm serve");
    println!(
        "    {succeeded}/{CONCURRENT} succeeded{}; total {}",
        if succeeded == CONCURRENT {
            " (all)"
        } else {
            ""
        },
        ms(total)
    );
    for (_, err) in results.iter().filter(|(ok, _)| !ok).take(3) {
        println!("    failure: {}", first_line(err));
    }
}

/// A private cpm home with a running `cpm serve`, and the client key that may use it.
struct Bench {
    _dir: tempfile::TempDir,
    home: PathBuf,
    key: PathBuf,
    port: u16,
    server: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(server) = self.server.as_mut() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().canonicalize().unwrap();
        let key = home.join("bench_key");
        let mut keygen = Command::new("ssh-keygen");
        keygen
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f"])
            .arg(&key);
        let out = keygen
            .output()
            .expect("ssh-keygen must be installed (openssh-client)");
        assert!(out.status.success(), "ssh-keygen: {out:?}");
        let mut bench = Bench {
            _dir: dir,
            home,
            key,
            port: 0,
            server: None,
            log: Arc::new(Mutex::new(Vec::new())),
        };
        let public = bench.key.with_extension("pub");
        bench.cpm(&["org", "create", "acme"]);
        bench.cpm(&[
            "user",
            "add",
            "bench",
            "--key-file",
            public.to_str().unwrap(),
        ]);
        bench.cpm(&["org", "member", "add", "acme", "bench", "--role", "owner"]);
        bench.start_server();
        bench
    }

    fn start_server(&mut self) {
        let mut child = self
            .cpm_cmd(&["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (first, listening) = mpsc::channel();
        let log = Arc::clone(&self.log);
        // Drains the server's log (one line per connection) so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening on") {
                    let _ = first.send(line.clone());
                }
                let mut log = log.lock().unwrap();
                if log.len() > 100 {
                    log.remove(0);
                }
                log.push(line);
            }
        });
        self.server = Some(child);
        let line = listening
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("cpm serve did not start: {:?}", self.log.lock().unwrap()));
        let addr = line
            .split("listening on ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        self.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "cpm serve never accepted");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `cpm` with HOME set to the bench's home and no cpm variables from outside.
    fn cpm_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cpm"));
        cmd.args(args)
            .env("HOME", &self.home)
            .env("USER", "bench")
            .env("CPM_ALLOW_UNSUPPORTED_FS", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("CPM_DB")
            .env_remove("CPM_CONFIG")
            .env_remove("CPM_REPO_ROOT");
        cmd
    }

    fn cpm(&self, args: &[&str]) -> String {
        self.output(&mut self.cpm_cmd(args))
    }

    /// Where `acme/NAME` lives.
    fn repo_dir(&self, name: &str) -> PathBuf {
        self.home.join(format!(".cpm/repos/acme/{name}.git"))
    }

    /// `ssh://git@127.0.0.1:PORT/ORG/NAME.git`.
    fn url(&self, repo: &str) -> String {
        format!("ssh://git@127.0.0.1:{}/{repo}.git", self.port)
    }

    /// The ssh options every client uses.
    fn ssh_options(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.key.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            format!(
                "UserKnownHostsFile={}",
                self.home.join("known_hosts").display()
            ),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_options()).env("HOME", &self.home);
        cmd
    }

    /// `git` in `dir`, with no user or system config and the bench's key for ssh.
    fn git_cmd(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(dir)
            .args(["-c", "init.defaultBranch=main"])
            .args(args)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env(
                "GIT_SSH_COMMAND",
                format!("ssh {}", self.ssh_options().join(" ")),
            )
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR");
        cmd
    }

    fn git(&self, dir: &Path, args: &[&str]) -> String {
        self.output(&mut self.git_cmd(dir, args))
    }

    fn time_git(&self, dir: &Path, args: &[&str]) -> Duration {
        self.time(&mut self.git_cmd(dir, args))
    }

    /// Runs a command to its end, panicking (with the server's last lines) when it fails.
    fn run(&self, cmd: &mut Command) -> Output {
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}{}\nserver log: {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log.lock().unwrap()
        );
        out
    }

    fn output(&self, cmd: &mut Command) -> String {
        String::from_utf8_lossy(&self.run(cmd).stdout).into_owned()
    }

    /// The wall time of one successful run.
    fn time(&self, cmd: &mut Command) -> Duration {
        let started = Instant::now();
        self.run(cmd);
        started.elapsed()
    }

    /// A bare repository with [`COMMITS`] small commits on main, made by `git fast-import`.
    fn fast_import(&self) -> PathBuf {
        let source = self.home.join("source.git");
        self.git(
            &self.home,
            &["init", "-q", "--bare", source.to_str().unwrap()],
        );
        let mut child = self
            .git_cmd(&source, &["fast-import", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let stream = fast_import_stream(COMMITS);
        let writer = std::thread::spawn(move || stdin.write_all(&stream));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(
            out.status.success(),
            "git fast-import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        source
    }
}

/// A fast-import stream: `commits` commits on refs/heads/main, each changing one of 100 small
/// files in 10 directories.
fn fast_import_stream(commits: usize) -> Vec<u8> {
    let mut s = String::with_capacity(commits * 200);
    for i in 1..=commits {
        let message = format!("commit {i}\n");
        let content = format!("file {} at commit {i}\n", i % 100);
        s.push_str("commit refs/heads/main\n");
        s.push_str(&format!("mark :{i}\n"));
        s.push_str(&format!(
            "author Bench <bench@example.com> {} +0000\n",
            1_700_000_000 + i
        ));
        s.push_str(&format!(
            "committer Bench <bench@example.com> {} +0000\n",
            1_700_000_000 + i
        ));
        s.push_str(&format!("data {}\n{message}", message.len()));
        if i > 1 {
            s.push_str(&format!("from :{}\n", i - 1));
        }
        s.push_str(&format!(
            "M 100644 inline dir{}/file{}.txt\ndata {}\n{content}\n",
            i % 10,
            i % 100,
            content.len()
        ));
    }
    s.push_str("done\n");
    s.into_bytes()
}

/// One warm-up of each, then `runs` of each taken in turn; the medians.
fn alternate(
    runs: usize,
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    a();
    b();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        xs.push(a());
        ys.push(b());
    }
    (median(xs), median(ys))
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn row(label: &str, d: Duration) {
    println!("    {label:<64} {:>10}", ms(d));
}

fn ratio(cpm: Duration, git: Duration) {
    let r = cpm.as_secs_f64() / git.as_secs_f64();
    println!(
        "    {:<64} {:>9.2}x  (goal <= {GOAL}x: {})",
        "ratio cpm serve / plain git",
        r,
        if r <= GOAL { "met" } else { "not met" }
    );
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}
