//! The `db` subcommand every tool mounts: `<tool> db backup|restore|reset|check|vacuum|optimize|migrate`.
//!
//! A tool adds one variant to its clap enum and one match arm:
//!
//! ```text
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     /// Back up, restore, check and maintain the database.
//!     #[command(subcommand)]
//!     Db(store::cli::DbCommand),
//! }
//! // ...
//! Command::Db(db) => db.run(&TOOL, &open_config),
//! ```
//!
//! Each operation's arguments are also a public type with its own `run`, so a tool whose seed
//! documents top-level spellings (`portunus-server backup --out`) mounts them there. Every command
//! takes `--json`: results become one JSON object on stdout with stable keys, and errors become
//! `{"error":{"code":"…","message":"…"}}` on stdout. Without it, results are plain text on stdout and
//! errors `error: …` on stderr. The exit status is the error's sysexits code (see `EXIT STATUS`).

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::error::{Error, Result, exit};
use crate::migrate::MigrationState;
use crate::store::{Access, IfMissing, OpenConfig, Store};
use crate::tool::Tool;
use crate::{backup, maintenance};

/// The exit statuses of the `db` commands, shown in their `--help`.
pub const EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
  0   success
  1   failure not covered below (a migration failed to apply: nothing was changed)
  64  the command line was wrong (see the message, and --help)
  65  bad data: not an SQLite file, another tool's database, corruption, migration drift
  66  the database or the input file does not exist
  73  would overwrite: backup target exists, or restore target holds data (use --force)
  74  input/output error
  75  in use: a server holds the database lock, or another writer kept it busy
  78  the schema is newer than this binary, or the filesystem is unsupported";

/// Back up, restore, check and maintain the database.
#[derive(Debug, Subcommand)]
// Each operation's help lives on its argument struct, so it is the same wherever it is mounted.
pub enum DbCommand {
    Backup(BackupArgs),
    Restore(RestoreArgs),
    Reset(ResetArgs),
    Check(CheckArgs),
    Vacuum(VacuumArgs),
    Optimize(OptimizeArgs),
    Migrate(MigrateArgs),
}

impl DbCommand {
    /// Turns on `--json` when the tool's own output flag asked for JSON (e.g. cpm's `--format json`).
    pub fn with_json(mut self, json: bool) -> DbCommand {
        let flag = match &mut self {
            DbCommand::Backup(a) => &mut a.json,
            DbCommand::Restore(a) => &mut a.json,
            DbCommand::Reset(a) => &mut a.json,
            DbCommand::Check(a) => &mut a.json,
            DbCommand::Vacuum(a) => &mut a.json,
            DbCommand::Optimize(a) => &mut a.json,
            DbCommand::Migrate(a) => &mut a.json,
        };
        *flag |= json;
        self
    }

    /// Runs the command against the tool's database and returns the exit status.
    pub fn run(&self, tool: &Tool, config: &OpenConfig) -> ExitCode {
        match self {
            DbCommand::Backup(args) => args.run(tool, config),
            DbCommand::Restore(args) => args.run(tool, config),
            DbCommand::Reset(args) => args.run(tool, config),
            DbCommand::Check(args) => args.run(tool, config),
            DbCommand::Vacuum(args) => args.run(tool, config),
            DbCommand::Optimize(args) => args.run(tool, config),
            DbCommand::Migrate(args) => args.run(tool, config),
        }
    }
}

/// Arguments of `backup`.
#[derive(Debug, Args)]
#[command(
    about = "Write an online, verified copy of the database to a new file",
    long_about = "Write an online, verified copy of the database to a new file.\n\n\
        The copy is consistent even while other processes write. It is written beside the \
        destination under a hidden name, checked with quick_check, flushed to disk and only then \
        renamed into place, so the destination either does not exist or holds a complete backup. \
        An existing destination is never overwritten. If PATH is a directory, the backup is named \
        <tool>-<UTC timestamp>.db inside it.",
    after_long_help = EXIT_STATUS_HELP
)]
pub struct BackupArgs {
    /// File to create, or directory to create a timestamped file in.
    #[arg(long, visible_alias = "output", value_name = "PATH")]
    pub out: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl BackupArgs {
    /// Runs `backup`.
    pub fn run(&self, tool: &Tool, config: &OpenConfig) -> ExitCode {
        let spinner = spinner(self.json, "backing up");
        let result = backup::backup(tool, config, &self.out);
        spinner.finish_and_clear();
        report(self.json, result, |r| {
            format!(
                "Backed up {} ({}, schema version {}) to {}\n",
                r.source.display(),
                human_bytes(r.bytes),
                version(r.schema_version),
                r.path.display()
            )
        })
    }
}

/// Arguments of `restore`.
#[derive(Debug, Args)]
#[command(
    about = "Replace the database with a backup, after validating it",
    long_about = "Replace the database with a backup, after validating it.\n\n\
        The backup is checked first, without changing anything: SQLite header, size, quick_check, \
        that it belongs to this tool, and that its schema is not newer than this binary. Then the \
        database lock is taken (a running server makes restore refuse with status 75), a database \
        holding data is refused unless --force is given, and the backup is copied, migrated to the \
        current schema and swapped in with one atomic rename. On any refusal or failure the current \
        database is left exactly as it was.",
    after_long_help = EXIT_STATUS_HELP
)]
pub struct RestoreArgs {
    /// The backup file to restore.
    #[arg(long = "in", value_name = "PATH")]
    pub input: PathBuf,
    /// Replace a database that holds data.
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl RestoreArgs {
    /// Runs `restore`.
    pub fn run(&self, tool: &Tool, config: &OpenConfig) -> ExitCode {
        let spinner = spinner(self.json, "restoring");
        let result = backup::restore(tool, config, &self.input, self.force);
        spinner.finish_and_clear();
        report(self.json, result, |r| {
            let mut text = format!(
                "Restored {} from {} (schema version {}",
                r.path.display(),
                r.from.display(),
                version(r.backup_schema_version)
            );
            if !r.migrations_applied.is_empty() {
                text += &format!(", migrated to {}", version(r.schema_version));
            }
            text += ").\n";
            if r.replaced {
                text += "The previous database was replaced.\n";
            }
            text
        })
    }
}

/// Arguments of `reset`.
#[derive(Debug, Args)]
#[command(
    about = "Delete the database (a dry run unless --confirm)",
    long_about = "Delete the database: its file, -wal and -shm, and nothing else.\n\n\
        Without --confirm this is a dry run that lists what would be removed. The file's first 16 \
        bytes must be the SQLite header and it must not belong to another tool, so a mistyped path \
        never deletes anything else. Refused while a server holds the database lock. Take a backup \
        first: a reset cannot be undone.",
    after_long_help = EXIT_STATUS_HELP
)]
pub struct ResetArgs {
    /// Really delete (otherwise only show what would be deleted).
    #[arg(long)]
    pub confirm: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl ResetArgs {
    /// Runs `reset`.
    pub fn run(&self, tool: &Tool, config: &OpenConfig) -> ExitCode {
        report(self.json, backup::reset(tool, config, self.confirm), |r| {
            let files: String = r
                .files
                .iter()
                .map(|f| format!("  {}\n", f.display()))
                .collect();
            if r.dry_run {
                format!(
                    "Dry run: `db reset --confirm` would remove:\n{files}Nothing was removed.\n"
                )
            } else {
                format!("Removed:\n{files}")
            }
        })
    }
}

/// Arguments of `check`.
#[derive(Debug, Args)]
#[command(
    about = "Check integrity and foreign keys",
    long_about = "Check the database's integrity (PRAGMA integrity_check) and foreign keys \
        (PRAGMA foreign_key_check). Read-only; safe while the tool runs. Exits 65 if a problem is \
        found.",
    after_long_help = EXIT_STATUS_HELP
)]
pub struct CheckArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl CheckArgs {
    /// Runs `check`.
    pub fn run(&self, tool: &Tool, config: &OpenConfig) -> ExitCode {
        let result = maintenance::check(tool, config);
        let failed = matches!(&result, Ok(r) if !r.ok);
        let code = report(self.json, result, |r| {
            if r.ok {
                return format!(
                    "ok: {} passed integrity_check and foreign_key_check\n",
                    r.path.display()
                );
            }
            let mut text = format!("{} has problems:\n", r.path.display());
            for line in r.integrity.iter().filter(|l| *l != "ok") {
                text += &format!("  integrity: {line}\n");
            }
            for v in &r.foreign_key_violations {
                let row = v.rowid.map_or("?".to_string(), |r| r.to_string());
                text += &format!(
                    "  foreign key: {} row {row} references a missing {} row\n",
                    v.table, v.parent
                );
            }
            text + "Restore a backup (`db restore --in FILE --force`) if the data matters.\n"
        });
        if failed {
            ExitCode::from(exit::DATA_ERR)
        } else {
            code
        }
    }
}

/// Arguments of `vacuum`.
#[derive(Debug, Args)]
#[command(
    about = "Hand free pages back to the filesystem",
    long_about = "Hand free pages back to the filesystem so the file shrinks.\n\n\
        By default this steps an incremental vacuum to completion in short transactions, which is \
        safe while the tool runs. --full rewrites the whole file instead (slower, needs free disk \
        space the size of the database, and briefly blocks writers); it also converts files made \
        without incremental auto-vacuum.",
    after_long_help = EXIT_STATUS_HELP
)]
pub struct VacuumArgs {
    /// Rewrite the whole file (VACUUM) instead of an incremental vacuum.
    #[arg(long)]
    pub full: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl VacuumArgs {
    /// Runs `vacuum`.
    pub fn run(&self, tool: &Tool, config: &OpenConfig) -> ExitCode {
        let spinner = spinner(self.json, "vacuuming");
        let result = maintenance::vacuum(tool, config, self.full);
        spinner.finish_and_clear();
        report(self.json, result, |r| {
            let mut text = format!(
                "Vacuumed {} ({}): {} -> {}, {} pages freed\n",
                r.path.display(),
                if self.full { "full" } else { "incremental" },
                human_bytes(r.bytes_before),
                human_bytes(r.bytes_after),
                r.pages_freed
            );
            if let Some(note) = &r.note {
                text += &format!("note: {note}\n");
            }
            text
        })
    }
}

/// Arguments of `optimize`.
#[derive(Debug, Args)]
#[command(
    about = "Refresh the query planner's statistics",
    long_about = "Refresh the query planner's statistics (ANALYZE, then PRAGMA optimize). \
        Worth running after large imports or prunes.",
    after_long_help = EXIT_STATUS_HELP
)]
pub struct OptimizeArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl OptimizeArgs {
    /// Runs `optimize`.
    pub fn run(&self, tool: &Tool, config: &OpenConfig) -> ExitCode {
        report(self.json, maintenance::optimize(tool, config), |r| {
            format!(
                "Optimized {}: statistics for {} tables in {} ms\n",
                r.path.display(),
                r.tables_analyzed,
                r.elapsed_ms
            )
        })
    }
}

/// Arguments of `migrate`.
#[derive(Debug, Args)]
#[command(
    about = "Apply pending schema migrations, or list them with --status",
    long_about = "Apply pending schema migrations, or with --status list every migration and \
        whether it is applied, pending, drifted (changed since it was applied) or unknown (applied \
        by a newer binary). Tools also migrate on their own when they open the database; applying \
        takes the database lock, so it refuses while a server runs.",
    after_long_help = EXIT_STATUS_HELP
)]
pub struct MigrateArgs {
    /// Only show the migrations and their state; change nothing.
    #[arg(long)]
    pub status: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The result of `migrate` (applying).
#[derive(Debug, Serialize)]
struct MigrateReport {
    path: PathBuf,
    applied: Vec<i64>,
    schema_version: Option<i64>,
}

/// The result of `migrate --status`.
#[derive(Debug, Serialize)]
struct StatusReport {
    path: PathBuf,
    up_to_date: bool,
    #[serde(flatten)]
    status: crate::MigrationStatus,
}

impl MigrateArgs {
    /// Runs `migrate`.
    pub fn run(&self, tool: &Tool, config: &OpenConfig) -> ExitCode {
        if self.status {
            let result = Store::open_existing(tool, config, Access::ReadOnly).and_then(|store| {
                let status = store.migration_status()?;
                Ok(StatusReport {
                    path: store.path().to_path_buf(),
                    up_to_date: status.is_current(),
                    status,
                })
            });
            return report(self.json, result, |r| {
                let mut text = format!(
                    "{}: schema version {}, this build's latest is {}\n",
                    r.path.display(),
                    version(r.status.current_version),
                    r.status.target_version
                );
                text += &format!(
                    "{:>8}  {:<8}  {:<30}  NAME\n",
                    "VERSION", "STATE", "APPLIED ON"
                );
                for m in &r.status.migrations {
                    let state = match m.state {
                        MigrationState::Applied => "applied",
                        MigrationState::Pending => "pending",
                        MigrationState::Drifted => "DRIFTED",
                        MigrationState::Unknown => "unknown",
                    };
                    text += &format!(
                        "{:>8}  {:<8}  {:<30}  {}\n",
                        m.version,
                        state,
                        m.applied_on.as_deref().unwrap_or("-"),
                        m.name
                    );
                }
                text
            });
        }
        let locked = OpenConfig {
            if_missing: IfMissing::Fail,
            instance_lock: true,
            ..config.clone()
        };
        let result = Store::open(tool, &locked).and_then(|store| {
            Ok(MigrateReport {
                path: store.path().to_path_buf(),
                applied: store.migrations_applied().to_vec(),
                schema_version: store.schema_version()?,
            })
        });
        report(self.json, result, |r| {
            if r.applied.is_empty() {
                format!(
                    "{} is up to date (schema version {})\n",
                    r.path.display(),
                    version(r.schema_version)
                )
            } else {
                let list: Vec<String> = r.applied.iter().map(|v| format!("V{v}")).collect();
                format!(
                    "Applied {} to {}; schema version is now {}\n",
                    list.join(", "),
                    r.path.display(),
                    version(r.schema_version)
                )
            }
        })
    }
}

/// Parses the command line like `T::parse()`, but a usage error exits 64 (sysexits `EX_USAGE`)
/// instead of clap's 2. `--help` and `--version` still print and exit 0.
pub fn parse_args<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            std::process::exit(i32::from(code));
        }
    }
}

/// Prints a result (JSON or text) or an error, and returns the exit status.
pub fn report<R: Serialize>(
    json: bool,
    result: Result<R>,
    human: impl FnOnce(&R) -> String,
) -> ExitCode {
    let mut stdout = io::stdout().lock();
    match result {
        Ok(value) => {
            let text = if json {
                serde_json::to_string_pretty(&value)
                    .map(|s| s + "\n")
                    .unwrap_or_default()
            } else {
                human(&value)
            };
            let _ = stdout.write_all(text.as_bytes());
            ExitCode::from(exit::OK)
        }
        Err(error) => {
            print_error(json, &error);
            ExitCode::from(error.exit_code())
        }
    }
}

/// Prints an error as `error: …` on stderr, or as `{"error":{…}}` on stdout under `--json`.
pub fn print_error(json: bool, error: &Error) {
    print_failure(json, error.code(), &error.to_string());
}

/// Prints any tool's error the same way: `error: <message>` on stderr, or under `--json`
/// `{"error":{"code":…,"message":…}}` on stdout, so a script reads one document whatever happened.
pub fn print_failure(json: bool, code: &str, message: &str) {
    if json {
        let body = serde_json::json!({ "error": { "code": code, "message": message } });
        let _ = writeln!(io::stdout().lock(), "{body}");
    } else {
        eprintln!("error: {message}");
    }
}

/// A spinner on stderr while long work runs, shown only on a terminal and never under `--json`.
fn spinner(json: bool, message: &'static str) -> ProgressBar {
    if json || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn version(v: Option<i64>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

/// A plain table: a header row and left-aligned columns two spaces apart.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether only the header is there.
    pub fn is_empty(&self) -> bool {
        self.rows.len() <= 1
    }

    /// The table as text, trailing spaces trimmed.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Who runs the command, for history and audit rows: `$USER`, else `$LOGNAME`, else the name of
/// the process's uid in `/etc/passwd`, else `uid N`.
pub fn os_user() -> String {
    if let Some(user) = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
    {
        return user;
    }
    let uid = rustix::process::getuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// `<tool> completions SHELL`: a completion script generated from the tool's clap definition.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell (bash, zsh, fish, elvish, powershell).
    pub shell: clap_complete::Shell,
}

impl CompletionsArgs {
    /// Prints the script for `bin`, built from `C`'s definition. A closed pipe is not an error.
    pub fn run<C: clap::CommandFactory>(&self, bin: &str) -> ExitCode {
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut C::command(), bin, &mut script);
        let _ = io::stdout().lock().write_all(&script);
        ExitCode::SUCCESS
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["PORT", "PROJECT"]);
        t.row(vec!["3000".into(), "web".into()]);
        t.row(vec!["80".into(), "-".into()]);
        assert_eq!(t.render(), "PORT  PROJECT\n3000  web\n80    -\n");
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10.0 MiB");
    }
}
