//! `portman reserve PORT… -n PROJECT`: reserve ports for a project, all or none.

use serde::Serialize;

use super::{Context, describe_listeners, snapshot_of, template};
use crate::cli::ReserveArgs;
use crate::error::Result;
use crate::history::Actor;
use crate::live::{self, Observed, ProbeUnseen};
use crate::output;
use crate::ports;
use crate::request::{self, Reserved as Outcome};

#[derive(Debug, Serialize)]
struct Reserved {
    /// `reserved` for a new reservation, `updated` when the project already held the port.
    result: Outcome,
    #[serde(flatten)]
    observed: Observed,
}

pub fn run(ctx: &Context, args: &ReserveArgs) -> Result<u8> {
    let template = template(&args.fields)?;
    let project = args.fields.project.trim().to_string();
    let mut ports_asked = args.ports.clone();
    ports_asked.sort();
    ports_asked.dedup();
    let store = ctx.open()?;
    let snapshot = snapshot_of(ports_asked.iter().map(|p| p.get()))?;
    let actor = Actor::current("reserve");
    let results = store.write(|tx| {
        ports_asked
            .iter()
            .map(|port| {
                Ok((
                    request::reserve(tx, *port, &project, &template, &actor)?,
                    *port,
                ))
            })
            .collect::<Result<Vec<_>>>()
    })?;

    // Show (and record) the live status of what was just reserved.
    let rows = store.read(|c| {
        ports::list(
            c,
            &ports::Filter {
                ports: ports_asked.clone(),
                ..ports::Filter::default()
            },
        )
    })?;
    let observed = live::observe(&store, &snapshot, rows, ProbeUnseen::Yes, "reserve")?;
    let out: Vec<Reserved> = results
        .iter()
        .filter_map(|(result, port)| {
            observed
                .iter()
                .find(|o| o.reservation.number == *port)
                .map(|o| Reserved {
                    result: *result,
                    observed: o.clone(),
                })
        })
        .collect();
    if ctx.json {
        output::json(&serde_json::json!({ "reservations": out }));
    } else {
        let mut text = String::new();
        for r in &out {
            let o = &r.observed;
            let verb = if r.result == Outcome::Updated {
                "Updated"
            } else {
                "Reserved"
            };
            text.push_str(&format!(
                "{verb} port {} for {}",
                o.reservation.number, o.reservation.project_name
            ));
            if let Some(d) = &o.reservation.description {
                text.push_str(&format!(" ({d})"));
            }
            text.push('\n');
            for line in describe_listeners(&o.listeners) {
                text.push_str(&format!("  in use now: {line}\n"));
            }
            if o.hidden_holder {
                text.push_str("  in use now by a process this user cannot see\n");
            }
        }
        output::text(&text);
    }
    Ok(0)
}
