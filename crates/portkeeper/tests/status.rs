//! Status is the truth at the moment of asking: reservations joined with the kernel's sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Env, Listener};

fn history_actions(env: &Env, port: u16) -> Vec<String> {
    let conn = env.sql();
    let mut stmt = conn
        .prepare("SELECT action FROM port_history WHERE port = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([port], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_reservation_with_a_live_listener_shows_both_and_returns_to_reserved_when_it_exits() {
    let env = Env::new();
    let listener = Listener::tcp("127.0.0.1");
    let port = listener.port.to_string();
    env.ok(&["reserve", &port, "-n", "web", "-d", "dev server"]);

    let list = env.json(&["list"], 0);
    let row = &list[0];
    assert_eq!(row["number"], listener.port);
    assert_eq!(row["status"], "in-use");
    assert_eq!(row["projectName"], "web");
    assert_eq!(row["pid"], listener.pid());
    assert_eq!(row["processName"], "python3");
    assert_eq!(row["listeners"][0]["proto"], "tcp");
    assert_eq!(row["listeners"][0]["owners"][0]["pid"], listener.pid());

    let check = env.json(&["check", &port], 3);
    assert_eq!(check["status"], "in-use");
    assert_eq!(check["projectName"], "web");
    assert_eq!(check["pid"], listener.pid());

    listener.stop();
    // No manual step: the very next command sees the listener gone.
    let check = env.json(&["check", &port], 2);
    assert_eq!(check["status"], "reserved");
    assert_eq!(check["pid"], serde_json::Value::Null);
    let stored: String = env
        .sql()
        .query_row("SELECT status FROM ports WHERE number = ?1", [&port], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, "reserved");
    assert_eq!(
        history_actions(&env, listener_port(&port)),
        ["reserved", "in-use", "reserved"]
    );
}

fn listener_port(p: &str) -> u16 {
    p.parse().unwrap()
}

#[test]
fn answers_do_not_depend_on_which_command_ran_before() {
    let env = Env::new();
    let listener = Listener::tcp("127.0.0.1");
    let port = listener.port.to_string();
    env.ok(&["reserve", &port, "-n", "web"]);
    // `check` first, then `list`: both see it in use.
    assert_eq!(env.json(&["check", &port], 3)["status"], "in-use");
    assert_eq!(env.json(&["list"], 0)[0]["status"], "in-use");
    listener.stop();
    // `list` first this time: both see it reserved.
    assert_eq!(env.json(&["list"], 0)[0]["status"], "reserved");
    assert_eq!(env.json(&["check", &port], 2)["status"], "reserved");
}

#[test]
fn check_exit_codes_tell_free_reserved_and_in_use_apart() {
    let env = Env::new();
    let free = common::unused_port().to_string();
    let (code, out, _) = env.run(&["check", &free]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("free"), "{out}");

    env.ok(&["reserve", &free, "-n", "api"]);
    assert_eq!(env.run(&["check", &free]).0, 2);

    // A listener nobody reserved: in use, exit 3, with its process.
    let listener = Listener::tcp("127.0.0.1");
    let check = env.json(&["check", &listener.port.to_string()], 3);
    assert_eq!(check["status"], "in-use");
    assert_eq!(check["reservation"], serde_json::Value::Null);
    assert_eq!(check["processName"], "python3");
}

#[test]
fn auto_release_frees_the_port_once_the_process_seen_on_it_has_exited() {
    let env = Env::new();
    let listener = Listener::tcp("127.0.0.1");
    let port = listener.port.to_string();
    env.ok(&["reserve", &port, "-n", "job", "--auto-release"]);
    let plain = common::unused_port().to_string();
    env.ok(&["reserve", &plain, "-n", "job"]);
    assert_eq!(env.json(&["check", &port], 3)["pid"], listener.pid());

    listener.stop();
    let list = env.json(&["list"], 0);
    let ports: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [plain.parse::<u64>().unwrap()], "{list}");
    let (status, details): (String, String) = env
        .sql()
        .query_row(
            "SELECT p.status, h.details FROM ports p JOIN port_history h ON h.port = p.number
             WHERE p.number = ?1 ORDER BY h.id DESC LIMIT 1",
            [&port],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(status, "free");
    assert!(details.contains("auto-release"), "{details}");
}

#[test]
fn an_auto_release_reservation_never_used_stays_reserved() {
    let env = Env::new();
    let port = common::unused_port().to_string();
    env.ok(&["reserve", &port, "-n", "job", "--auto-release"]);
    assert_eq!(env.json(&["check", &port], 2)["status"], "reserved");
}

#[test]
fn run_passes_the_port_to_the_child_and_releases_it_when_the_child_exits() {
    let env = Env::new();
    let (code, out, err) = env.run(&[
        "run",
        "-n",
        "app",
        "--start",
        "47100",
        "--end",
        "47199",
        "--",
        "python3",
        "-c",
        "import os,sys; print(os.environ['PORT'], sys.argv[1]); sys.exit(3)",
        "{PORT}",
    ]);
    assert_eq!(code, 3, "the child's exit status comes back: {out}{err}");
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words.len(), 2, "{out}");
    assert_eq!(words[0], words[1], "{{PORT}} is substituted: {out}");
    let port: u16 = words[0].parse().unwrap();
    assert!((47100..=47199).contains(&port));
    assert_eq!(env.json(&["list"], 0), serde_json::json!([]));
    assert_eq!(history_actions(&env, port), ["reserved", "released"]);
}

#[test]
fn run_releases_the_port_when_portman_is_terminated() {
    let env = Env::new();
    let mut child = env
        .cmd()
        .args([
            "run", "-n", "svc", "--start", "47200", "--end", "47299", "--", "python3", "-c",
            "import os,socket,time\ns=socket.socket(); s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen()\nprint('up', flush=True)\ntime.sleep(60)",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "up");
    let list = env.json(&["list"], 0);
    assert_eq!(list[0]["status"], "in-use", "{list}");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    // The child died of the forwarded TERM: 128 + 15.
    assert_eq!(status.code(), Some(143));
    assert_eq!(env.json(&["list"], 0), serde_json::json!([]));
}

#[test]
fn a_port_held_by_a_socket_the_tables_do_not_show_is_in_use_never_free() {
    use portkeeper::live::{self, ProbeUnseen};
    use portkeeper::ports::{self, Filter, Status};
    use portkeeper::sockets::Snapshot;

    let env = Env::new();
    // A socket bound without listen(): no kernel table lists it as a listener, yet the port is taken.
    let hidden = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hidden.local_addr().unwrap().port().to_string();
    env.ok(&["reserve", &port, "-n", "web"]);
    let store = store::Store::open(
        &portkeeper::schema::TOOL,
        &store::OpenConfig {
            allow_unsupported_fs: true,
            ..store::OpenConfig::for_path(&portkeeper::schema::TOOL, env.db())
        },
    )
    .unwrap();
    let rows = store.read(|c| ports::list(c, &Filter::default())).unwrap();
    // Even with a snapshot that sees nothing at all, the bind probe catches it.
    let observed =
        live::observe(&store, &Snapshot::default(), rows, ProbeUnseen::Yes, "test").unwrap();
    assert_eq!(observed[0].reservation.status, Status::InUse);
    assert!(observed[0].hidden_holder);
    // And `check` of an unreserved port held that way is not "free".
    let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = other.local_addr().unwrap().port().to_string();
    let (code, out, _) = env.run(&["check", &udp_port]);
    assert_eq!(code, 3, "{out}");
    drop(hidden);
}
