//! Shared helpers for cpm's integration tests: a private HOME per test, the real `cpm` binary, the
//! real `ssh-keygen` and `git`, and direct SQL on the database cpm made.

#![allow(dead_code)]

pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

/// A test's own HOME in a temp directory: `~/.cpm/cpm.db`, `~/.cpm/repos` and `~/.cpm/keys` all
/// live inside it.
#[derive(Debug)]
pub struct Env {
    pub dir: TempDir,
    home: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        // cpm canonicalizes the repository root; compare paths against the canonical HOME.
        let home = dir.path().canonicalize().unwrap();
        Env { dir, home }
    }

    /// The HOME of this test.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// A path inside HOME.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.home.join(rel)
    }

    /// The default database, `~/.cpm/cpm.db`.
    pub fn db(&self) -> PathBuf {
        self.path(".cpm/cpm.db")
    }

    /// The default repository root, `~/.cpm/repos`.
    pub fn root(&self) -> PathBuf {
        self.path(".cpm/repos")
    }

    /// Where `org/name` lives under the default root.
    pub fn repo_dir(&self, org: &str, name: &str) -> PathBuf {
        self.root().join(org).join(format!("{name}.git"))
    }

    /// `cpm` with HOME set to this test's directory and every cpm variable removed, so the
    /// defaults are exercised (tmpfs is allowed for tests).
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cpm"));
        cmd.env("HOME", &self.home)
            .env("USER", "tester")
            .env("CPM_ALLOW_UNSUPPORTED_FS", "1")
            .env_remove("CPM_DB")
            .env_remove("CPM_CONFIG")
            .env_remove("CPM_REPO_ROOT")
            .env_remove("RUST_BACKTRACE")
            .env("GIT_CONFIG_NOSYSTEM", "1");
        cmd
    }

    /// Runs cpm with `args`; returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out: Output = self.cmd().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs cpm, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "cpm {args:?} failed: {out}{err}");
        out
    }

    /// Runs cpm, asserts the exit code, returns stdout and stderr together.
    pub fn fails(&self, args: &[&str], want_code: i32) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, want_code, "cpm {args:?}: {out}{err}");
        format!("{out}{err}")
    }

    /// Runs cpm with `--format json` appended, asserts the exit code, and parses stdout.
    pub fn json(&self, args: &[&str], want_code: i32) -> Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        let (code, out, err) = self.run(&all);
        assert_eq!(code, want_code, "cpm {all:?}: {out}{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}{err}"))
    }

    /// Runs cpm with `--format yaml` appended, asserts the exit code, and parses stdout.
    pub fn yaml(&self, args: &[&str], want_code: i32) -> serde_yaml_ng::Value {
        let mut all = args.to_vec();
        all.extend(["--format", "yaml"]);
        let (code, out, err) = self.run(&all);
        assert_eq!(code, want_code, "cpm {all:?}: {out}{err}");
        serde_yaml_ng::from_str(&out).unwrap_or_else(|e| panic!("not YAML ({e}): {out}{err}"))
    }

    /// Opens `~/.cpm/cpm.db` directly, as the documented SQL would.
    pub fn sql(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        conn
    }

    /// One integer from a query.
    pub fn count(&self, query: &str) -> i64 {
        self.sql().query_row(query, [], |r| r.get(0)).unwrap()
    }

    /// Asserts `PRAGMA foreign_key_check` finds nothing.
    pub fn assert_foreign_keys_hold(&self) {
        let conn = self.sql();
        let mut stmt = conn.prepare("PRAGMA foreign_key_check").unwrap();
        let problems: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            problems.is_empty(),
            "foreign key violations in {problems:?}"
        );
    }

    /// Generates an ed25519 key pair `<home>/<name>` with the real ssh-keygen; returns the .pub.
    pub fn ssh_keygen(&self, name: &str) -> PathBuf {
        let private = self.path(name);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&private)
            .args(["-C", &format!("{name}@test")])
            .output()
            .expect("ssh-keygen must be installed (apt-get install openssh-client)");
        assert!(out.status.success(), "ssh-keygen failed: {out:?}");
        self.path(&format!("{name}.pub"))
    }

    /// Generates a key pair and returns its public key line.
    pub fn public_key(&self, name: &str) -> String {
        let path = self.ssh_keygen(name);
        std::fs::read_to_string(path).unwrap().trim().to_string()
    }

    /// Names of the entries of a directory, sorted (empty when it does not exist).
    pub fn entries(&self, dir: &Path) -> Vec<String> {
        let Ok(read) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = read
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Puts one commit (a README) on `main` of `org/repo` with a local push into its directory;
    /// returns the commit id.
    pub fn seed_commit(&self, org: &str, repo: &str) -> String {
        let dir = self.repo_dir(org, repo);
        let seed = self.path(&format!("seed-{org}-{repo}"));
        self.git(None, &["init", "-q", seed.to_str().unwrap()]);
        std::fs::write(seed.join("README"), "hello\n").unwrap();
        self.git(Some(&seed), &["add", "README"]);
        self.git(Some(&seed), &["commit", "-q", "-m", "first"]);
        self.git(
            Some(&seed),
            &["push", "-q", dir.to_str().unwrap(), "HEAD:refs/heads/main"],
        );
        self.git(Some(&seed), &["rev-parse", "HEAD"])
            .trim()
            .to_string()
    }

    /// Makes `master`'s replication key pair (`mirror`, generated if missing) a user `master` here.
    pub fn trust_mirror_key_of(&self, master: &Env) {
        if !master.path(".cpm/keys/mirror").exists() {
            master.ok(&["key", "generate", "mirror"]);
        }
        let public = master.path(".cpm/keys/mirror.pub");
        self.ok(&[
            "user",
            "add",
            "master",
            "--key-file",
            public.to_str().unwrap(),
        ]);
    }

    /// Runs the real `git` in `dir` (or anywhere) with a fixed identity and no user config.
    pub fn git(&self, dir: Option<&Path>, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        if let Some(d) = dir {
            cmd.current_dir(d);
        } else {
            cmd.current_dir(&self.home);
        }
        let out = cmd
            .args(["-c", "init.defaultBranch=main"])
            .args(args)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Tester")
            .env("GIT_AUTHOR_EMAIL", "tester@example.com")
            .env("GIT_COMMITTER_NAME", "Tester")
            .env("GIT_COMMITTER_EMAIL", "tester@example.com")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .expect("git must be installed");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The SHA256 fingerprint `ssh-keygen -lf` prints for a public key file.
pub fn fingerprint(pub_path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_string()
}

/// The `field` of every element of a JSON array, as strings.
pub fn field(list: &Value, name: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|v| match &v[name] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Whether a string looks like an RFC 3339 UTC time, e.g. `2024-01-15T10:30:00Z`.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || s.contains('+'))
}
