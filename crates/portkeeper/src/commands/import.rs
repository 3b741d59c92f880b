//! `portman import FILE [--merge|--replace] [--dry-run]`: validate everything, show the difference,
//! then apply it in one transaction.

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use super::Context;
use crate::cli::ImportArgs;
use crate::configurations::{self, Configuration};
use crate::error::{Error, Result};
use crate::history::{self, Action, Actor};
use crate::legacy;
use crate::output;
use crate::ports::{self, Filter, Status, Upserted};
use crate::transfer::{self, Diff, Parsed, Source};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    source: Source,
    mode: &'static str,
    dry_run: bool,
    diff: &'a Diff,
    imported: usize,
    released: usize,
}

/// Reads FILE (or stdin) as JSON, or as a database when it starts with the SQLite header.
fn read(path: &Path) -> Result<Parsed> {
    if path.as_os_str() == "-" {
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(Error::Usage(
                "give the file to import (`portman import full-backup.json`), or pipe it in".into(),
            ));
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::io("<stdin>", e))?;
        return transfer::parse_json(&text);
    }
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(format!(
            "{} does not exist; give the path of a `portman export` file",
            path.display()
        )),
        _ => Error::io(path, e),
    })?;
    if bytes.starts_with(store::SQLITE_HEADER) {
        return legacy::read_database(path);
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::InvalidData(format!(
            "{} is neither JSON (UTF-8 text) nor an SQLite database",
            path.display()
        ))
    })?;
    transfer::parse_json(&text)
}

pub fn run(ctx: &Context, args: &ImportArgs) -> Result<u8> {
    let parsed = read(&args.file)?;
    let replace = args.replace;
    let mode = if replace { "replace" } else { "merge" };
    let store = ctx.open()?;
    let actor = Actor::current("import");
    let source_name = args.file.display().to_string();
    let (diff, imported, released) = store.write(|tx| {
        let current = ports::list(
            tx,
            &Filter {
                statuses: vec![Status::Reserved, Status::InUse],
                ..Filter::default()
            },
        )?;
        let diff = transfer::diff(&parsed.rows, &current, replace);
        if args.dry_run {
            return Ok((diff, 0, 0));
        }
        if !replace && !diff.conflicts.is_empty() {
            let list = diff
                .conflicts
                .iter()
                .map(|(p, c)| format!("{p} (held by '{}', file says '{}')", c.current_project, c.file_project))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::Conflict(format!(
                "the import gives ports held by other projects to new ones: {list}. Nothing was imported; release those ports first, or use --replace to let the file win"
            )));
        }
        let details = format!("from {source_name}");
        let mut imported = 0;
        for row in &parsed.rows {
            if diff.unchanged.contains(&row.number) {
                continue;
            }
            match ports::upsert(tx, row)? {
                Upserted::Inserted => history::record(
                    tx,
                    row.number,
                    Action::Reserved,
                    Some(&row.project_name),
                    row.description.as_deref(),
                    &actor,
                    &details,
                )?,
                Upserted::Updated => history::annotate(tx, row.number, &actor, &details)?,
            }
            imported += 1;
        }
        for port in &diff.removed {
            ports::release(tx, *port)?;
            history::annotate(tx, *port, &actor, &format!("not in {source_name} (--replace)"))?;
        }
        let name = format!("import: {source_name}");
        let description = format!("{mode} import of {} reservation(s)", parsed.rows.len());
        let data = serde_json::to_string(&parsed.rows).unwrap_or_default();
        configurations::save(
            tx,
            &Configuration {
                name: &name,
                description: Some(&description),
                data: &data,
                version: parsed.version.as_deref().unwrap_or("database"),
                created_by: &actor.user,
                checksum: parsed.checksum.as_deref(),
            },
        )?;
        let released = diff.removed.len();
        Ok::<_, Error>((diff, imported, released))
    })?;
    let report = Report {
        source: parsed.source,
        mode,
        dry_run: args.dry_run,
        diff: &diff,
        imported,
        released,
    };
    if ctx.json {
        output::json(&report);
    } else {
        output::text(&human(&report));
    }
    Ok(0)
}

fn human(r: &Report<'_>) -> String {
    let d = r.diff;
    let mut text = String::new();
    let list = |ports: &mut dyn Iterator<Item = String>| ports.collect::<Vec<_>>().join(" ");
    if !d.added.is_empty() {
        text.push_str(&format!(
            "+ add      {}\n",
            list(&mut d.added.iter().map(|p| p.to_string()))
        ));
    }
    for (port, fields) in &d.changed {
        text.push_str(&format!("~ update   {port} ({})\n", fields.join(", ")));
    }
    for (port, c) in &d.conflicts {
        let verb = if r.mode == "replace" {
            "take over"
        } else {
            "CONFLICT "
        };
        text.push_str(&format!(
            "! {verb} {port}: held by '{}', file says '{}'\n",
            c.current_project, c.file_project
        ));
    }
    if !d.removed.is_empty() {
        text.push_str(&format!(
            "- release  {}\n",
            list(&mut d.removed.iter().map(|p| p.to_string()))
        ));
    }
    if !d.unchanged.is_empty() {
        text.push_str(&format!("= same     {} port(s)\n", d.unchanged.len()));
    }
    if r.dry_run {
        text.push_str("Dry run: nothing was changed.\n");
    } else {
        text.push_str(&format!(
            "Imported {} reservation(s), released {} ({} import).\n",
            r.imported, r.released, r.mode
        ));
    }
    text
}
