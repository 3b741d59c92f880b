//! `portman export [FILE|-]`: every reservation as versioned JSON with a checksum, also kept in the
//! `configurations` table.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Context;
use crate::cli::ExportArgs;
use crate::configurations::{self, Configuration};
use crate::error::{Error, Result};
use crate::history::current_user;
use crate::output;
use crate::ports::{self, Filter, Status};
use crate::transfer;

pub fn run(ctx: &Context, args: &ExportArgs) -> Result<u8> {
    let target: Option<PathBuf> = args
        .file
        .clone()
        .or_else(|| args.output.clone())
        .filter(|p| p.as_os_str() != "-");
    if let Some(path) = &target
        && path.exists()
        && !args.force
    {
        return Err(Error::Io {
            path: path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the file exists; pass --force to overwrite it or choose another name",
            ),
        });
    }
    let store = ctx.open()?;
    let user = current_user();
    let (doc, count) = store.write(|tx| {
        let rows = ports::list(
            tx,
            &Filter {
                statuses: vec![Status::Reserved, Status::InUse],
                ..Filter::default()
            },
        )?;
        let doc = transfer::export_document(&rows, &user)?;
        let name = args.name.clone().unwrap_or_else(|| {
            target.as_deref().and_then(Path::file_name).map_or_else(
                || "export".to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        });
        let data = doc.to_string();
        configurations::save(
            tx,
            &Configuration {
                name: &name,
                description: args.description.as_deref(),
                data: &data,
                version: transfer::VERSION,
                created_by: &user,
                checksum: doc["checksum"].as_str(),
            },
        )?;
        Ok::<_, Error>((doc, rows.len()))
    })?;
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| Error::Other(format!("could not format the export: {e}")))?
        + "\n";
    match &target {
        None => output::text(&text),
        Some(path) => {
            write_file(path, text.as_bytes())?;
            let checksum = doc["checksum"].as_str().unwrap_or_default();
            if ctx.json {
                output::json(&serde_json::json!({
                    "file": path, "count": count, "checksum": checksum,
                    "version": transfer::VERSION,
                }));
            } else {
                output::text(&format!(
                    "Exported {count} reservation(s) to {} ({checksum})\n",
                    path.display()
                ));
            }
        }
    }
    Ok(0)
}

/// Writes `bytes` to a temp file beside `path`, flushes it, and renames it into place, so a crash
/// never leaves half an export under the real name.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map_or_else(|| "export".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}
