//! One module per command group; this one resolves files and dispatches.
//!
//! Every command gets a [`Ctx`]: the database location, the configuration, and the output format.
//! Changes run inside one `Store::write` transaction together with their audit row (and, for
//! repositories, with the directory move), so a failure leaves nothing half done.

use std::process::ExitCode;

use store::{OpenConfig, Store};

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::disk::Root;
use crate::error::{Error, Result};
use crate::output::Output;
use crate::schema::TOOL;

mod access;
mod key;
mod org;
mod repo;
mod server;
mod shell;
mod user;

/// What every command needs.
#[derive(Debug)]
pub struct Ctx {
    /// How to print.
    pub out: Output,
    /// The database location.
    pub db: OpenConfig,
    /// The configuration file's settings.
    pub config: Config,
    /// The OS user, for the audit log.
    pub actor: String,
}

impl Ctx {
    /// Opens (creating and migrating if needed) the database.
    pub fn open(&self) -> Result<Store> {
        let store = Store::open(&TOOL, &self.db)?;
        if store.migrations_applied().contains(&2) {
            // Just adopted or created: keys the original kept in `users.public_key` move over.
            store.write(|tx| crate::users::backfill_keys(tx))?;
        }
        Ok(store)
    }

    /// Opens the repository root.
    pub fn root(&self) -> Result<Root> {
        Root::open(&self.config.repo_root, &self.config.default_branch)
    }
}

/// Runs a parsed command line; returns the exit status.
pub fn run(cli: Cli) -> ExitCode {
    let config = Config::load(cli.config.as_deref());
    let format = cli
        .format
        .or_else(|| config.as_ref().ok().map(|c| c.format))
        .unwrap_or_default();
    let out = Output { format };
    let result = config.and_then(|config| {
        let db = OpenConfig::resolve(&TOOL, cli.db.as_deref())?;
        let ctx = Ctx {
            out,
            db,
            config,
            actor: crate::audit::os_user(),
        };
        dispatch(&ctx, cli.command)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            out.error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

fn dispatch(ctx: &Ctx, command: Command) -> Result<ExitCode> {
    match command {
        Command::User(c) => user::run(ctx, c)?,
        Command::Org(c) => org::run(ctx, c)?,
        Command::Repo(c) => repo::run(ctx, c)?,
        Command::Access(c) => access::run(ctx, c)?,
        Command::Key(c) => key::run(ctx, c)?,
        Command::Server(c) => server::run(ctx, c)?,
        Command::Neighbors(c) => server::neighbors(ctx, c)?,
        Command::Sync(args) => return server::sync(ctx, &args, false),
        Command::Log(args) => {
            let entries = ctx.open()?.read(|c| crate::audit::list(c, args.limit))?;
            ctx.out.print(&entries, |entries| {
                let mut t =
                    crate::output::Table::new(&["WHEN", "ACTOR", "ACTION", "TARGET", "DETAILS"]);
                for e in entries {
                    t.row(vec![
                        store::timestamp::to_rfc3339(&e.at),
                        e.actor.clone(),
                        e.action.clone(),
                        e.target.clone(),
                        crate::output::or_dash(&e.details),
                    ]);
                }
                t.render()
            });
        }
        Command::AuthorizedKeys(args) => return shell::authorized_keys(ctx, &args),
        Command::Shell(args) => return shell::shell(ctx, &args),
        Command::Serve(args) => return crate::serve::run(ctx, &args),
        Command::Db(db) => {
            // `--format json` (or yaml, of which JSON is a subset) reaches the store's commands too.
            let json = ctx.out.format != crate::config::Format::Table;
            return Ok(db.with_json(json).run(&TOOL, &ctx.db));
        }
        Command::Completions(args) => return Ok(args.run::<Cli>("cpm")),
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads SSH public keys from `--key` values and `--key-file` paths.
pub fn read_keys(source: &crate::cli::KeySource) -> Result<Vec<crate::keys::PublicKeyInfo>> {
    let mut keys = Vec::new();
    for text in &source.keys {
        keys.push(crate::keys::parse_public_key(text)?);
    }
    for path in &source.key_files {
        keys.push(crate::keys::read_public_key_file(path)?);
    }
    Ok(keys)
}

/// A write transaction with an audit row.
pub fn write<T>(
    ctx: &Ctx,
    store: &Store,
    action: &str,
    target: &str,
    details: &str,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T>,
) -> Result<T> {
    store.write(|tx| {
        let value = f(tx)?;
        crate::audit::record(tx, &ctx.actor, action, target, details)?;
        Ok::<_, Error>(value)
    })
}
