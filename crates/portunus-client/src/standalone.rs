//! `portunus-standalone -c portunus.toml [--check]`: the forwarder without a control plane.
//!
//! For a single box, a server is overhead: the same forwarder runs from a TOML file
//! ([`crate::config`]). The file is checked completely before anything listens (exit 2 with
//! every error), `--check` only checks, SIGHUP re-reads the file and reconciles (unchanged rules
//! keep their connections; an invalid file keeps the running set and logs why), and SIGTERM or
//! SIGINT stop cleanly with status 0.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use portunus_core::forward::{Forwarder, ForwarderConfig};
use portunus_core::wire::{RuleSpec, RuleState};

use crate::events::emit;
use crate::exit;
use crate::signals::{Request, Signals};

const FORMAT_HELP: &str = r#"Configuration file (TOML): one [[rule]] table per forwarding rule.

  [[rule]]
  id = "web"               # optional; default rule-<number>, counting from 1
  protocol = "tcp"         # tcp (default) | udp | tcp+udp
  listen = "8080"          # or "8000-8010" (at most 1024 ports), or 8080
  listen_addr = "0.0.0.0"  # optional (default 0.0.0.0; "::" listens on IPv6 and IPv4)
  targets = ["10.0.0.5:80", { host = "b.internal", port = 80, priority = 1, proxy_protocol = "v2" }]
  bandwidth_bps = 1000000  # optional caps: bandwidth_bps, new_conn_per_sec, max_connections

Targets are "host:port" ("[::1]:80" for IPv6) or tables with host, port, priority (0-255,
lower first; equal priorities share load) and proxy_protocol (none, v1, v2). A rule has 1 to 8
targets. With a port range, each listen port maps to the same offset from each target's port.
Ids must be unique and listen ports of rules on the same transport (TCP, UDP) must not overlap.

Signals: SIGHUP re-reads the file (an invalid file keeps the running rules); SIGTERM/SIGINT stop.
Exit status: 0 ok (or stopped by a signal), 2 invalid configuration, 1 other failures."#;

/// Runs forwarding rules from a TOML file, without a control server.
#[derive(Debug, Parser)]
#[command(name = "portunus-standalone", version, after_long_help = FORMAT_HELP)]
pub struct Cli {
    /// The configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Only check the file: print "ok: N rules" (exit 0) or every error (exit 2).
    #[arg(long)]
    check: bool,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli: Cli = store::cli::parse_args();
    ExitCode::from(run_cli(&cli))
}

fn print_errors(path: &Path, errors: &[String]) {
    for e in errors {
        eprintln!("error: {}: {e}", path.display());
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "rule" } else { "rules" }
}

fn run_cli(cli: &Cli) -> u8 {
    let rules = match crate::config::load(&cli.config) {
        Ok(rules) => rules,
        Err(errors) => {
            print_errors(&cli.config, &errors);
            eprintln!(
                "{}: {} error{}",
                cli.config.display(),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            return exit::INVALID_CONFIG;
        }
    };
    if cli.check {
        println!("ok: {} {}", rules.len(), plural(rules.len()));
        return exit::OK;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("portunus-standalone")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    let code = rt.block_on(serve(&cli.config, rules));
    rt.shutdown_timeout(Duration::from_secs(2));
    code
}

async fn apply(forwarder: &Forwarder, rules: &[RuleSpec], reason: &str) {
    let statuses = forwarder.apply(rules).await;
    let active = statuses
        .iter()
        .filter(|s| s.state == RuleState::Active)
        .count();
    emit(
        "rules_applied",
        &[
            ("active", &active),
            ("failed", &(statuses.len() - active)),
            ("source", &reason),
        ],
    );
    for s in statuses.iter().filter(|s| s.state == RuleState::Failed) {
        emit(
            "rule_failed",
            &[
                ("rule", &s.rule_id),
                ("reason", &s.reason.as_deref().unwrap_or("unknown")),
            ],
        );
    }
}

/// Runs `rules` until SIGTERM/SIGINT, reloading `path` on SIGHUP.
pub async fn serve(path: &Path, rules: Vec<RuleSpec>) -> u8 {
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return exit::FAILURE;
        }
    };
    let forwarder = Forwarder::new(ForwarderConfig::default());
    emit(
        "starting",
        &[
            ("config", &path.display()),
            ("rules", &rules.len()),
            ("version", &env!("CARGO_PKG_VERSION")),
        ],
    );
    apply(&forwarder, &rules, "startup").await;
    let mut running = rules;
    loop {
        match signals.next().await {
            Request::Stop(name) => {
                forwarder.shutdown().await;
                emit("shutdown", &[("signal", &name)]);
                return exit::OK;
            }
            Request::Reload => match crate::config::load(path) {
                Ok(rules) if rules == running => {
                    emit("reload_unchanged", &[("rules", &rules.len())]);
                }
                Ok(rules) => {
                    apply(&forwarder, &rules, "reload").await;
                    running = rules;
                }
                Err(errors) => {
                    emit(
                        "reload_failed",
                        &[("errors", &errors.len()), ("kept_rules", &running.len())],
                    );
                    print_errors(path, &errors);
                }
            },
        }
    }
}
