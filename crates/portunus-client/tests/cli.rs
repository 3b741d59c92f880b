//! `portunus-client` as a user meets it: bundle lookup and its errors, enrollment refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use serde_json::json;

/// A valid bundle for a server that is not there (the client keeps retrying until stopped).
fn write_bundle(path: &Path, client_id: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let body = json!({
        "version": 1,
        "server": "127.0.0.1:1",
        "pin": format!("sha256:{}", "0".repeat(64)),
        "client_id": client_id,
        "token": "pcl_test",
    });
    std::fs::write(path, body.to_string()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Which bundle a run picked: it logs `event=bundle path=…`, then is stopped.
fn picked(home: &Path, configure: impl FnOnce(&mut std::process::Command)) -> String {
    let mut cmd = client_cmd(home);
    configure(&mut cmd);
    let mut client = Client::spawn(cmd);
    let line = client.log.wait_for("event=bundle");
    client.log.wait_for("event=connect_failed");
    assert!(client.stop().success(), "{}", client.log.text());
    field(&line, "path").unwrap()
}

#[test]
fn no_bundle_anywhere_exits_1_listing_every_path_tried() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let tried = |out: &std::process::Output| -> Vec<String> {
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter_map(|l| l.trim().split("  (").next())
            .filter(|l| l.ends_with(".json"))
            .map(str::to_string)
            .collect()
    };
    // An explicit --bundle that does not exist is the only path looked at.
    let out = client_cmd(home)
        .env("PORTUNUS_CLIENT_BUNDLE", home.join("env.json"))
        .args(["--bundle", "flag.json"])
        .output()
        .unwrap();
    assert_eq!(tried(&out), ["flag.json"]);
    let out = client_cmd(home)
        .env("PORTUNUS_CLIENT_BUNDLE", home.join("env.json"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        tried(&out),
        [
            home.join("env.json").display().to_string(),
            home.join("config/portunus/client.bundle.json")
                .display()
                .to_string(),
            home.join(".config/portunus/client.bundle.json")
                .display()
                .to_string(),
            "./client.bundle.json".to_string(),
        ],
        "{err}"
    );
    assert!(err.contains("portunus-client enroll"), "{err}");
}

#[test]
fn the_bundle_is_looked_up_in_the_documented_order() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let flag = home.join("flag.json");
    let env = home.join("env.json");
    let xdg = home.join("config/portunus/client.bundle.json");
    let dot = home.join(".config/portunus/client.bundle.json");
    let cwd = home.join("client.bundle.json");
    for (i, p) in [&flag, &env, &xdg, &dot, &cwd].into_iter().enumerate() {
        write_bundle(p, &format!("cli_{i}"));
    }
    let with_env = |cmd: &mut std::process::Command| {
        cmd.env("PORTUNUS_CLIENT_BUNDLE", &env);
    };
    assert_eq!(
        picked(home, |cmd| {
            with_env(cmd);
            cmd.arg("--bundle").arg(&flag);
        }),
        flag.display().to_string()
    );
    // `run --bundle` is the same as the top-level flag.
    assert_eq!(
        picked(home, |cmd| {
            cmd.arg("run").arg("--bundle").arg(&flag);
        }),
        flag.display().to_string()
    );
    assert_eq!(picked(home, with_env), env.display().to_string());
    assert_eq!(picked(home, |_| {}), xdg.display().to_string());
    std::fs::remove_file(&xdg).unwrap();
    assert_eq!(picked(home, |_| {}), dot.display().to_string());
    std::fs::remove_file(&dot).unwrap();
    assert_eq!(picked(home, |_| {}), "./client.bundle.json");
}

#[test]
fn an_exposed_or_malformed_bundle_is_refused_with_78() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let path = home.join("b.json");
    write_bundle(&path, "cli_x");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = client_cmd(home)
        .arg("--bundle")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("accessible by other users (mode 0644)"),
        "{err}"
    );
    assert!(err.contains("chmod 600"), "{err}");

    std::fs::write(&path, "{\"version\": 1}").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = client_cmd(home)
        .arg("--bundle")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a valid client bundle"), "{err}");
}

#[test]
fn enroll_rejects_bad_uris_used_codes_and_existing_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    let out = client_cmd(&home)
        .args(["enroll", "portunus://relay:7871/enroll?code=pen_x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pin=sha256"));

    let server = Server::start(&dir.path().join("data"));
    let op = server.bootstrap();
    let (client_id, uri) = op.client("edge");

    // A wrong pin is caught before the code is spent.
    let pin = uri.split("pin=").nth(1).unwrap().split('&').next().unwrap();
    let wrong = uri.replace(pin, &format!("sha256:{}", "1".repeat(64)));
    let out = client_cmd(&home).args(["enroll", &wrong]).output().unwrap();
    assert_eq!(out.status.code(), Some(77));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match the pinned fingerprint"));

    let out = client_cmd(&home)
        .args(["enroll", &uri, "--json", "--name", "edge-a"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bundle_path = home.join("config/portunus/client.bundle.json");
    assert_eq!(printed["client_id"], client_id.as_str());
    assert_eq!(printed["bundle"], bundle_path.display().to_string());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("pcl_"));
    let mode = std::fs::metadata(&bundle_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(bundle_path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle_path).unwrap()).unwrap();
    assert_eq!(bundle["version"], 1);
    assert_eq!(bundle["server"], server.control.as_str());
    assert_eq!(bundle["pin"], pin);
    assert_eq!(bundle["client_id"], client_id.as_str());
    assert!(bundle["token"].as_str().unwrap().starts_with("pcl_"));
    assert_eq!(op.client_info(&client_id)["name"], "edge");

    // The same bundle path again: refused before the (used) code is even tried.
    let out = client_cmd(&home).args(["enroll", &uri]).output().unwrap();
    assert_eq!(out.status.code(), Some(73));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));

    // The used code, with room to write: the server refuses it.
    let out = client_cmd(&home)
        .args(["enroll", &uri, "--out"])
        .arg(dir.path().join("second.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(77));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid_enrollment_code"), "{err}");
    assert!(!dir.path().join("second.json").exists());

    // A fresh code with --force replaces the bundle (and the old token stops working).
    let fresh = op.ok(
        "POST",
        &format!("/v1/clients/{client_id}/enrollments"),
        None,
    );
    let out = client_cmd(&home)
        .args(["enroll", fresh["uri"].as_str().unwrap(), "--force"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replaced: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle_path).unwrap()).unwrap();
    assert_ne!(replaced["token"], bundle["token"]);
}

#[test]
fn help_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = client_cmd(dir.path()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["enroll", "run", "--bundle", "Exit status"] {
        assert!(help.contains(word), "{help}");
    }
    let out = client_cmd(dir.path()).arg("--nope").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}
