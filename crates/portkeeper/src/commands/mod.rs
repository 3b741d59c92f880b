//! One module per subcommand; this one opens the database and dispatches.
//!
//! Every command returns `Result<u8>`: the exit status on success (0, or `check`'s 2 and 3) or an
//! [`Error`] that `main` prints (as JSON under `--json`) and maps to its documented exit status.

use std::collections::BTreeSet;
use std::process::ExitCode;

use store::{OpenConfig, Store};

use crate::cli::{Cli, Command, ProtoArg, ReservationFields};
use crate::error::{Error, Result};
use crate::request::Template;
use crate::schema::TOOL;
use crate::sockets::{Proto, Snapshot};

mod ai;
mod check;
mod completions;
mod db;
mod export;
mod history;
mod import;
mod kill;
mod list;
mod release;
mod request;
mod reserve;
mod run;
mod scan;
mod stale;
mod summary;

/// What every command needs: where the database is and how to print.
#[derive(Debug)]
pub struct Context {
    /// Print JSON.
    pub json: bool,
    /// The resolved database location.
    pub config: OpenConfig,
}

impl Context {
    /// Opens (creating and migrating if needed) the database.
    pub fn open(&self) -> Result<Store> {
        Ok(Store::open(&TOOL, &self.config)?)
    }
}

/// Whether the command asked for JSON.
fn wants_json(command: &Command) -> bool {
    match command {
        Command::Reserve(a) => a.out.json,
        Command::Release(a) => a.out.json,
        Command::List(a) => a.out.json,
        Command::Check(a) => a.out.json,
        Command::Scan(a) => a.out.json,
        Command::Kill(a) => a.out.json,
        Command::Request(a) => a.out.json,
        Command::History(a) => a.out.json,
        Command::Stale(a) => a.out.json,
        Command::Summary(a) => a.out.json,
        Command::Export(a) => a.out.json,
        Command::Import(a) => a.out.json,
        Command::Ai(a) => a.out.json,
        Command::Db(crate::cli::DbCommand::Prune(a)) => a.out.json,
        Command::Db(_)
        | Command::Run(_)
        | Command::Ui(_)
        | Command::Completions(_)
        | Command::Man(_) => false,
    }
}

/// Runs a parsed command line; returns the exit status.
pub fn run(cli: Cli) -> ExitCode {
    let json = wants_json(&cli.command);
    let config = match OpenConfig::resolve(&TOOL, cli.db.as_deref()) {
        Ok(config) => config,
        Err(e) => return ExitCode::from(fail(json, &Error::from(e))),
    };
    let ctx = Context { json, config };
    let result = match &cli.command {
        Command::Reserve(args) => reserve::run(&ctx, args),
        Command::Release(args) => release::run(&ctx, args),
        Command::List(args) => list::run(&ctx, args),
        Command::Check(args) => check::run(&ctx, args),
        Command::Scan(args) => scan::run(&ctx, args),
        Command::Kill(args) => kill::run(&ctx, args),
        Command::Request(args) => request::run(&ctx, args),
        Command::Run(args) => run::run(&ctx, args),
        Command::History(args) => history::run(&ctx, args),
        Command::Stale(args) => stale::run(&ctx, args),
        Command::Summary(_) => summary::run(&ctx),
        Command::Export(args) => export::run(&ctx, args),
        Command::Import(args) => import::run(&ctx, args),
        Command::Db(cmd) => return db::run(&ctx, cmd),
        Command::Ui(args) => crate::ui::run(&ctx, args),
        Command::Ai(_) => ai::run(&ctx),
        Command::Completions(args) => return args.run::<Cli>("portman"),
        Command::Man(args) => completions::man(args),
    };
    ExitCode::from(match result {
        Ok(code) => code,
        Err(e) => fail(json, &e),
    })
}

fn fail(json: bool, error: &Error) -> u8 {
    crate::output::error(json, error);
    error.exit_code()
}

/// Turns the shared reservation flags into a checked template.
pub fn template(fields: &ReservationFields) -> Result<Template> {
    if fields.project.trim().is_empty() {
        return Err(Error::Usage(
            "the project name (-n) is empty; give the project a name".into(),
        ));
    }
    let mut metadata = serde_json::Map::new();
    for pair in &fields.metadata {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Error::Usage(format!(
                "--metadata '{pair}' is not KEY=VALUE (e.g. --metadata team=alpha)"
            )));
        };
        if key.trim().is_empty() {
            return Err(Error::Usage(format!(
                "--metadata '{pair}' has an empty key"
            )));
        }
        metadata.insert(key.trim().to_string(), value.into());
    }
    let mut tags: Vec<String> = Vec::new();
    for tag in fields
        .tags
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    {
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }
    Ok(Template {
        description: fields.description.clone(),
        tags,
        metadata,
        auto_release: fields.auto_release,
    })
}

/// One kernel snapshot covering `ports`.
pub fn snapshot_of(ports: impl IntoIterator<Item = u16>) -> Result<Snapshot> {
    let wanted: BTreeSet<u16> = ports.into_iter().collect();
    if wanted.is_empty() {
        return Ok(Snapshot::default());
    }
    Snapshot::take_filtered(|p| wanted.contains(&p)).map_err(|e| Error::Scan(e.to_string()))
}

/// The protocol a `--proto` flag names.
pub fn proto(arg: Option<ProtoArg>) -> Option<Proto> {
    arg.map(|p| match p {
        ProtoArg::Tcp => Proto::Tcp,
        ProtoArg::Udp => Proto::Udp,
    })
}

/// `tcp 127.0.0.1:3000 pid 42 (node)` lines for a set of sockets, for human output.
pub fn describe_listeners(sockets: &[crate::sockets::Socket]) -> Vec<String> {
    sockets
        .iter()
        .map(|s| {
            let owners = if s.owners.is_empty() {
                format!("owner not visible (user {})", s.user)
            } else {
                s.owners
                    .iter()
                    .map(|o| format!("pid {} ({})", o.pid, o.process))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("{} {} {}", s.proto, s.endpoint(), owners)
        })
        .collect()
}

/// Observes every held reservation against one fresh snapshot (bringing the table in line), and
/// returns them as they are now.
pub fn observe_held(
    store: &Store,
    filter: &crate::ports::Filter,
    probe: crate::live::ProbeUnseen,
    command: &str,
) -> Result<Vec<crate::live::Observed>> {
    let rows = store.read(|c| crate::ports::list(c, filter))?;
    let snapshot = snapshot_of(rows.iter().map(|r| r.number.get()))?;
    crate::live::observe(store, &snapshot, rows, probe, command)
}
