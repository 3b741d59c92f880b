//! `portman stale`: the seed's "Find Stale Reservations" query, after bringing statuses up to date.

use serde::Serialize;

use super::{Context, observe_held};
use crate::cli::StaleArgs;
use crate::error::Result;
use crate::live::ProbeUnseen;
use crate::output::{self, Table};
use crate::ports::Filter;
use crate::timestamp;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Stale {
    number: i64,
    project_name: String,
    #[serde(serialize_with = "timestamp::rfc3339::serialize")]
    reserved_at: String,
    days_old: f64,
}

pub fn run(ctx: &Context, args: &StaleArgs) -> Result<u8> {
    let store = ctx.open()?;
    // A reservation whose server runs right now is not stale, whatever the table said before.
    observe_held(&store, &Filter::default(), ProbeUnseen::No, "stale")?;
    let rows = store.read(|c| {
        let mut stmt = c.prepare(
            "SELECT number, projectName, reservedAt,
                    julianday('now') - julianday(reservedAt) as days_old
             FROM ports
             WHERE status = 'reserved'
               AND julianday('now') - julianday(reservedAt) > ?1
             ORDER BY days_old DESC",
        )?;
        let rows = stmt.query_map([args.days], |r| {
            Ok(Stale {
                number: r.get(0)?,
                project_name: r.get(1)?,
                reserved_at: r.get(2)?,
                days_old: r.get(3)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(crate::error::Error::from)
    })?;
    if ctx.json {
        output::json(&rows);
    } else if rows.is_empty() {
        output::text(&format!(
            "No reservation is older than {} days and unused.\n",
            args.days
        ));
    } else {
        let mut table = Table::new(&["PORT", "PROJECT", "RESERVED", "DAYS"]);
        for r in &rows {
            table.row(vec![
                r.number.to_string(),
                r.project_name.clone(),
                timestamp::to_rfc3339(&r.reserved_at),
                format!("{:.0}", r.days_old.floor()),
            ]);
        }
        output::text(&table.render());
        output::text("Release them with `portman release --stale`.\n");
    }
    Ok(0)
}
