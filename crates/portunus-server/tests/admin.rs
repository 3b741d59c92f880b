//! The data directory and the admin commands, through the real binary: where state.db lives, the
//! seed's tables, and the backup / restore / reset / audit prune promises — including their
//! refusals while a server holds the data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

struct Env {
    dir: TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn db(&self) -> PathBuf {
        self.data().join("state.db")
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portunus-server"));
        cmd.env("HOME", self.dir.path())
            .env("PORTUNUS_SERVER_ALLOW_UNSUPPORTED_FS", "1")
            .env_remove("PORTUNUS_DATA_DIR")
            .env_remove("XDG_STATE_HOME");
        cmd
    }

    /// Runs with `--data-dir <tmp>/data`; returns (code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self
            .cmd()
            .arg("--data-dir")
            .arg(self.data())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        out
    }

    fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db()).unwrap()
    }

    /// A created, migrated database with some users and audit rows.
    fn populated(&self) {
        self.ok(&["init"]);
        let conn = self.sql();
        conn.execute_batch(
            "INSERT INTO users (id, username, role, created_at) VALUES ('u1', 'admin', 'superadmin', 1);
             INSERT INTO users (id, username, role, created_at) VALUES ('u2', 'alice', 'user', 2);",
        )
        .unwrap();
    }
}

fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_new_data_dir_holds_every_seed_table_strict_and_private() {
    let env = Env::new();
    env.ok(&["init"]);
    let conn = env.sql();
    for table in portunus_server::store::SEED_TABLES {
        let strict: i64 = conn
            .query_row(
                "SELECT strict FROM pragma_table_list WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert_eq!(strict, 1, "{table} is STRICT");
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.db()), 0o600);
    assert_eq!(mode(&env.data()), 0o700);
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

#[test]
fn the_data_dir_defaults_to_the_xdg_state_directory() {
    let env = Env::new();
    let state = env.dir.path().join("xdg-state");
    let out = env
        .cmd()
        .env("XDG_STATE_HOME", &state)
        .args(["init"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(state.join("portunus/state.db").exists());
    let out = env.cmd().args(["init"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        env.dir
            .path()
            .join(".local/state/portunus/state.db")
            .exists()
    );
}

#[test]
fn backup_restore_round_trip_and_refusals() {
    let env = Env::new();
    env.populated();
    let backup = env.dir.path().join("backup.db");
    env.ok(&["backup", "--out", backup.to_str().unwrap()]);
    let (code, _, err) = env.run(&["backup", "--out", backup.to_str().unwrap()]);
    assert_eq!(code, 73, "never overwrites: {err}");

    env.sql()
        .execute("DELETE FROM users WHERE id = 'u2'", [])
        .unwrap();
    let (code, _, err) = env.run(&["restore", "--in", backup.to_str().unwrap()]);
    assert_eq!(code, 73, "a non-empty data dir needs --force: {err}");
    env.ok(&["restore", "--in", backup.to_str().unwrap(), "--force"]);
    assert_eq!(count(&env.sql(), "SELECT count(*) FROM users"), 2);

    // Not SQLite at all: 65, and the live database is untouched.
    let junk = env.dir.path().join("junk.db");
    std::fs::write(&junk, "not a database").unwrap();
    let before = std::fs::read(env.db()).unwrap();
    let (code, _, _) = env.run(&["restore", "--in", junk.to_str().unwrap(), "--force"]);
    assert_eq!(code, 65);
    assert_eq!(std::fs::read(env.db()).unwrap(), before);
}

#[test]
fn a_backup_from_a_newer_binary_is_refused_with_78_and_the_live_database_kept() {
    let env = Env::new();
    env.populated();
    let newer = env.dir.path().join("newer.db");
    env.ok(&["backup", "--out", newer.to_str().unwrap()]);
    {
        let conn = rusqlite::Connection::open(&newer).unwrap();
        conn.execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (999, 'future', '2030-01-01T00:00:00Z', '0')",
            [],
        )
        .unwrap();
    }
    let before = std::fs::read(env.db()).unwrap();
    let (code, _, err) = env.run(&["restore", "--in", newer.to_str().unwrap(), "--force"]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("schema_version_too_new"), "{err}");
    assert_eq!(std::fs::read(env.db()).unwrap(), before);
}

#[test]
fn restore_and_reset_are_refused_while_a_server_holds_the_data_dir() {
    let env = Env::new();
    env.populated();
    let backup = env.dir.path().join("b.db");
    env.ok(&["backup", "--out", backup.to_str().unwrap()]);
    // What `serve` holds for its lifetime.
    let lock = store::InstanceLock::acquire(&env.db()).unwrap();
    let before = std::fs::read(env.db()).unwrap();
    let (code, _, err) = env.run(&["restore", "--in", backup.to_str().unwrap(), "--force"]);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("store_in_use"), "{err}");
    let (code, _, err) = env.run(&["reset", "--confirm"]);
    assert_eq!(code, 75, "{err}");
    assert_eq!(std::fs::read(env.db()).unwrap(), before);
    drop(lock);
    env.ok(&["reset", "--confirm"]);
    assert!(!env.db().exists());
}

#[test]
fn reset_is_a_dry_run_without_confirm_and_leaves_certificates_and_config() {
    let env = Env::new();
    env.populated();
    for keep in ["server.crt", "server.key", "server.toml"] {
        std::fs::write(env.data().join(keep), keep).unwrap();
    }
    let out = env.ok(&["reset"]);
    assert!(out.contains("state.db"), "{out}");
    assert!(env.db().exists(), "a dry run removes nothing");
    env.ok(&["reset", "--confirm"]);
    assert!(!env.db().exists());
    assert!(!env.data().join("state.db-wal").exists());
    for keep in ["server.crt", "server.key", "server.toml"] {
        assert_eq!(
            std::fs::read_to_string(env.data().join(keep)).unwrap(),
            keep
        );
    }
    // A data dir whose state.db is not SQLite (a typo'd --data-dir) is refused.
    std::fs::write(env.db(), "my notes").unwrap();
    let (code, _, _) = env.run(&["reset", "--confirm"]);
    assert_eq!(code, 65);
    assert_eq!(std::fs::read_to_string(env.db()).unwrap(), "my notes");
}

#[test]
fn audit_prune_deletes_only_older_rows_and_shrinks_the_file() {
    let env = Env::new();
    env.populated();
    {
        let mut conn = env.sql();
        let tx = conn.transaction().unwrap();
        let padding = "x".repeat(400);
        for i in 0..20_000i64 {
            // Old rows (before 2026-05-01), some recorded out of order.
            let at = 1_700_000_000_000 + (i * 7919) % 20_000 * 1000;
            tx.execute(
                "INSERT INTO audit (at, actor, action, resource, outcome, details) VALUES (?1, 'u1', 'rule.push', 'r', 'ok', ?2)",
                rusqlite::params![at, padding],
            )
            .unwrap();
        }
        for i in 0..100i64 {
            tx.execute(
                "INSERT INTO audit (at, actor, action, resource, outcome) VALUES (?1, 'u1', 'rule.push', 'r', 'ok')",
                [1_800_000_000_000 + i],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let size = || std::fs::metadata(env.db()).unwrap().len();
    let before = size();
    let (code, out, _) = env.run(&[
        "audit",
        "prune",
        "--before",
        "2026-05-01T00:00:00Z",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(code, 0);
    let dry: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(dry["rows"], 20_000);
    assert_eq!(
        count(&env.sql(), "SELECT count(*) FROM audit"),
        20_100,
        "a dry run deletes nothing"
    );

    let out = env.ok(&[
        "audit",
        "prune",
        "--before",
        "2026-05-01T00:00:00Z",
        "--json",
    ]);
    let done: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(done["rows"], 20_000);
    assert_eq!(count(&env.sql(), "SELECT count(*) FROM audit"), 100);
    assert!(
        size() < before / 2,
        "the file shrank: {before} -> {}",
        size()
    );

    let (code, _, err) = env.run(&["audit", "prune", "--before", "last week"]);
    assert_eq!(code, 64, "{err}");
}
