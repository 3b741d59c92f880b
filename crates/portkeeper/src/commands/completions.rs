//! `portman man`: the manual page, generated from the clap definitions so it always matches the
//! CLI (completions come from `store::cli::CompletionsArgs`).

use clap::CommandFactory;

use std::path::{Path, PathBuf};

use crate::cli::{Cli, ManArgs};
use crate::error::{Error, Result};

/// Prints the manual page of `portman`, or writes the pages of it and every subcommand
/// (`portman-reserve.1`, …, as its SUBCOMMANDS section names them) into `--out`.
pub fn man(args: &ManArgs) -> Result<u8> {
    let mut command = Cli::command();
    command.build();
    let Some(dir) = &args.out else {
        crate::output::text(&page(command)?);
        return Ok(0);
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = vec![write_page(dir, "portman", command.clone())?];
    for sub in command.get_subcommands().filter(|c| c.get_name() != "help") {
        let name = format!("portman-{}", sub.get_name());
        let sub = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("portman {}", sub.get_name()));
        written.push(write_page(dir, &name, sub)?);
    }
    crate::output::text(&format!(
        "Wrote {} manual pages to {}\n",
        written.len(),
        dir.display()
    ));
    Ok(0)
}

fn page(command: clap::Command) -> Result<String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .map_err(|e| Error::io("<stdout>", e))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn write_page(dir: &Path, name: &str, command: clap::Command) -> Result<PathBuf> {
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page(command)?).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}
