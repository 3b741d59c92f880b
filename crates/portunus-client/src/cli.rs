//! The `portunus-client` command line: `run` (the default), `enroll` and `completions`.
//!
//! The binary itself only calls [`main`]; keeping the definitions in the library lets the
//! tests and the completion generator see exactly what users see. Exit statuses follow
//! sysexits: 0 ok, 1 no bundle found, 64 usage (a bad URI), 69 server unreachable, 73 the bundle
//! cannot be written (or exists), 77 refused by the server (revoked, bad code), 78 an unusable
//! bundle.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use store::cli::{CompletionsArgs, print_failure};

use crate::agent::{self, Options};
use crate::bundle;
use crate::enroll::{self, EnrollError};
use crate::exit;
use crate::paths::{self, Env};
use crate::signals::Signals;
use crate::state::StateFile;
use crate::uri::EnrollUri;

/// Environment variable overriding the usage report interval in seconds (for tests).
pub const REPORT_SECS_VAR: &str = "PORTUNUS_CLIENT_REPORT_SECS";
/// Environment variable overriding the ping interval in seconds (for tests).
pub const PING_SECS_VAR: &str = "PORTUNUS_CLIENT_PING_SECS";

/// Portunus edge client: forwards the TCP/UDP ports its control server assigns to it.
///
/// Without a subcommand it runs (like `portunus-client run`).
#[derive(Debug, Parser)]
#[command(
    name = "portunus-client",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Exit status: 0 ok, 1 no bundle found, 64 usage error, 69 server unreachable, \
                  73 cannot write the bundle, 77 refused by the server (revoked, invalid code), \
                  78 unusable bundle."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to the server and forward (the default).
    Run(RunArgs),
    /// Redeem an enrollment URI for this client's bundle.
    Enroll(EnrollArgs),
    /// Show the running client's rules with live counters.
    Status(StatusArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

/// `run` options.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// The client bundle. Otherwise: $PORTUNUS_CLIENT_BUNDLE,
    /// $XDG_CONFIG_HOME/portunus/client.bundle.json, $HOME/.config/portunus/client.bundle.json,
    /// ./client.bundle.json (the first that exists).
    #[arg(long, value_name = "PATH")]
    bundle: Option<PathBuf>,
    /// Where the last applied rules are kept (default $XDG_STATE_HOME/portunus-client, else
    /// ~/.local/state/portunus-client).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// `status` options.
#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Print the snapshot as JSON.
    #[arg(long)]
    json: bool,
}

/// `enroll` options.
#[derive(Debug, Args)]
struct EnrollArgs {
    /// portunus://host:port/enroll?pin=sha256:…&code=pen_… (quote it in the shell).
    uri: String,
    /// Where to write the bundle (default $XDG_CONFIG_HOME/portunus/client.bundle.json, else
    /// $HOME/.config/portunus/client.bundle.json).
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Replace an existing bundle.
    #[arg(long)]
    force: bool,
    /// A name for this client, if the operator gave it none.
    #[arg(long)]
    name: Option<String>,
    /// Print {client_id, bundle} as JSON.
    #[arg(long)]
    json: bool,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli: Cli = store::cli::parse_args();
    match cli.command {
        Some(Command::Completions(args)) => args.run::<Cli>("portunus-client"),
        Some(Command::Enroll(args)) => ExitCode::from(enroll_command(&args)),
        Some(Command::Run(args)) => ExitCode::from(run_command(&args)),
        Some(Command::Status(args)) => ExitCode::from(status_command(&args)),
        None => ExitCode::from(run_command(&cli.run)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("portunus-client")
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            exit::FAILURE
        })
}

fn enroll_command(args: &EnrollArgs) -> u8 {
    let fail = |e: EnrollError| {
        print_failure(args.json, &e.code(), &e.to_string());
        e.exit_code()
    };
    let uri = match EnrollUri::parse(&args.uri) {
        Ok(uri) => uri,
        Err(e) => return fail(e.into()),
    };
    let Some(out) = args
        .out
        .clone()
        .or_else(|| paths::default_bundle_path(&Env::from_process()))
    else {
        return fail(EnrollError::NoDefaultPath);
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(enroll::enroll(&uri, &out, args.force, args.name.as_deref())) {
        Ok(done) => {
            if args.json {
                println!(
                    "{}",
                    json!({"client_id": done.bundle.client_id, "bundle": done.path})
                );
            } else {
                println!(
                    "Enrolled as {} with {}.\nBundle written to {} (mode 0600).\nStart forwarding with: portunus-client run --bundle {}",
                    done.bundle.client_id,
                    done.bundle.server,
                    done.path.display(),
                    done.path.display()
                );
            }
            exit::OK
        }
        Err(e) => fail(e),
    }
}

fn seconds_from_env(var: &str) -> Option<Duration> {
    let text = std::env::var(var).ok()?;
    match text.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() => Some(Duration::from_secs_f64(secs)),
        _ => {
            eprintln!("warning: ignoring {var}={text} (expected a positive number of seconds)");
            None
        }
    }
}

/// The bundle (and its path) and the state directory of `run` and `status`.
fn locate(args: &RunArgs, json: bool) -> Result<(PathBuf, bundle::Bundle, PathBuf), u8> {
    let env = Env::from_process();
    let (path, bundle) = bundle::resolve(args.bundle.as_deref(), &env).map_err(|e| {
        print_failure(json, e.code(), &e.to_string());
        e.exit_code()
    })?;
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| paths::default_state_dir(&env))
        .ok_or_else(|| {
            print_failure(
                json,
                "no_state_dir",
                "cannot tell where to keep the rules: set --state-dir, $XDG_STATE_HOME or $HOME",
            );
            exit::USAGE
        })?;
    Ok((path, bundle, state_dir))
}

fn status_command(args: &StatusArgs) -> u8 {
    let (_, bundle, state_dir) = match locate(&args.run, args.json) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let path = crate::status::path(&state_dir, &bundle.client_id);
    match crate::status::read(&path) {
        Ok(snapshot) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&snapshot).unwrap_or_default()
                );
            } else {
                print!(
                    "{}",
                    crate::status::render(&snapshot, crate::usage::now_ms())
                );
            }
            exit::OK
        }
        Err(message) => {
            print_failure(args.json, "no_status", &message);
            exit::UNAVAILABLE
        }
    }
}

fn run_command(args: &RunArgs) -> u8 {
    let (path, bundle, state_dir) = match locate(args, false) {
        Ok(found) => found,
        Err(code) => return code,
    };
    crate::events::emit("bundle", &[("path", &path.display())]);
    let state = StateFile::new(&state_dir, &bundle.client_id);
    let mut opts = Options::new(bundle, state);
    if let Some(d) = seconds_from_env(REPORT_SECS_VAR) {
        opts.report_interval = d;
    }
    if let Some(d) = seconds_from_env(PING_SECS_VAR) {
        opts.ping_interval = d;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let code = rt.block_on(async move {
        let mut signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot install signal handlers: {e}");
                return exit::FAILURE;
            }
        };
        agent::run(opts, &mut signals).await
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    code
}
