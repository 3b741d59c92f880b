//! Helpers shared by the store's integration tests.
//!
//! The tests drive the `notes` example (a complete tool built on the store) as a real child process,
//! and use the library directly, through `Tool`s with the same application id at other schema
//! versions, to make files that the binary must refuse or accept: a newer schema (V3), an edited
//! migration (drift), an older backup (V1).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use store::refinery::{Migration, Runner};
use store::{DefaultPath, Location, OpenConfig, Store, Tool, with_suffix};

pub const NOTES_APP_ID: i32 = 0x4e4f_5445;

const V1_SQL: &str = include_str!("../../examples/notes_migrations/V1__notes.sql");
const V2_SQL: &str = include_str!("../../examples/notes_migrations/V2__tags.sql");
const V3_SQL: &str =
    "CREATE TABLE archive (id INTEGER PRIMARY KEY, note_id INTEGER NOT NULL) STRICT;";

fn migration(name: &str, sql: &str) -> Migration {
    Migration::unapplied(name, sql).expect("valid migration name")
}

fn v1() -> Runner {
    Runner::new(&[migration("V1__notes", V1_SQL)])
}
fn v2() -> Runner {
    Runner::new(&[
        migration("V1__notes", V1_SQL),
        migration("V2__tags", V2_SQL),
    ])
}
fn v3() -> Runner {
    Runner::new(&[
        migration("V1__notes", V1_SQL),
        migration("V2__tags", V2_SQL),
        migration("V3__archive", V3_SQL),
    ])
}
fn v1_edited() -> Runner {
    let edited = format!("{V1_SQL}\nCREATE INDEX notes_body ON notes (body);");
    Runner::new(&[migration("V1__notes", &edited)])
}

const LOCATION: Location = Location {
    env_var: "NOTES_DB",
    flag: "--db",
    file_in_dir: None,
    default: DefaultPath::Home(".notes/notes.db"),
};

const fn notes_tool(migrations: fn() -> Runner) -> Tool {
    Tool {
        name: "notes",
        application_id: NOTES_APP_ID,
        location: LOCATION,
        migrations,
        adopt: None,
    }
}

/// The example's schema at version 1 (an older build).
pub static NOTES_V1: Tool = notes_tool(v1);
/// The example's own schema (version 2).
pub static NOTES_V2: Tool = notes_tool(v2);
/// A newer build's schema (version 3).
pub static NOTES_V3: Tool = notes_tool(v3);
/// A build whose V1 migration was edited after release.
pub static NOTES_V1_EDITED: Tool = notes_tool(v1_edited);

/// Opens (creating) a database at `path` through the library.
pub fn open(tool: &Tool, path: &Path) -> Store {
    Store::open(tool, &OpenConfig::for_path(tool, path)).expect("open store")
}

/// Adds `n` notes of `pad` bytes each in one transaction.
pub fn add_notes(store: &Store, n: usize, pad: usize) {
    let body = "n".repeat(pad.max(1));
    store
        .write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO notes (body, created_at) VALUES (?1, unixepoch() - ?2)",
            )?;
            for i in 0..n {
                insert.execute((&body, i as i64))?;
            }
            tx.execute("UPDATE totals SET notes = notes + ?1", [n as i64])?;
            Ok::<_, store::Error>(())
        })
        .expect("insert notes");
}

/// Makes a database of `tool`'s schema holding `n` notes, backs it up to `backup` and returns it.
pub fn backup_of(tool: &Tool, n: usize, backup: &Path) -> PathBuf {
    let source = with_suffix(backup, ".source");
    let store = open(tool, &source);
    add_notes(&store, n, 200);
    store.backup_to(backup).expect("back up");
    backup.to_path_buf()
}

/// The `notes` example tool, built by cargo before the integration tests.
pub fn notes_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_notes"))
}

/// A `notes` command against the database at `db`, in an environment of its own.
pub fn notes(db: &Path) -> Command {
    let mut cmd = Command::new(notes_bin());
    cmd.env("NOTES_DB", db)
        .env_remove("NOTES_ALLOW_UNSUPPORTED_FS")
        .stdin(Stdio::null());
    cmd
}

/// `notes hold`: a process holding the instance lock, as a server would, until stopped.
pub struct Server(Child);

impl Server {
    /// Starts it and waits until it holds the lock.
    pub fn start(db: &Path) -> Server {
        let mut child = notes(db)
            .arg("hold")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn notes hold");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read from notes hold");
        assert_eq!(line, "holding\n", "notes hold did not take the lock");
        Server(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Closes its stdin and checks it exits cleanly, releasing the lock.
    pub fn stop(mut self) {
        drop(self.0.stdin.take());
        assert!(self.0.wait().expect("wait for notes hold").success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command to completion, capturing its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn notes")
}

/// Exit status code of a finished command.
pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Parses stdout as one JSON document.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

/// A file's permission bits.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A read-only look at a database with plain rusqlite.
pub fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open read-only")
}

/// `(count of notes, totals.notes)`: the two must always agree.
pub fn counts(path: &Path) -> (i64, i64) {
    let conn = raw(path);
    let notes = conn
        .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    let total = conn
        .query_row("SELECT notes FROM totals", [], |r| r.get(0))
        .unwrap();
    (notes, total)
}

/// `PRAGMA integrity_check` result lines.
pub fn integrity(path: &Path) -> Vec<String> {
    let conn = raw(path);
    let mut stmt = conn.prepare("PRAGMA integrity_check").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The schema as SQLite records it, sorted, for comparing two databases.
pub fn schema(path: &Path) -> Vec<(String, String, Option<String>)> {
    let conn = raw(path);
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A small deterministic random source (xorshift), seeded per test and printed on failure.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        eprintln!("rng seed: {seed}");
        Rng(seed.max(1))
    }

    pub fn from_time() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng::new(nanos)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
