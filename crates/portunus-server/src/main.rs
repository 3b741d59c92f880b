//! `portunus-server`: parse the command line, run the command, exit with its documented status.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: portunus_server::cli::Cli = store::cli::parse_args();
    portunus_server::commands::run(cli)
}
