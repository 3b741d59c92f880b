//! `portman request [COUNT] -n PROJECT`: allocate free ports atomically.

use super::{Context, template};
use crate::cli::{RequestArgs, SearchArgs};
use crate::error::{Error, Result};
use crate::history::Actor;
use crate::output;
use crate::port::PortRange;
use crate::request::{self, Request};
use crate::sockets::Snapshot;

/// The search range from `--start/--end`, checked.
pub fn range(search: &SearchArgs) -> Result<PortRange> {
    PortRange::new(search.start, search.end).map_err(Error::Usage)
}

/// A snapshot of the sockets in `range`. Owners are not needed to allocate, only which ports are bound.
pub fn snapshot_in(range: PortRange) -> Result<Snapshot> {
    Snapshot::take_unowned(|p| p >= range.start.get() && p <= range.end.get())
        .map_err(|e| Error::Scan(e.to_string()))
}

pub fn run(ctx: &Context, args: &RequestArgs) -> Result<u8> {
    let template = template(&args.fields)?;
    let range = range(&args.search)?;
    let req = Request {
        project: args.fields.project.trim().to_string(),
        count: usize::from(args.count),
        range,
        avoid: args.search.avoid.clone(),
        contiguous: args.contiguous,
        stable: args.search.stable,
        random: args.random,
        template,
    };
    let store = ctx.open()?;
    let snapshot = snapshot_in(range)?;
    let actor = Actor::current("request");
    let allocation = store.write(|tx| request::allocate(tx, &req, &snapshot, &actor))?;
    if ctx.json {
        output::json(&allocation);
    } else {
        let list = allocation
            .ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        // The ports alone on stdout when piped, so `PORT=$(portman request -n app)` works.
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            output::text(&format!(
                "Reserved {list} for {} ({} port{})\n",
                allocation.project,
                allocation.ports.len(),
                if allocation.ports.len() == 1 { "" } else { "s" }
            ));
        } else {
            output::text(&format!("{list}\n"));
        }
    }
    Ok(0)
}
