//! `llama-dashboard`: parse the command line, run the command, exit with its documented status.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: llama_dashboard::cli::Cli = store::cli::parse_args();
    llama_dashboard::commands::run(cli)
}
