//! `portman summary`: the documented views `v_port_summary` and `v_project_ports`, after bringing
//! statuses up to date.

use serde::Serialize;

use super::{Context, observe_held};
use crate::error::{Error, Result};
use crate::live::ProbeUnseen;
use crate::output::{self, Table};
use crate::ports::Filter;

#[derive(Debug, Serialize)]
struct Counts {
    reserved_count: i64,
    in_use_count: i64,
    free_count: i64,
    total_count: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Project {
    project_name: String,
    ports: String,
    port_count: i64,
    active_count: i64,
}

pub fn run(ctx: &Context) -> Result<u8> {
    let store = ctx.open()?;
    observe_held(&store, &Filter::default(), ProbeUnseen::No, "summary")?;
    let (counts, projects) = store.snapshot(|c| {
        let counts = c.query_row(
            "SELECT reserved_count, in_use_count, free_count, total_count FROM v_port_summary",
            [],
            |r| {
                Ok(Counts {
                    reserved_count: r.get(0)?,
                    in_use_count: r.get(1)?,
                    free_count: r.get(2)?,
                    total_count: r.get(3)?,
                })
            },
        )?;
        let mut stmt = c.prepare(
            "SELECT projectName, ports, port_count, active_count FROM v_project_ports
             ORDER BY projectName",
        )?;
        let projects = stmt
            .query_map([], |r| {
                Ok(Project {
                    project_name: r.get(0)?,
                    ports: r.get(1)?,
                    port_count: r.get(2)?,
                    active_count: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok::<_, Error>((counts, projects))
    })?;
    if ctx.json {
        output::json(&serde_json::json!({ "summary": counts, "projects": projects }));
        return Ok(0);
    }
    let mut text = format!(
        "{} reserved, {} in use, {} released ({} known ports)\n",
        counts.reserved_count, counts.in_use_count, counts.free_count, counts.total_count
    );
    if !projects.is_empty() {
        let mut table = Table::new(&["PROJECT", "PORTS", "COUNT", "ACTIVE"]);
        for p in &projects {
            table.row(vec![
                p.project_name.clone(),
                p.ports.clone(),
                p.port_count.to_string(),
                p.active_count.to_string(),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    output::text(&text);
    Ok(0)
}
