//! `cpm`: parse the command line, run the command, exit with its documented status.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: cpm::cli::Cli = store::cli::parse_args();
    cpm::commands::run(cli)
}
