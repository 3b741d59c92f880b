//! The command line, as clap types only: the seed's spellings for the admin commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The Portunus control plane: users, grants, rules and audit for a fleet of forwarding clients.
#[derive(Debug, Parser)]
#[command(name = "portunus-server", version, after_long_help = store::cli::EXIT_STATUS_HELP)]
pub struct Cli {
    /// Data directory holding state.db, server.toml, server.crt and server.key
    /// [env: PORTUNUS_DATA_DIR] [default: $XDG_STATE_HOME/portunus, or ~/.local/state/portunus]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: operator API, control listener for clients, metrics.
    Serve(ServeArgs),
    /// Create the first superadmin with the setup token that `serve` printed; saves their API token.
    Setup(crate::admin::SetupArgs),
    /// Add a user (admin CLI over the API).
    UserAdd(crate::admin::UserAddArgs),
    /// List users.
    UserList(crate::admin::Conn),
    /// Remove a user with their tokens, grants and rules.
    UserRemove(crate::admin::KeyArgs),
    /// Grant a user a port range on a client.
    GrantAdd(crate::admin::GrantAddArgs),
    /// List grants.
    GrantList(crate::admin::GrantListArgs),
    /// Revoke a grant (its no-longer-allowed rules go with it).
    GrantRevoke(crate::admin::KeyArgs),
    /// Push a forwarding rule to a client.
    PushRule(crate::admin::PushRuleArgs),
    /// List rules.
    ListRules(crate::admin::ListRulesArgs),
    /// Remove a rule.
    RemoveRule(crate::admin::KeyArgs),
    /// Create a client and print its one-time enrollment URI (or a new one with --client).
    EnrollClient(crate::admin::EnrollArgs),
    /// List clients.
    ListClients(crate::admin::Conn),
    /// Revoke a client: its token stops working and its session ends.
    Revoke(crate::admin::KeyArgs),
    /// Page through the audit log.
    AuditLog(crate::admin::AuditArgs),
    /// Create the data directory and state.db with the current schema (serve does it on first start).
    Init(InitArgs),
    /// Online backup of state.db to a new file (never overwrites).
    Backup(store::cli::BackupArgs),
    /// Replace state.db with a validated backup (refused while a server runs).
    Restore(store::cli::RestoreArgs),
    /// Delete state.db, -wal, -shm and its lock (dry run without --confirm); server.crt/key/toml stay.
    Reset(store::cli::ResetArgs),
    /// The durable audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check, vacuum, optimize and migrate the database.
    #[command(subcommand)]
    Db(store::cli::DbCommand),
    /// Print a shell completion script.
    Completions(store::cli::CompletionsArgs),
}

/// `portunus-server serve`
#[derive(Debug, Args)]
#[command(
    after_help = "Listeners default to loopback: API 127.0.0.1:7870, control 127.0.0.1:7871, metrics 127.0.0.1:7872.\nSet control_listen = \"0.0.0.0:7871\" (and public_host) in <data-dir>/server.toml for a real fleet."
)]
pub struct ServeArgs {
    /// Operator API address [default: 127.0.0.1:7870]
    #[arg(long, value_name = "ADDR")]
    pub api_listen: Option<String>,
    /// Control listener address that clients dial (TLS) [default: 127.0.0.1:7871]
    #[arg(long, value_name = "ADDR")]
    pub control_listen: Option<String>,
    /// Prometheus metrics address, or `off` [default: 127.0.0.1:7872]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Host name or address clients use to reach the control listener (in enrollment URIs).
    #[arg(long, value_name = "HOST")]
    pub public_host: Option<String>,
    /// Allow the plain-HTTP API and metrics on a non-loopback address.
    #[arg(long)]
    pub api_allow_remote: bool,
}

/// `portunus-server init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `portunus-server audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Delete audit rows older than a moment, then hand the space back to the filesystem.
    Prune(PruneArgs),
}

/// `portunus-server audit prune`
#[derive(Debug, Args)]
#[command(
    after_help = "EXAMPLES:\n  portunus-server audit prune --before 2026-05-01T00:00:00Z --dry-run\n  portunus-server audit prune --before 2026-05-01T00:00:00Z"
)]
pub struct PruneArgs {
    /// Delete rows recorded before this moment (RFC 3339, e.g. 2026-05-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub before: i64,
    /// Count what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// An RFC 3339 moment as Unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let at =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
            .map_err(|_| format!("'{text}' is not an RFC 3339 time (e.g. 2026-05-01T00:00:00Z)"))?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("'{text}' is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn prune_times_are_rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_rfc3339("2026-05-01T02:00:00+02:00").unwrap(),
            parse_rfc3339("2026-05-01T00:00:00Z").unwrap()
        );
        assert!(parse_rfc3339("2026-05-01").is_err());
    }
}
