//! `portman completions SHELL`: a completion script generated from the clap definitions.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Result;

pub fn run(args: &CompletionsArgs) -> Result<u8> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "portman", &mut std::io::stdout());
    Ok(0)
}
