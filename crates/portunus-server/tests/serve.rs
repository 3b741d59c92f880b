//! `portunus-server serve` as an operator meets it: startup refusals with their events and exit
//! codes, TLS material on first run, the admin commands' refusals against a *running* server,
//! and the admin CLI doing a day's work over the API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use common::{PASSWORD, Server, server_cmd};
use serde_json::Value;
use sha2::Digest;

/// `serve` on ephemeral loopback ports without metrics: for runs expected to be refused.
const SERVE_OFF: &[&str] = &[
    "serve",
    "--api-listen",
    "127.0.0.1:0",
    "--control-listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "off",
];

fn run(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = server_cmd(data).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_second_server_on_the_same_data_dir_exits_75_and_the_first_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Server::start(&data);
    let (code, _, err) = run(&data, SERVE_OFF);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("event=startup.store_in_use"), "{err}");
    let (status, _) = first.http().call("GET", "/v1/health", None, None);
    assert_eq!(status, 200);
    assert_eq!(first.stop(), 0);
}

#[test]
fn restore_reset_and_backup_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let admin = server.bootstrap();
    let backup = dir.path().join("backup.db");
    let (code, _, err) = run(&data, &["backup", "--out", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "online backup works while serving: {err}");
    assert_eq!(
        count(
            &backup,
            "SELECT count(*) FROM users WHERE username = 'admin'"
        ),
        1
    );
    let (code, _, _) = run(&data, &["backup", "--out", backup.to_str().unwrap()]);
    assert_eq!(code, 73, "backup never overwrites");

    let db = data.join("state.db");
    let before = std::fs::read(&db).unwrap();
    for args in [
        vec!["restore", "--in", backup.to_str().unwrap(), "--force"],
        vec!["reset", "--confirm"],
    ] {
        let (code, _, err) = run(&data, &args);
        assert_eq!(code, 75, "{args:?}: {err}");
        assert!(err.contains("store_in_use"), "{err}");
        assert!(db.exists() && data.join("server.key").exists());
    }
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "refusals leave the live file alone"
    );
    let (status, body) = server.http().call("GET", "/v1/me", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.stop(), 0);

    // Stopped: reset works, restore brings the superadmin back, and the token still works.
    let (code, _, err) = run(&data, &["reset", "--confirm"]);
    assert_eq!(code, 0, "{err}");
    for gone in ["state.db", "state.db-wal", "state.db-shm", "state.db.lock"] {
        assert!(!data.join(gone).exists(), "reset removes {gone}");
    }
    for kept in ["server.crt", "server.key"] {
        assert!(data.join(kept).exists(), "reset keeps {kept}");
    }
    let (code, _, err) = run(&data, &["restore", "--in", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let server = Server::start(&data);
    assert!(
        server.setup_token.is_none(),
        "a restored server is already set up"
    );
    let (status, _) = server.http().call("GET", "/v1/me", Some(&admin), None);
    assert_eq!(status, 200);
}

#[test]
fn a_newer_schema_makes_serve_exit_78_and_leaves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, _, err) = run(&data, &["init"]);
    assert_eq!(code, 0, "{err}");
    let db = data.join("state.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (999, 'future', '2030-01-01T00:00:00Z', '0')",
            [],
        )
        .unwrap();
    let before = std::fs::read(&db).unwrap();
    let (code, _, err) = run(&data, SERVE_OFF);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("event=startup.schema_version_too_new"),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn a_tmpfs_data_dir_is_refused_and_nothing_is_created() {
    let shm = Path::new("/dev/shm");
    let is_tmpfs = Command::new("stat")
        .args(["-f", "-c", "%T", "/dev/shm"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "tmpfs")
        .unwrap_or(false);
    if !is_tmpfs {
        eprintln!("skipped: /dev/shm is not tmpfs here");
        return;
    }
    let data = shm.join(format!("portunus-test-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_portunus-server"))
        .env_remove("PORTUNUS_SERVER_ALLOW_UNSUPPORTED_FS")
        .arg("--data-dir")
        .arg(&data)
        .args(SERVE_OFF)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("event=startup.unsupported_filesystem"),
        "{err}"
    );
    assert!(!data.exists(), "the refusal created nothing");
}

fn pem_fingerprint(pem: &str) -> String {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let digest = sha2::Sha256::digest(&der);
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

#[test]
fn first_run_creates_tls_material_whose_fingerprint_is_printed_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let mode = |name: &str| {
        std::fs::metadata(data.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("server.key"), 0o600);
    let printed = |log: &[String]| {
        log.iter()
            .find(|l| l.starts_with("event=startup.tls"))
            .and_then(|l| common::field(l, "fingerprint"))
            .unwrap()
    };
    let first = printed(&server.log.lock().unwrap());
    let cert = std::fs::read_to_string(data.join("server.crt")).unwrap();
    assert_eq!(first, pem_fingerprint(&cert));
    assert_eq!(server.stop(), 0);
    let server = Server::start(&data);
    assert_eq!(
        printed(&server.log.lock().unwrap()),
        first,
        "restarts keep the certificate"
    );
    // The enrollment URI pins the same certificate.
    let admin = server.bootstrap();
    let (status, body) = server.http().call(
        "POST",
        "/v1/clients",
        Some(&admin),
        Some(serde_json::json!({"name": "edge"})),
    );
    assert_eq!(status, 201, "{body}");
    let uri = body["enrollment"]["uri"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!(
            "portunus://{}/enroll?pin={first}&code=pen_",
            server.control
        )),
        "{uri}"
    );
}

/// Runs an admin command with the saved credentials in `config`.
fn admin(config: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portunus-server"))
        .env("XDG_CONFIG_HOME", config)
        .env_remove("PORTUNUS_TOKEN")
        .env_remove("PORTUNUS_SERVER")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_admin_cli_onboards_grants_pushes_and_pages_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("config");
    let server = Server::start(&data);
    let token = server.setup_token.clone().unwrap();
    let (code, out, err) = admin(
        &config,
        &[
            "setup",
            "--server",
            &server.api,
            "--setup-token",
            &token,
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(code, 0, "{out}{err}");
    let saved = config.join("portunus/admin.json");
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let json = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        let (code, out, err) = admin(&config, &all, None);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        serde_json::from_str(&out).unwrap()
    };
    let alice = json(&["user-add", "alice"]);
    assert_eq!(alice["role"], "user");
    let enrolled = json(&["enroll-client", "--name", "edge-1"]);
    let client = enrolled["client"]["id"].as_str().unwrap().to_string();
    assert!(
        enrolled["enrollment"]["uri"]
            .as_str()
            .unwrap()
            .starts_with("portunus://")
    );
    let grant = json(&[
        "grant-add",
        "alice",
        &client,
        "8000-8100",
        "--protocols",
        "tcp",
    ]);
    let rule = json(&[
        "push-rule",
        &client,
        "8080",
        "--target",
        "127.0.0.1:80",
        "--owner",
        "alice",
    ]);
    assert_eq!(rule["owner_id"], alice["id"]);
    let rules = json(&["list-rules", "--client", &client]);
    assert_eq!(rules.as_array().unwrap().len(), 1);

    // Refusals carry the API's code and a documented exit status.
    let (code, _, err) = admin(
        &config,
        &["push-rule", &client, "8080", "--target", "127.0.0.1:81"],
        None,
    );
    assert_eq!(code, 73, "overlap is a conflict: {err}");
    assert!(err.contains("overlap"), "{err}");
    let (code, out, _) = admin(
        &config,
        &[
            "push-rule",
            &client,
            "9000",
            "--target",
            "127.0.0.1:80",
            "--owner",
            "alice",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(code, 77);
    let body: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["error"]["code"], "grant_required");
    let (code, _, err) = admin(
        &config,
        &["push-rule", &client, "8081", "--target", "nonsense"],
        None,
    );
    assert_eq!(code, 64, "{err}");

    let revoked = json(&["grant-revoke", grant["id"].as_str().unwrap()]);
    assert_eq!(revoked["removed_rules"][0], rule["id"]);
    assert!(json(&["list-rules"]).as_array().unwrap().is_empty());
    let clients = json(&["list-clients"]);
    assert_eq!(
        clients[0]["generation"], 2,
        "push and revoke each bumped the generation"
    );
    json(&["revoke", &client]);
    assert_eq!(json(&["list-clients"])[0]["state"], "revoked");

    let audit = json(&["audit-log", "--limit", "2", "--all"]);
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "setup",
        "user.create",
        "client.create",
        "grant.create",
        "rule.create",
        "grant.revoke",
        "client.revoke",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "denied")
    );

    // Without credentials the CLI says what to do.
    let (code, _, err) = admin(&dir.path().join("empty"), &["list-rules"], None);
    assert_eq!(code, 64);
    assert!(err.contains("setup"), "{err}");
    assert_eq!(server.stop(), 0);
}
