//! `portman list`: reservations with their live status and listeners, from one kernel snapshot.

use super::{Context, observe_held};
use crate::cli::ListArgs;
use crate::error::Result;
use crate::live::ProbeUnseen;
use crate::output::{self, Table, or_dash};
use crate::ports::{Filter, Status};

pub fn run(ctx: &Context, args: &ListArgs) -> Result<u8> {
    let store = ctx.open()?;
    let mut statuses = vec![Status::Reserved, Status::InUse];
    let include_free = args.all || args.status.contains(&Status::Free);
    if include_free {
        statuses.push(Status::Free);
    }
    let filter = Filter {
        statuses,
        project: args.project.clone(),
        tag: args.tag.clone(),
        ports: Vec::new(),
    };
    let mut observed = observe_held(&store, &filter, ProbeUnseen::No, "list")?;
    // Rows auto-released just now are gone from the list, as they are from the table's held set.
    observed.retain(|o| include_free || o.reservation.status.is_held());
    if !args.status.is_empty() {
        observed.retain(|o| args.status.contains(&o.reservation.status));
    }
    if ctx.json {
        output::json(&observed);
        return Ok(0);
    }
    if observed.is_empty() {
        output::text("No reservations. Reserve one with `portman reserve 3000 -n my-app`.\n");
        return Ok(0);
    }
    let mut table = Table::new(&[
        "PORT",
        "STATUS",
        "PROJECT",
        "PID",
        "PROCESS",
        "LISTENING",
        "DESCRIPTION",
        "TAGS",
    ]);
    for o in &observed {
        let r = &o.reservation;
        let mut listening: Vec<String> = o
            .listeners
            .iter()
            .map(|s| format!("{} {}", s.proto, s.endpoint()))
            .collect();
        listening.dedup();
        if o.hidden_holder {
            listening.push("(not visible)".into());
        }
        let (pid, process) = if r.status == Status::InUse {
            (or_dash(r.pid), or_dash(r.process_name.as_deref()))
        } else {
            ("-".into(), "-".into())
        };
        table.row(vec![
            r.number.to_string(),
            r.status.to_string(),
            r.project_name.clone(),
            pid,
            process,
            if listening.is_empty() {
                "-".into()
            } else {
                listening.join(", ")
            },
            or_dash(r.description.as_deref()),
            if r.tags.is_empty() {
                "-".into()
            } else {
                r.tags.join(",")
            },
        ]);
    }
    output::text(&table.render());
    Ok(0)
}
