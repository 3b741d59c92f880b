//! `notes`: the smallest complete tool built on the store, and the program the store's tests run as
//! a real child process.
//!
//! It shows what every tool of the workspace does: one `static Tool`, `--db` resolved through the
//! tool's [`Location`], `Store::open` at start, writes through `Store::write`, and the whole `db`
//! subcommand mounted with one enum variant and one match arm. `stress` and `hold` exist for the
//! tests: `stress` commits batches in a loop and prints each batch number once it is durable;
//! `hold` keeps the instance lock like a server until its stdin closes.
//!
//! ```text
//! cargo run -p store --features notes-example --bin notes -- add "buy milk"
//! cargo run -p store --features notes-example --bin notes -- db backup --out /tmp/notes-backup.db
//! ```

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use store::cli::{DbCommand, parse_args, print_error, report};
use store::{DefaultPath, Location, OpenConfig, Store, Tool};

mod embedded {
    refinery::embed_migrations!("examples/notes_migrations");
}

static NOTES: Tool = Tool {
    name: "notes",
    application_id: 0x4e4f_5445, // "NOTE"
    location: Location {
        env_var: "NOTES_DB",
        flag: "--db",
        file_in_dir: None,
        default: DefaultPath::Home(".notes/notes.db"),
    },
    migrations: embedded::migrations::runner,
    adopt: None,
};

/// Keep short notes in an SQLite database (an example of the workspace's store crate).
#[derive(Debug, Parser)]
#[command(name = "notes", version)]
struct Cli {
    /// Database file [env: NOTES_DB] [default: ~/.notes/notes.db]
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add a note.
    Add {
        /// The note's text.
        body: String,
        /// An optional tag.
        #[arg(long)]
        tag: Option<String>,
        /// Print the new note as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Count the notes.
    Count {
        /// Print the count as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Commit batches of notes in a loop, printing each batch number after it commits.
    Stress {
        /// Stop after this many batches (default: run until killed).
        #[arg(long)]
        batches: Option<u64>,
        /// Notes per batch, all in one transaction.
        #[arg(long, default_value_t = 20)]
        rows: u64,
        /// Padding per note, in bytes, to make the database grow faster.
        #[arg(long, default_value_t = 0)]
        pad: usize,
    },
    /// Hold the database lock, as a server would, until standard input closes.
    Hold,
    /// Back up, restore, check and maintain the database.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Debug, serde::Serialize)]
struct Added {
    id: i64,
    body: String,
    tag: Option<String>,
}

fn main() -> ExitCode {
    let cli: Cli = parse_args();
    let config = match OpenConfig::resolve(&NOTES, cli.db.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            print_error(false, &e);
            return ExitCode::from(e.exit_code());
        }
    };
    match cli.command {
        Command::Db(db) => db.run(&NOTES, &config),
        Command::Add { body, tag, json } => {
            let result = Store::open(&NOTES, &config).and_then(|store| {
                store.write(|tx| {
                    tx.execute(
                        "INSERT INTO notes (body, tag, created_at) VALUES (?1, ?2, unixepoch())",
                        (&body, &tag),
                    )?;
                    tx.execute("UPDATE totals SET notes = notes + 1", [])?;
                    Ok(Added {
                        id: tx.last_insert_rowid(),
                        body: body.clone(),
                        tag: tag.clone(),
                    })
                })
            });
            report(json, result, |a| format!("added note {}\n", a.id))
        }
        Command::Count { json } => {
            let result = Store::open(&NOTES, &config).and_then(|store| {
                store.read(|c| {
                    c.query_row("SELECT count(*) FROM notes", [], |r| r.get::<_, i64>(0))
                        .map_err(store::Error::from)
                })
            });
            report(json, result, |n| format!("{n}\n"))
        }
        Command::Stress { batches, rows, pad } => match stress(&config, batches, rows, pad) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                print_error(false, &e);
                ExitCode::from(e.exit_code())
            }
        },
        Command::Hold => {
            let config = OpenConfig {
                instance_lock: true,
                ..config
            };
            match Store::open(&NOTES, &config) {
                Ok(_store) => {
                    println!("holding");
                    let _ = io::stdout().flush();
                    // Hold until stdin closes (the test ends us by closing it or by a signal).
                    for _ in io::stdin().lock().lines() {}
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    print_error(false, &e);
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}

fn stress(config: &OpenConfig, batches: Option<u64>, rows: u64, pad: usize) -> store::Result<()> {
    let store = Store::open(&NOTES, config)?;
    let first: i64 = store.read(|c| {
        c.query_row("SELECT coalesce(max(batch), 0) + 1 FROM notes", [], |r| {
            r.get(0)
        })
    })?;
    let body = "x".repeat(pad);
    let mut stdout = io::stdout().lock();
    let mut batch = first;
    loop {
        if batches.is_some_and(|n| (batch - first) as u64 >= n) {
            return Ok(());
        }
        store.write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO notes (body, batch, created_at) VALUES (?1, ?2, unixepoch())",
            )?;
            for _ in 0..rows {
                insert.execute((&body, batch))?;
            }
            tx.execute("UPDATE totals SET notes = notes + ?1", [rows as i64])?;
            Ok::<_, store::Error>(())
        })?;
        // Printed only after COMMIT returned: every number printed must survive a crash.
        if writeln!(stdout, "{batch}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(());
        }
        batch += 1;
    }
}
