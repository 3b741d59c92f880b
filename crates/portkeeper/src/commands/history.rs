//! `portman history [PORT]`: who reserved, released, used and killed what, newest first.

use time::{Duration, OffsetDateTime};

use super::Context;
use crate::cli::HistoryArgs;
use crate::error::{Error, Result};
use crate::history::{self, Query};
use crate::output::{self, Table, or_dash};
use crate::timestamp;

/// `--since`: an age (`7d`, `24h`, `30m`, `2w`), a date (`2024-01-20`) or a timestamp.
pub fn parse_since(text: &str) -> Result<String> {
    let t = text.trim();
    if let Some(unit) = t.chars().last().filter(|c| "mhdw".contains(*c))
        && let Ok(n) = t[..t.len() - 1].parse::<i64>()
    {
        let age = match unit {
            'm' => Duration::minutes(n),
            'h' => Duration::hours(n),
            'd' => Duration::days(n),
            _ => Duration::weeks(n),
        };
        return Ok(timestamp::to_stored(OffsetDateTime::now_utc() - age));
    }
    let with_time = if t.len() == 10 {
        format!("{t} 00:00:00")
    } else {
        t.to_string()
    };
    timestamp::normalise(&with_time).ok_or_else(|| {
        Error::Usage(format!(
            "--since '{text}' is not an age (7d, 24h, 30m, 2w), a date (2024-01-20) or a timestamp"
        ))
    })
}

pub fn run(ctx: &Context, args: &HistoryArgs) -> Result<u8> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let store = ctx.open()?;
    let entries = store.read(|c| {
        history::list(
            c,
            &Query {
                port: args.port,
                project: args.project.clone(),
                since,
                action: args.action.clone(),
                limit: Some(args.limit),
            },
        )
    })?;
    if ctx.json {
        output::json(&entries);
        return Ok(0);
    }
    if entries.is_empty() {
        output::text("No history.\n");
        return Ok(0);
    }
    let mut table = Table::new(&["WHEN", "PORT", "ACTION", "PROJECT", "BY", "DETAILS"]);
    for e in &entries {
        table.row(vec![
            timestamp::to_rfc3339(&e.performed_at),
            e.port.to_string(),
            e.action.clone(),
            or_dash(e.project_name.as_deref()),
            or_dash(e.performed_by.as_deref()),
            or_dash(e.details.as_deref()),
        ]);
    }
    output::text(&table.render());
    Ok(0)
}
