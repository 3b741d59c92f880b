//! The command line as a user meets it: exit codes, JSON errors, bad input, requests, history,
//! maintenance, and the generated descriptions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use clap::CommandFactory;
use common::{Env, ports_rows};
use serde_json::json;

#[test]
fn bad_ports_are_usage_errors_and_change_nothing() {
    let env = Env::new();
    env.ok(&["reserve", "23200", "-n", "web"]);
    let before = ports_rows(&env.sql());
    for args in [
        vec!["reserve", "0", "-n", "x"],
        vec!["reserve", "70000", "-n", "x"],
        vec!["check", "http"],
        vec!["release", "-5"],
        vec!["list", "--status", "busy"],
        vec!["request", "-n", "x", "--start", "5000", "--end", "4000"],
        vec!["reserve", "23201", "-n", "x", "--metadata", "novalue"],
        vec!["kill", "23201", "--signal", "STOP"],
    ] {
        let (code, out, err) = env.run(&args);
        assert_eq!(code, 64, "{args:?}: {out}{err}");
        assert!(!err.is_empty() || !out.is_empty(), "{args:?} says why");
        assert_eq!(
            ports_rows(&env.sql()),
            before,
            "{args:?} changed the database"
        );
    }
    let (_, _, err) = env.run(&["reserve", "70000", "-n", "x"]);
    assert!(err.contains("1-65535"), "{err}");
    let (_, _, err) = env.run(&["list", "--status", "busy"]);
    assert!(err.contains("unknown status"), "{err}");
}

#[test]
fn json_errors_are_json_on_stdout_with_the_exit_code() {
    let env = Env::new();
    env.ok(&["reserve", "23210", "-n", "web"]);
    let err = env.json(&["reserve", "23210", "-n", "api"], 73);
    assert_eq!(err["error"]["code"], "port_reserved");
    assert!(err["error"]["message"].as_str().unwrap().contains("'web'"));
    let err = env.json(&["release", "--project", "nobody"], 66);
    assert_eq!(err["error"]["code"], "not_found");
}

#[test]
fn reserving_your_own_port_again_updates_it_and_keeps_its_history() {
    let env = Env::new();
    env.ok(&["reserve", "23220", "-n", "web", "-t", "a"]);
    let out = env.json(
        &[
            "reserve",
            "23220",
            "-n",
            "web",
            "-d",
            "now described",
            "-t",
            "b",
        ],
        0,
    );
    let r = &out["reservations"][0];
    assert_eq!(r["result"], "updated");
    assert_eq!(r["description"], "now described");
    assert_eq!(r["tags"], json!(["a", "b"]));
}

#[test]
fn release_by_port_project_tag_and_all() {
    let env = Env::new();
    env.ok(&["reserve", "23230", "23231", "-n", "web", "-t", "front"]);
    env.ok(&["reserve", "23232", "-n", "api", "-t", "back"]);
    env.ok(&["reserve", "23233", "-n", "db"]);
    let out = env.json(&["release", "23230", "23299"], 0);
    assert_eq!(
        out["results"],
        json!([
            {"port": 23230, "status": "released", "projectName": "web"},
            {"port": 23299, "status": "not-reserved", "projectName": null}
        ])
    );
    env.ok(&["release", "--tag", "back"]);
    env.ok(&["release", "--project", "web"]);
    let left: Vec<u64> = env
        .json(&["list"], 0)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_u64().unwrap())
        .collect();
    assert_eq!(left, [23233]);
    env.ok(&["release", "--all"]);
    assert_eq!(env.json(&["list"], 0), json!([]));
    assert_eq!(env.run(&["release"]).0, 64, "release needs a selector");
    // Released rows stay for history and can be listed.
    assert_eq!(env.json(&["list", "--all"], 0).as_array().unwrap().len(), 4);
}

#[test]
fn request_honours_range_avoid_contiguous_and_stable_and_fails_fast() {
    let env = Env::new();
    let out = env.json(
        &[
            "request",
            "3",
            "-n",
            "svc",
            "--start",
            "24000",
            "--end",
            "24010",
            "--avoid",
            "24000,24002-24003",
            "--contiguous",
        ],
        0,
    );
    assert_eq!(out["ports"], json!([24004, 24005, 24006]));

    let a = env.json(
        &[
            "request",
            "-n",
            "stable-app",
            "--start",
            "24100",
            "--end",
            "24199",
            "--stable",
        ],
        0,
    );
    let b = env.json(
        &[
            "request",
            "-n",
            "stable-app",
            "--start",
            "24100",
            "--end",
            "24199",
            "--stable",
        ],
        0,
    );
    assert_eq!(a["ports"], b["ports"], "same project, same port");
    assert_eq!(b["reused"], a["ports"]);
    let other = Env::new();
    let c = other.json(
        &[
            "request",
            "-n",
            "stable-app",
            "--start",
            "24100",
            "--end",
            "24199",
            "--stable",
        ],
        0,
    );
    assert_eq!(a["ports"], c["ports"], "and the same on another machine");

    let err = env.json(
        &[
            "request", "5", "-n", "big", "--start", "24300", "--end", "24302",
        ],
        69,
    );
    assert_eq!(err["error"]["code"], "no_free_ports");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("24300-24302")
    );

    let random = env.json(
        &[
            "request", "2", "-n", "rnd", "--start", "24400", "--end", "24499", "--random",
        ],
        0,
    );
    assert_eq!(random["ports"].as_array().unwrap().len(), 2);
}

#[test]
fn request_skips_a_port_something_listens_on() {
    let env = Env::new();
    let l = common::Listener::tcp("127.0.0.1");
    let p = l.port.to_string();
    let out = env.json(
        &[
            "request",
            "-n",
            "x",
            "--start",
            &p,
            "--end",
            &(l.port + 5).to_string(),
        ],
        0,
    );
    assert_ne!(out["ports"][0], l.port);
}

#[test]
fn history_filters_and_names_who_did_it() {
    let env = Env::new();
    env.ok(&["reserve", "23240", "-n", "web"]);
    env.ok(&["release", "23240"]);
    env.ok(&["reserve", "23241", "-n", "api"]);
    let h = env.json(&["history", "23240"], 0);
    let actions: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["released", "reserved"]);
    assert_eq!(h[0]["performedBy"], "tester");
    assert!(
        h[0]["details"]
            .as_str()
            .unwrap()
            .contains("portman release")
    );
    assert_eq!(
        env.json(&["history", "--project", "api"], 0)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        env.json(&["history", "--since", "1h"], 0)
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        env.json(&["history", "--since", "2999-01-01"], 0),
        json!([])
    );
    assert_eq!(env.run(&["history", "--since", "someday"]).0, 64);
}

#[test]
fn stale_and_summary_answer_from_the_documented_queries_and_views() {
    let env = Env::new();
    env.ok(&["reserve", "23250", "-n", "old"]);
    env.ok(&["reserve", "23251", "-n", "new"]);
    env.sql()
        .execute(
            "UPDATE ports SET reservedAt = datetime('now', '-45 days') WHERE number = 23250",
            [],
        )
        .unwrap();
    let stale = env.json(&["stale"], 0);
    assert_eq!(stale.as_array().unwrap().len(), 1);
    assert_eq!(stale[0]["number"], 23250);
    assert_eq!(env.json(&["stale", "--days", "60"], 0), json!([]));
    let summary = env.json(&["summary"], 0);
    assert_eq!(summary["summary"]["reserved_count"], 2);
    assert_eq!(summary["projects"].as_array().unwrap().len(), 2);
    env.ok(&["release", "--stale"]);
    assert_eq!(env.json(&["summary"], 0)["summary"]["free_count"], 1);
}

#[test]
fn db_prune_cleans_old_history_as_the_seed_says() {
    let env = Env::new();
    env.ok(&["reserve", "23260", "-n", "web"]);
    env.sql()
        .execute_batch(
            "INSERT INTO port_history (port, action, performedAt) VALUES (23260, 'reserved', datetime('now', '-400 days'));
             INSERT INTO active_scans (port, pid, scannedAt) VALUES (23260, 1, datetime('now', '-8 days'));",
        )
        .unwrap();
    let dry = env.json(&["db", "prune", "--dry-run"], 0);
    assert_eq!(dry["history"]["rows"], 1);
    assert_eq!(dry["scans"]["rows"], 1);
    env.ok(&["db", "prune"]);
    let left: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM port_history", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 1);
    let (code, out, _) = env.run(&["db", "check", "--json"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn ai_describes_every_command_and_flag_clap_knows() {
    let env = Env::new();
    let doc = env.json(&["ai"], 0);
    let cli = portkeeper::cli::Cli::command();
    for sub in cli.get_subcommands().filter(|c| c.get_name() != "help") {
        let described = doc["commands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == sub.get_name())
            .unwrap_or_else(|| panic!("{} missing", sub.get_name()));
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help")
        {
            let found = described["arguments"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["name"] == arg.get_id().as_str());
            assert!(found, "{} --{} missing", sub.get_name(), arg.get_id());
        }
    }
    assert!(
        doc["exitCodes"]["73"]
            .as_str()
            .unwrap()
            .starts_with("conflict")
    );
    let reserve = doc["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "reserve")
        .unwrap();
    let project = reserve["arguments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "project")
        .unwrap();
    assert_eq!(project["short"], "-n");
    assert_eq!(project["required"], true);
}

#[test]
fn completions_are_generated_for_the_usual_shells() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.ok(&["completions", shell]);
        assert!(
            out.contains("reserve") && out.contains("portman"),
            "{shell}"
        );
    }
}

#[test]
fn help_teaches_the_exit_codes() {
    let env = Env::new();
    let out = env.ok(&["--help"]);
    assert!(out.contains("EXIT STATUS") && out.contains("73"), "{out}");
    let out = env.ok(&["check", "--help"]);
    assert!(out.contains("2  reserved"), "{out}");
}

#[test]
fn a_database_from_another_tool_is_refused_untouched() {
    let env = Env::new();
    let path = env.db();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY); INSERT INTO notes VALUES (1);",
        )
        .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let (code, _, err) = env.run(&["list"]);
    assert_eq!(code, 65, "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn the_manual_has_a_page_for_portman_and_each_command() {
    let env = Env::new();
    let page = env.ok(&["man"]);
    assert!(page.contains(".TH portman 1"), "{page}");
    assert!(page.contains("EXIT STATUS"));
    let dir = env.path("man1");
    env.ok(&["man", "--out", dir.to_str().unwrap()]);
    let kill = std::fs::read_to_string(dir.join("portman-kill.1")).unwrap();
    assert!(
        kill.contains("portman kill") && kill.contains("\\-\\-timeout"),
        "{kill}"
    );
    let count = std::fs::read_dir(&dir).unwrap().count();
    let commands = portkeeper::cli::Cli::command()
        .get_subcommands()
        .filter(|c| c.get_name() != "help")
        .count();
    assert_eq!(count, commands + 1);
}
