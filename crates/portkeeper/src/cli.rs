//! The command line, as clap types only: what `portman` accepts and the help it prints.
//!
//! Parsing happens here; turning arguments into typed requests and doing the work happens in
//! [`crate::commands`]. `portman ai --json` walks these same definitions, so the agent-facing
//! description can never drift from the real CLI.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::EXIT_STATUS_HELP;
use crate::port::{Port, PortRange};
use crate::ports::Status;

const AFTER_HELP: &str = "\
EXAMPLES:
  portman reserve 3000 -n my-app -d 'React dev server' -t frontend
  portman check 3000 && npm start
  portman request 2 -n api --start 8000 --end 8999
  portman run -n my-app -- npm run dev -- --port {PORT}
  portman list
  portman kill 3000

The database is ~/.portkeeper/database.db (override with --db or PORTMAN_DB).";

/// Reserve, scan, check and free ports for local projects.
///
/// Port Keeper remembers which project owns which port, and always tells the truth about what is
/// listening right now: every command reads the kernel's socket tables (TCP and UDP, IPv4 and IPv6)
/// and joins them with the reservations.
#[derive(Debug, Parser)]
#[command(name = "portman", version, after_help = AFTER_HELP, after_long_help = format!("{AFTER_HELP}\n\n{EXIT_STATUS_HELP}"))]
pub struct Cli {
    /// Database file [env: PORTMAN_DB] [default: ~/.portkeeper/database.db]
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Every `portman` subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reserve one or more ports for a project.
    Reserve(ReserveArgs),
    /// Release reserved ports: by port, project, tag, all, or the stale ones.
    Release(ReleaseArgs),
    /// List reservations with their live status and listeners.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one port's live status: reservation and listeners (exit 0 free, 2 reserved, 3 in use).
    Check(CheckArgs),
    /// List every listening TCP socket and bound UDP socket, joined with reservations.
    Scan(ScanArgs),
    /// Stop the processes listening on a port (TERM, then KILL after --timeout).
    Kill(KillArgs),
    /// Allocate free ports for a project (range, avoid list, contiguous, stable).
    Request(RequestArgs),
    /// Reserve a port, run a command with $PORT set, release the port when it exits.
    Run(RunArgs),
    /// Show the history of reservations, releases, use and kills.
    History(HistoryArgs),
    /// List reservations older than N days that nothing uses (the seed's stale query).
    Stale(StaleArgs),
    /// Counts by status, and ports by project (the v_port_summary and v_project_ports views).
    Summary(SummaryArgs),
    /// Write every reservation to versioned JSON with a checksum.
    Export(ExportArgs),
    /// Read reservations from an export (ours or the original Port Keeper's) or an old database.
    Import(ImportArgs),
    /// Back up, restore, check, prune and maintain the database.
    #[command(subcommand)]
    Db(DbCommand),
    /// A terminal UI: reserved and active ports, refresh, release and kill.
    #[command(visible_alias = "gui")]
    Ui(UiArgs),
    /// Describe every command and flag for agents and scripts (use with --json).
    Ai(AiArgs),
    /// Print a shell completion script.
    Completions(store::cli::CompletionsArgs),
    /// Print the manual page, or write one page per command into a directory.
    Man(ManArgs),
}

/// `--json`, on every command that prints data.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct JsonFlag {
    /// Print JSON: one document on stdout with stable keys; errors as {"error":{"code","message"}}.
    #[arg(long)]
    pub json: bool,
}

/// `portman summary`
#[derive(Debug, Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `portman ai`
#[derive(Debug, Args)]
pub struct AiArgs {
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `portman reserve`
#[derive(Debug, Args)]
#[command(
    after_help = "Reserving a port your project already holds updates its fields. \
A port held by another project is refused (exit 73) and left as it is."
)]
pub struct ReserveArgs {
    /// Port(s) to reserve (1-65535).
    #[arg(required = true, value_name = "PORT")]
    pub ports: Vec<Port>,
    #[command(flatten)]
    pub fields: ReservationFields,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// The fields every new reservation takes.
#[derive(Debug, Args, Clone)]
pub struct ReservationFields {
    /// Project that owns the port(s).
    #[arg(
        short = 'n',
        long = "project",
        visible_alias = "name",
        value_name = "PROJECT"
    )]
    pub project: String,
    /// What the port is for.
    #[arg(short, long, visible_alias = "desc")]
    pub description: Option<String>,
    /// Tags: `-t web dev`, `-t web,dev` or `-t web -t dev`.
    #[arg(short, long = "tag", visible_alias = "tags", value_name = "TAG", num_args = 1.., value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Release automatically once the process seen on the port has exited.
    #[arg(long)]
    pub auto_release: bool,
    /// Custom data as KEY=VALUE (repeat for several).
    #[arg(short, long = "metadata", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
}

/// `portman release`
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Port(s) to release.
    #[arg(value_name = "PORT")]
    pub ports: Vec<Port>,
    /// Release every port of this project.
    #[arg(short = 'n', long)]
    pub project: Option<String>,
    /// Release every port carrying this tag.
    #[arg(short, long)]
    pub tag: Option<String>,
    /// Release every reserved port.
    #[arg(long)]
    pub all: bool,
    /// Release stale reservations: reserved more than --days ago and not in use.
    #[arg(long)]
    pub stale: bool,
    /// Age in days for --stale.
    #[arg(long, default_value_t = 30, requires = "stale")]
    pub days: u32,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `portman list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this live status (repeat for several).
    #[arg(short, long, value_name = "STATUS", value_parser = parse_status)]
    pub status: Vec<Status>,
    /// Only this project.
    #[arg(short = 'p', long, short_alias = 'n')]
    pub project: Option<String>,
    /// Only ports with this tag.
    #[arg(short, long, visible_alias = "tags")]
    pub tag: Option<String>,
    /// Include released (free) rows too.
    #[arg(short, long)]
    pub all: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

fn parse_status(s: &str) -> Result<Status, String> {
    s.parse()
}

/// `portman check`
#[derive(Debug, Args)]
#[command(
    after_help = "EXIT STATUS (scripts can branch on it):\n  0  free: not reserved, nothing listens\n  2  reserved, nothing listens\n  3  something listens (reserved or not)\n  64 not a port number"
)]
pub struct CheckArgs {
    /// The port.
    pub port: Port,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// Protocol filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    /// TCP listeners.
    Tcp,
    /// Bound UDP sockets.
    Udp,
}

/// `portman scan`
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Only these ports or ranges (e.g. 3000 or 3000-3999).
    #[arg(
        short,
        long = "port",
        visible_alias = "range",
        value_name = "PORT|RANGE"
    )]
    pub ports: Vec<PortRange>,
    /// Only this protocol.
    #[arg(long)]
    pub proto: Option<ProtoArg>,
    /// Only sockets on reserved ports.
    #[arg(long)]
    pub reserved: bool,
    /// Do not record the results in active_scans.
    #[arg(long)]
    pub no_record: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `portman kill`
#[derive(Debug, Args)]
#[command(
    after_help = "Only processes that listen on the port are signalled (never connected clients), \
all of them. PID 1 and portman itself are refused (exit 77). If a process is still alive after \
--timeout it gets KILL; the port is then checked to be free (exit 1 if not)."
)]
pub struct KillArgs {
    /// The port(s) to free.
    #[arg(required = true, value_name = "PORT")]
    pub ports: Vec<Port>,
    /// Send KILL straight away instead of --signal.
    #[arg(short, long)]
    pub force: bool,
    /// Signal to send first.
    #[arg(short, long, default_value = "TERM", value_parser = crate::kill::parse_signal)]
    pub signal: rustix::process::Signal,
    /// How long to wait before sending KILL (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Only listeners of this protocol.
    #[arg(long)]
    pub proto: Option<ProtoArg>,
    /// Show what would be signalled, and signal nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// Parses `5s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let value: f64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 5s, 500ms, 2m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit in '{s}' (use ms, s, m or h)")),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("'{s}' is out of range (0 to 24h)"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// `portman request`
#[derive(Debug, Args)]
#[command(
    after_help = "Ports are taken in one transaction: concurrent requests never get the same port. \
A port is handed out only if it is unreserved, not in the avoid list, not bound by any process, \
and a bind probe succeeds. Exit 69 when the range cannot satisfy the request."
)]
pub struct RequestArgs {
    /// How many ports.
    #[arg(default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub count: u16,
    #[command(flatten)]
    pub fields: ReservationFields,
    #[command(flatten)]
    pub search: SearchArgs,
    /// Allocate all ports as one consecutive block.
    #[arg(short, long)]
    pub contiguous: bool,
    /// Pick free ports at random within the range (bounded: every port is tried at most once).
    #[arg(short, long, conflicts_with_all = ["stable", "contiguous"])]
    pub random: bool,
    /// Take the lowest free ports first (the default; accepted for compatibility).
    #[arg(short = 's', long, hide = true)]
    pub sequential: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// Where `request` and `run` look for free ports.
#[derive(Debug, Args, Clone)]
pub struct SearchArgs {
    /// First port of the search range.
    #[arg(long, default_value_t = crate::request::DEFAULT_RANGE.start)]
    pub start: Port,
    /// Last port of the search range.
    #[arg(long, default_value_t = crate::request::DEFAULT_RANGE.end)]
    pub end: Port,
    /// Ports or ranges never to hand out (e.g. 5432 or 6000-6100; comma lists allowed).
    #[arg(long, value_name = "PORT|RANGE", value_delimiter = ',')]
    pub avoid: Vec<PortRange>,
    /// Start from a port derived from the project name, so a project gets the same port each time.
    #[arg(long)]
    pub stable: bool,
}

/// `portman run`
#[derive(Debug, Args)]
#[command(
    after_help = "The child gets PORT in its environment and every {PORT} in its arguments \
replaced. The port is released when the child exits, and when portman gets INT, TERM or HUP \
(forwarded to the child first). portman exits with the child's status.\n\n\
EXAMPLE:\n  portman run -n my-app -- python3 -m http.server {PORT}"
)]
pub struct RunArgs {
    #[command(flatten)]
    pub fields: ReservationFields,
    /// Use this port (reserved for the run); without it a free one is requested.
    #[arg(short, long)]
    pub port: Option<Port>,
    #[command(flatten)]
    pub search: SearchArgs,
    /// The command and its arguments (after --).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `portman history`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this port.
    pub port: Option<Port>,
    /// Only this project.
    #[arg(short = 'n', long)]
    pub project: Option<String>,
    /// Only since this time: a date (2024-01-20), RFC 3339, or an age (7d, 24h, 30m).
    #[arg(long)]
    pub since: Option<String>,
    /// Only this action.
    #[arg(long, value_parser = ["reserved", "released", "in-use", "killed"])]
    pub action: Option<String>,
    /// At most this many entries, newest first.
    #[arg(short, long, default_value_t = 100)]
    pub limit: u32,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `portman stale`
#[derive(Debug, Args)]
pub struct StaleArgs {
    /// Reserved more than this many days ago.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `portman export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// File to write, or - for stdout (the default). An existing file is not overwritten without --force.
    #[arg(value_name = "FILE|-")]
    pub file: Option<PathBuf>,
    /// Same as FILE (the original's spelling).
    #[arg(short, long, value_name = "FILE", conflicts_with = "file")]
    pub output: Option<PathBuf>,
    /// Indent the JSON (the default; accepted for compatibility).
    #[arg(long, hide = true)]
    pub pretty: bool,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// A name for this export, as stored in the configurations table.
    #[arg(long)]
    pub name: Option<String>,
    /// A description stored with it.
    #[arg(short, long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `portman import`
#[derive(Debug, Args)]
#[command(
    after_help = "FILE is a portman export, an export of the original Port Keeper (either format), \
or an old Port Keeper database (~/.portmanager/ports.db). Everything is validated before anything \
changes; --dry-run shows the difference only.\n\n  --merge (default) adds and updates; a port \
held by another project is a conflict (exit 73).\n  --replace makes the reservations exactly the \
file's: ports not in it are released."
)]
pub struct ImportArgs {
    /// The file to read, or - for stdin.
    #[arg(value_name = "FILE|-", default_value = "-")]
    pub file: PathBuf,
    /// Add and update, keep what is not in the file (default).
    #[arg(long, conflicts_with = "replace")]
    pub merge: bool,
    /// Make the reservations exactly those in the file.
    #[arg(long)]
    pub replace: bool,
    /// Show what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `portman db …`: the store's commands, plus `prune`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    #[command(flatten)]
    Store(store::cli::DbCommand),
    /// Delete old history (> 365 days) and old scan rows (> 7 days): the seed's "Clean Old History".
    Prune(PruneArgs),
}

/// `portman db prune`
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Delete history older than this many days.
    #[arg(long, default_value_t = 365)]
    pub history_days: u32,
    /// Delete scan results older than this many days.
    #[arg(long, default_value_t = 7)]
    pub scan_days: u32,
    /// Count what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `portman ui`
#[derive(Debug, Args)]
pub struct UiArgs {
    /// Seconds between automatic refreshes.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub refresh: std::time::Duration,
}

/// `portman man`
#[derive(Debug, Args)]
#[command(
    after_help = "EXAMPLES:\n  portman man | man -l -\n  portman man --out ~/.local/share/man/man1   # portman.1, portman-reserve.1, …"
)]
pub struct ManArgs {
    /// Write portman.1 and portman-<command>.1 for every command into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("2").unwrap().as_secs(), 2);
        assert_eq!(parse_duration("1m").unwrap().as_secs(), 60);
        assert!(parse_duration("5 parsecs").is_err());
    }
}
