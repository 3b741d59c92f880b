//! `portman`: parse the command line, run the command, exit with its documented status.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: portkeeper::cli::Cli = store::cli::parse_args();
    portkeeper::commands::run(cli)
}
