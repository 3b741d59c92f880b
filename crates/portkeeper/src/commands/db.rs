//! `portman db …`: the shared store's maintenance commands, plus `prune`, the seed's "Clean Old
//! History" (history older than a year, scan rows older than a week).

use std::process::ExitCode;

use serde::Serialize;
use store::Prune;
use time::{Duration, OffsetDateTime};

use super::Context;
use crate::cli::{DbCommand, PruneArgs};
use crate::error::{Error, Result};
use crate::output;
use crate::schema::TOOL;
use crate::timestamp;

pub fn run(ctx: &Context, cmd: &DbCommand) -> ExitCode {
    match cmd {
        DbCommand::Store(c) => c.run(&TOOL, &ctx.config),
        DbCommand::Prune(args) => match prune(ctx, args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                output::error(ctx.json, &e);
                ExitCode::from(e.exit_code())
            }
        },
    }
}

#[derive(Debug, Serialize)]
struct Pruned {
    history: store::PruneReport,
    scans: store::PruneReport,
}

fn cutoff(days: u32) -> String {
    timestamp::to_stored(OffsetDateTime::now_utc() - Duration::days(i64::from(days)))
}

fn prune(ctx: &Context, args: &PruneArgs) -> Result<()> {
    let store = ctx.open()?;
    let history = store.prune(
        &Prune::older_than("port_history", "performedAt", cutoff(args.history_days)),
        args.dry_run,
    )?;
    let scans = store.prune(
        &Prune::older_than("active_scans", "scannedAt", cutoff(args.scan_days)),
        args.dry_run,
    )?;
    let report = Pruned { history, scans };
    if ctx.json {
        output::json(&report);
    } else {
        let verb = if args.dry_run {
            "Would delete"
        } else {
            "Deleted"
        };
        output::text(&format!(
            "{verb} {} history row(s) older than {} days and {} scan row(s) older than {} days.\n",
            report.history.rows, args.history_days, report.scans.rows, args.scan_days
        ));
    }
    Ok::<_, Error>(())
}
