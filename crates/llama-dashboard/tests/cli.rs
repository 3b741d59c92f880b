//! The command line as a new user meets it: scan a folder of real GGUF files, look at the
//! catalog, change settings, read the log, back up the database; every failure with its
//! documented status and a message that says what to do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

fn run(home: &Path, args: &[&str]) -> Output {
    common::bin()
        .current_dir(home)
        .args(args)
        .env("HOME", home)
        .env_remove("LLAMA_DASHBOARD_DB")
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn a_new_user_scans_lists_and_curates_models() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let manifest = common::corpus(&home.join("models"));

    // The documented default location, relative to the working directory.
    let scanned = run(home, &["scan", "--json"]);
    assert!(
        scanned.status.success(),
        "{}",
        String::from_utf8_lossy(&scanned.stderr)
    );
    assert!(home.join("data/llama-dashboard.db").exists());
    let report = json(&scanned);
    let models = report["models"].as_u64().unwrap();
    assert!(models >= 4, "{report}");

    let list = json(&run(home, &["models", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len() as u64, models);
    let text = run(home, &["models", "list"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.starts_with("ID"), "{text}");
    let q8 = manifest
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["file_type"] == 7 && m.get("kind").is_none())
        .unwrap_or_else(|| panic!("the corpus has a Q8_0 file: {manifest}"));
    let name = Path::new(q8["file"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(text.contains(&name) && text.contains("Q8_0"), "{text}");

    // Show by name, favorite by name, remove by id.
    let shown = json(&run(home, &["models", "show", &name, "--json"]));
    assert_eq!(
        shown["quantization"], "Q8_0",
        "the original showed Q8_0 as Q5_1"
    );
    let fav = json(&run(home, &["models", "favorite", &name, "--json"]));
    assert_eq!(fav["favorite"], 1);
    let favorites = json(&run(home, &["models", "list", "--favorites", "--json"]));
    assert_eq!(favorites.as_array().unwrap().len(), 1);
    let id = shown["id"].as_str().unwrap();
    assert!(run(home, &["models", "remove", id]).status.success());
    let missing = run(home, &["models", "show", id]);
    assert_eq!(missing.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("models list"));

    // A rescan brings it back; a removed file is cleaned up.
    let again = json(&run(home, &["scan", "--json"]));
    assert_eq!(again["added"], 1, "{again}");
    std::fs::remove_file(home.join("models").join(q8["file"].as_str().unwrap())).unwrap();
    let cleaned = json(&run(home, &["models", "cleanup", "--json"]));
    assert_eq!(cleaned["removed"], 1);
}

#[test]
fn settings_are_checked_before_they_are_saved() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let all = json(&run(home, &["config", "get", "--json"]));
    assert_eq!(all["port"], 8080);
    assert_eq!(
        all["baseModelsPath"],
        home.join("models").display().to_string()
    );

    let set = run(home, &["config", "set", "ctx_size", "8192"]);
    assert!(set.status.success());
    assert_eq!(String::from_utf8_lossy(&set.stdout), "ctx_size = 8192\n");
    assert_eq!(
        json(&run(home, &["config", "get", "ctx_size", "--json"])),
        8192
    );

    let bad = run(home, &["config", "set", "port", "99999"]);
    assert_eq!(bad.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("from 1 to 65535"));
    let unknown = run(home, &["config", "set", "colour", "red", "--json"]);
    assert_eq!(unknown.status.code(), Some(65));
    assert_eq!(json(&unknown)["error"]["code"], "invalid_setting");
    assert_eq!(json(&run(home, &["config", "get", "port", "--json"])), 8080);

    // Scanning a folder that is not there says how to fix it.
    let scan = run(home, &["scan"]);
    assert_eq!(scan.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&scan.stderr).contains("config set baseModelsPath"));
}

#[test]
fn logs_metrics_backup_and_completions() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    assert!(run(home, &["logs"]).status.success());
    let empty = run(home, &["logs", "--json"]);
    assert_eq!(json(&empty), Value::Array(vec![]));
    let bad = run(home, &["logs", "--level", "loud"]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(run(home, &["metrics"]).status.success());

    std::fs::create_dir(home.join("backup")).unwrap();
    let backup = run(home, &["db", "backup", "--out", "backup", "--json"]);
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stdout)
    );
    assert_eq!(std::fs::read_dir(home.join("backup")).unwrap().count(), 1);

    let completions = run(home, &["completions", "bash"]);
    assert!(String::from_utf8_lossy(&completions.stdout).contains("llama-dashboard"));
}
