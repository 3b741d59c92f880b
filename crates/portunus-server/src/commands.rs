//! Running the admin commands: the store's backup, restore, reset and `db` operations under the
//! seed's spellings, and `audit prune`.

use std::process::ExitCode;

use serde::Serialize;
use store::cli::{human_bytes, report};
use store::{OpenConfig, Prune, Store};

use crate::cli::{AuditCommand, Cli, Command, PruneArgs};
use crate::store::TOOL;

/// Runs a parsed command line; returns the exit status.
pub fn run(cli: Cli) -> ExitCode {
    let command = match admin_command(cli.command) {
        Ok(code) => return code,
        Err(command) => *command,
    };
    let config = match OpenConfig::resolve(&TOOL, cli.data_dir.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            store::cli::print_error(false, &e);
            return ExitCode::from(e.exit_code());
        }
    };
    match command {
        Command::Serve(args) => crate::serve::run(&config, &args),
        Command::Init(args) => init(&config, args.json),
        Command::Backup(args) => args.run(&TOOL, &config),
        Command::Restore(args) => args.run(&TOOL, &config),
        Command::Reset(args) => args.run(&TOOL, &config),
        Command::Db(db) => db.run(&TOOL, &config),
        Command::Audit(AuditCommand::Prune(args)) => prune(&config, &args),
        Command::Completions(args) => args.run::<Cli>("portunus-server"),
        other => {
            // Every admin command was dispatched above.
            store::cli::print_failure(false, "internal", &format!("unhandled command {other:?}"));
            ExitCode::FAILURE
        }
    }
}

/// Runs the admin commands, which talk to the API and need no data directory; hands any other
/// command back.
fn admin_command(command: Command) -> Result<ExitCode, Box<Command>> {
    Ok(match command {
        Command::Setup(args) => crate::admin::setup(&args),
        Command::UserAdd(args) => crate::admin::user_add(&args),
        Command::UserList(conn) => crate::admin::user_list(&conn),
        Command::UserRemove(args) => crate::admin::user_remove(&args),
        Command::GrantAdd(args) => crate::admin::grant_add(&args),
        Command::GrantList(args) => crate::admin::grant_list(&args),
        Command::GrantRevoke(args) => crate::admin::grant_revoke(&args),
        Command::PushRule(args) => crate::admin::push_rule(&args),
        Command::ListRules(args) => crate::admin::list_rules(&args),
        Command::RemoveRule(args) => crate::admin::remove_rule(&args),
        Command::EnrollClient(args) => crate::admin::enroll_client(&args),
        Command::ListClients(conn) => crate::admin::list_clients(&conn),
        Command::Revoke(args) => crate::admin::revoke(&args),
        Command::AuditLog(args) => crate::admin::audit_log(&args),
        other => return Err(Box::new(other)),
    })
}

#[derive(Debug, Serialize)]
struct Initialised {
    path: std::path::PathBuf,
    schema_version: Option<i64>,
    migrations_applied: Vec<i64>,
}

/// Creates (or brings up to date) `<data-dir>/state.db`.
fn init(config: &OpenConfig, json: bool) -> ExitCode {
    let result = Store::open(&TOOL, config).and_then(|s| {
        Ok(Initialised {
            path: s.path().to_path_buf(),
            schema_version: s.schema_version()?,
            migrations_applied: s.migrations_applied().to_vec(),
        })
    });
    report(json, result, |i| {
        format!(
            "{} is ready (schema version {}; {} migration(s) applied now).\n",
            i.path.display(),
            i.schema_version.unwrap_or(0),
            i.migrations_applied.len()
        )
    })
}

#[derive(Debug, Serialize)]
struct Pruned {
    before_ms: i64,
    #[serde(flatten)]
    report: store::PruneReport,
}

/// Deletes audit rows older than `--before` in bounded `BEGIN IMMEDIATE` batches, then runs the
/// incremental vacuum so the file really shrinks (databases are created with incremental
/// auto-vacuum).
fn prune(config: &OpenConfig, args: &PruneArgs) -> ExitCode {
    let config = OpenConfig {
        if_missing: store::IfMissing::Fail,
        ..config.clone()
    };
    let result = Store::open(&TOOL, &config)
        .and_then(|s| s.prune(&Prune::older_than("audit", "at", args.before), args.dry_run))
        .map(|report| Pruned {
            before_ms: args.before,
            report,
        });
    report(args.json, result, |p| {
        if p.report.dry_run {
            format!(
                "Dry run: {} audit rows are older than the cutoff; nothing was deleted.\n",
                p.report.rows
            )
        } else {
            format!(
                "Deleted {} audit rows; the database went from {} to {}.\n",
                p.report.rows,
                human_bytes(p.report.bytes_before),
                human_bytes(p.report.bytes_after)
            )
        }
    })
}
