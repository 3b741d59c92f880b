//! `portman release`: give ports back, by port, project, tag, all, or the stale ones.

use serde::Serialize;

use super::Context;
use crate::cli::ReleaseArgs;
use crate::error::{Error, Result};
use crate::history::{self, Actor};
use crate::output;
use crate::port::Port;
use crate::ports::{self, Filter, Status};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Released {
    port: Port,
    /// `released`, or `not-reserved` for a named port nobody held.
    status: &'static str,
    project_name: Option<String>,
}

pub fn run(ctx: &Context, args: &ReleaseArgs) -> Result<u8> {
    let selectors = usize::from(!args.ports.is_empty())
        + usize::from(args.project.is_some())
        + usize::from(args.tag.is_some())
        + usize::from(args.all)
        + usize::from(args.stale);
    if selectors == 0 {
        return Err(Error::Usage(
            "say what to release: PORT…, --project P, --tag T, --stale or --all".into(),
        ));
    }
    if selectors > 1 {
        return Err(Error::Usage(
            "give only one of PORT…, --project, --tag, --stale and --all".into(),
        ));
    }
    let store = ctx.open()?;
    if args.stale {
        // Stale means "nothing uses it": bring stored statuses up to date first.
        super::observe_held(
            &store,
            &Filter::default(),
            crate::live::ProbeUnseen::No,
            "release",
        )?;
    }
    let actor = Actor::current("release");
    let results = store.write(|tx| {
        let targets: Vec<(Port, Option<String>)> = if !args.ports.is_empty() {
            let mut out = Vec::new();
            for port in &args.ports {
                let row = ports::get(tx, *port)?.filter(|r| r.status.is_held());
                out.push((*port, row.map(|r| r.project_name)));
            }
            out
        } else if args.stale {
            let mut stmt = tx.prepare(
                "SELECT number, projectName FROM ports
                 WHERE status = 'reserved' AND julianday('now') - julianday(reservedAt) > ?1
                 ORDER BY number",
            )?;
            let rows = stmt.query_map([args.days], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (n, project) = row?;
                if let Some(p) = Port::new(n) {
                    out.push((p, Some(project)));
                }
            }
            out
        } else {
            let filter = Filter {
                statuses: vec![Status::Reserved, Status::InUse],
                project: args.project.clone(),
                tag: args.tag.clone(),
                ports: Vec::new(),
            };
            ports::list(tx, &filter)?
                .into_iter()
                .map(|r| (r.number, Some(r.project_name)))
                .collect()
        };
        let mut results = Vec::new();
        for (port, project) in targets {
            if project.is_some() {
                ports::release(tx, port)?;
                history::annotate(tx, port, &actor, "")?;
                results.push(Released {
                    port,
                    status: "released",
                    project_name: project,
                });
            } else {
                results.push(Released {
                    port,
                    status: "not-reserved",
                    project_name: None,
                });
            }
        }
        Ok::<_, Error>(results)
    })?;

    if results.is_empty() {
        let what = if let Some(p) = &args.project {
            format!("project '{p}' holds no ports")
        } else if let Some(t) = &args.tag {
            format!("no reserved port carries tag '{t}'")
        } else if args.stale {
            return report(ctx, &results, "No stale reservations.\n");
        } else {
            return report(ctx, &results, "Nothing is reserved.\n");
        };
        return Err(Error::NotFound(format!(
            "{what}; nothing was released (see `portman list`)"
        )));
    }
    let mut text = String::new();
    for r in &results {
        match r.status {
            "released" => text.push_str(&format!(
                "Released port {} ({})\n",
                r.port,
                r.project_name.as_deref().unwrap_or("-")
            )),
            _ => text.push_str(&format!("Port {} was not reserved\n", r.port)),
        }
    }
    report(ctx, &results, &text)
}

fn report(ctx: &Context, results: &[Released], text: &str) -> Result<u8> {
    if ctx.json {
        output::json(&serde_json::json!({ "results": results }));
    } else {
        output::text(text);
    }
    Ok(0)
}
