//! The llama-server supervisor against real processes: a small Python HTTP server that answers
//! `/health` like llama-server for the happy path and crash recovery, and Python programs for a
//! server that keeps dying and one that ignores SIGTERM. (The dashboard against our stand-in and
//! the real llama-server is tested elsewhere.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::free_port;
use llama_dashboard::llama::launch::Launch;
use llama_dashboard::llama::supervisor::{State, Supervisor, SupervisorError, Timing};
use llama_dashboard::llama::upstream::Upstream;

fn quick() -> Timing {
    Timing {
        grace: Duration::from_millis(500),
        ready_timeout: Duration::from_secs(20),
        backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        max_attempts: 3,
    }
}

/// A process that answers `GET /health` with 200 on its port, as a ready llama-server does.
fn healthy_server() -> Launch {
    let mut launch = python("");
    launch.args = vec![
        "-c".into(),
        format!(
            "import http.server\n\
             class H(http.server.BaseHTTPRequestHandler):\n\
             \x20   def do_GET(self):\n\
             \x20       self.send_response(200 if self.path == '/health' else 404)\n\
             \x20       self.end_headers()\n\
             \x20       self.wfile.write(b'{{\"status\":\"ok\"}}')\n\
             \x20   def log_message(self, *a):\n\
             \x20       pass\n\
             http.server.HTTPServer(('127.0.0.1', {}), H).serve_forever()\n",
            launch.port
        ),
    ];
    launch
}

fn python(code: &str) -> Launch {
    Launch {
        program: PathBuf::from("python3"),
        args: vec!["-c".into(), code.into()],
        host: "127.0.0.1".into(),
        port: free_port(),
        models_dir: PathBuf::from("/nonexistent"),
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

async fn until(sup: &Supervisor, what: &str, wanted: impl Fn(&State) -> bool) -> State {
    let mut changes = sup.subscribe();
    tokio::time::timeout(Duration::from_secs(20), changes.wait_for(|s| wanted(s)))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}; state {:?}", sup.state()))
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_answers_and_stops_its_own_child() {
    let launch = healthy_server();
    let sup = Supervisor::new(quick());
    sup.start(launch.clone()).await.unwrap();
    let State::Ready { pid, url } = sup.state() else {
        panic!("not ready: {:?}", sup.state());
    };
    assert_eq!(url, launch.base_url());
    assert!(alive(pid));
    assert!(sup.uptime().is_some());
    let (status, _) = Upstream::new(&url)
        .json("GET", "/health", None, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        sup.start(launch.clone()).await,
        Err(SupervisorError::AlreadyRunning)
    );
    assert!(sup.stop().await);
    assert_eq!(sup.state(), State::Stopped);
    assert!(!alive(pid), "the child is gone after stop");
    assert!(!sup.stop().await, "nothing left to stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_server_is_restarted() {
    let sup = Supervisor::new(quick());
    sup.start(healthy_server()).await.unwrap();
    let State::Ready { pid: first, .. } = sup.state() else {
        panic!()
    };
    let victim = rustix::process::Pid::from_raw(i32::try_from(first).unwrap()).unwrap();
    rustix::process::kill_process(victim, rustix::process::Signal::KILL).unwrap();
    let crashed = until(&sup, "the crash", |s| matches!(s, State::Crashed { .. })).await;
    let State::Crashed { reason, .. } = crashed else {
        panic!()
    };
    assert!(reason.contains("exited"), "{reason}");
    let again = until(&sup, "the restart", |s| matches!(s, State::Ready { .. })).await;
    let State::Ready { pid: second, .. } = again else {
        panic!()
    };
    assert_ne!(first, second);
    sup.stop().await;
    assert!(!alive(second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_binary_or_a_server_that_keeps_dying_fails_with_the_reason() {
    let sup = Supervisor::new(quick());
    let mut missing = python("");
    missing.program = PathBuf::from("/nonexistent/llama-server");
    let error = sup.start(missing).await.unwrap_err();
    assert!(
        format!("{error}").contains("cannot run /nonexistent/llama-server"),
        "{error}"
    );

    let sup = Supervisor::new(quick());
    let _ = sup.start(python("import sys; sys.exit(3)")).await;
    let failed = until(&sup, "giving up", |s| matches!(s, State::Failed { .. })).await;
    let State::Failed { reason } = failed else {
        panic!()
    };
    assert!(reason.contains("gave up after 3 attempts"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_ignoring_sigterm_is_killed_after_the_grace_period() {
    let sup = Supervisor::new(quick());
    let stubborn = python(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)",
    );
    let starting = sup.clone();
    let start = tokio::spawn(async move { starting.start(stubborn).await });
    let State::Starting { pid } = until(
        &sup,
        "the start",
        |s| matches!(s, State::Starting { pid } if *pid > 0),
    )
    .await
    else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(300)).await; // let Python install its handler
    let begun = Instant::now();
    assert!(sup.stop().await);
    let took = begun.elapsed();
    assert!(!alive(pid), "killed");
    assert!(
        took >= Duration::from_millis(450),
        "SIGKILL only after the grace period: {took:?}"
    );
    assert_eq!(sup.state(), State::Stopped);
    let _ = start.await;
}
