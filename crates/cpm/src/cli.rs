//! The command line, as clap types only: what `cpm` accepts and the help it prints.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::access::Level;
use crate::config::Format;
use crate::error::EXIT_STATUS_HELP;
use crate::orgs::{Role, Sort};

const AFTER_HELP: &str = "\
EXAMPLES:
  cpm org create acme -d 'Acme Corp'
  cpm user add alice --email alice@example.com --key-file ~/.ssh/id_ed25519.pub
  cpm org member add acme alice --role admin
  cpm repo create acme/website
  cpm access grant bob acme/website write
  cpm access check bob acme/website
  git clone ~/.cpm/repos/acme/website.git

Files: ~/.cpm/cpm.db (--db, CPM_DB), ~/.cpm/config.toml (--config, CPM_CONFIG),
repositories under ~/.cpm/repos (repo_root in the config, CPM_REPO_ROOT).";

/// Host bare git repositories for users and organizations, with access levels.
#[derive(Debug, Parser)]
#[command(name = "cpm", version, after_help = AFTER_HELP, after_long_help = format!("{AFTER_HELP}\n\n{EXIT_STATUS_HELP}"))]
pub struct Cli {
    /// Database file [env: CPM_DB] [default: ~/.cpm/cpm.db]
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Configuration file [env: CPM_CONFIG] [default: ~/.cpm/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Output format (default: the config's `format`, else table).
    #[arg(long, short = 'o', global = true, value_enum)]
    pub format: Option<Format>,
    #[command(subcommand)]
    pub command: Command,
}

/// Every `cpm` subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Users and their SSH keys.
    #[command(subcommand)]
    User(UserCommand),
    /// Organizations and their members.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Repositories: create, list, show, rename, delete.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Direct access grants, and what a user may do on a repository.
    #[command(subcommand)]
    Access(AccessCommand),
    /// cpm's own SSH key pairs (for pushing to servers).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Servers repositories are replicated to.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Peer cpm servers (servers flagged as neighbors).
    #[command(subcommand)]
    Neighbors(NeighborsCommand),
    /// Push repositories to servers and neighbors (never overwriting refs that diverged there).
    Sync(SyncArgs),
    /// The audit log: who changed what, when.
    Log(LogArgs),
    /// OpenSSH mode: print authorized_keys lines that run `cpm shell` for every user key.
    AuthorizedKeys(AuthorizedKeysArgs),
    /// OpenSSH mode: the forced command; runs SSH_ORIGINAL_COMMAND if the key may.
    Shell(ShellArgs),
    /// The built-in SSH git server: public keys only; git fetch/push/archive, `info`, `repo list`.
    Serve(ServeArgs),
    /// Back up, restore, check and maintain the database.
    #[command(subcommand)]
    Db(store::cli::DbCommand),
    /// Print a shell completion script.
    Completions(store::cli::CompletionsArgs),
}

/// `cpm user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user, optionally with SSH keys.
    Add(UserAddArgs),
    /// List users.
    List,
    /// Show a user, their keys, organizations and repositories.
    Show(NameArg),
    /// Change a user's email or name.
    Update(UserUpdateArgs),
    /// Remove a user (their memberships, grants and keys go too).
    Remove(NameArg),
    /// A user's SSH keys.
    #[command(subcommand)]
    Key(UserKeyCommand),
}

/// A single name.
#[derive(Debug, Args)]
pub struct NameArg {
    /// The name.
    pub name: String,
}

/// `cpm user add`
#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// Username: letters, digits, '-' and '_'.
    pub username: String,
    /// Email address (optional).
    #[arg(long, default_value = "")]
    pub email: String,
    #[command(flatten)]
    pub keys: KeySource,
}

/// Where user keys come from.
#[derive(Debug, Args, Default)]
pub struct KeySource {
    /// An SSH public key line (repeat for several).
    #[arg(long = "key", value_name = "PUBLIC_KEY")]
    pub keys: Vec<String>,
    /// A public key file such as ~/.ssh/id_ed25519.pub (repeat for several).
    #[arg(long = "key-file", value_name = "PATH")]
    pub key_files: Vec<PathBuf>,
}

/// `cpm user update`
#[derive(Debug, Args)]
pub struct UserUpdateArgs {
    /// The user.
    pub username: String,
    /// New email ('' clears it).
    #[arg(long)]
    pub email: Option<String>,
    /// New username.
    #[arg(long)]
    pub rename: Option<String>,
}

/// `cpm user key …`
#[derive(Debug, Subcommand)]
pub enum UserKeyCommand {
    /// Add a key to a user.
    Add(UserKeyAddArgs),
    /// List a user's keys with their SHA256 fingerprints.
    List(NameArg),
    /// Remove a user's key by name or fingerprint.
    Remove(UserKeyRemoveArgs),
}

/// `cpm user key add`
#[derive(Debug, Args)]
pub struct UserKeyAddArgs {
    /// The user.
    pub username: String,
    #[command(flatten)]
    pub keys: KeySource,
    /// A name for the key (default: its comment).
    #[arg(long)]
    pub name: Option<String>,
}

/// `cpm user key remove`
#[derive(Debug, Args)]
pub struct UserKeyRemoveArgs {
    /// The user.
    pub username: String,
    /// The key's name or SHA256 fingerprint.
    pub key: String,
}

/// `cpm org …`
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization.
    Create(OrgCreateArgs),
    /// List organizations.
    List(OrgListArgs),
    /// Show an organization, its members and repositories.
    Show(NameArg),
    /// Change an organization's description.
    Update(OrgCreateArgs),
    /// Delete an organization, its repositories (moved to the trash) and memberships.
    Delete(DeleteArgs),
    /// Organization members.
    #[command(subcommand)]
    Member(MemberCommand),
}

/// `cpm org create`
#[derive(Debug, Args)]
pub struct OrgCreateArgs {
    /// Name: letters, digits, '-' and '_'.
    pub name: String,
    /// Description.
    #[arg(short, long, default_value = "")]
    pub description: String,
}

/// `cpm org list`
#[derive(Debug, Args)]
pub struct OrgListArgs {
    /// Sort order.
    #[arg(long, value_enum, default_value = "name")]
    pub sort: Sort,
}

/// Deleting something with directories.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The organization (or ORG/REPO).
    pub name: String,
    /// Remove directories instead of moving them to the trash.
    #[arg(long)]
    pub purge: bool,
}

/// `cpm org member …`
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a member, or change their role.
    Add(MemberAddArgs),
    /// Remove a member.
    Remove(MemberArgs),
    /// List members (by role, then username).
    List(MemberListArgs),
}

/// `cpm org member add`
#[derive(Debug, Args)]
pub struct MemberAddArgs {
    /// The organization.
    pub org: String,
    /// The user.
    pub username: String,
    /// Their role.
    #[arg(long, value_enum, default_value = "member")]
    pub role: Role,
}

/// `cpm org member remove`
#[derive(Debug, Args)]
pub struct MemberArgs {
    /// The organization.
    pub org: String,
    /// The user.
    pub username: String,
}

/// `cpm org member list`
#[derive(Debug, Args)]
pub struct MemberListArgs {
    /// The organization.
    pub org: String,
    /// Only this role.
    #[arg(long, value_enum)]
    pub role: Option<Role>,
}

/// `cpm repo …`
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create a bare repository ORG/NAME on disk and in the database.
    Create(RepoCreateArgs),
    /// List repositories (all, one organization's, or those a user can reach).
    List(RepoListArgs),
    /// Show a repository and who can reach it.
    Show(RepoArg),
    /// Rename a repository (directory and row together).
    Rename(RepoRenameArgs),
    /// Change a repository's description.
    Update(RepoCreateArgs),
    /// Delete a repository (its directory is moved to the trash unless --purge).
    Delete(DeleteArgs),
}

/// One repository.
#[derive(Debug, Args)]
pub struct RepoArg {
    /// ORG/NAME
    pub repo: String,
}

/// `cpm repo create`
#[derive(Debug, Args)]
pub struct RepoCreateArgs {
    /// ORG/NAME
    pub repo: String,
    /// Description.
    #[arg(short, long, default_value = "")]
    pub description: String,
}

/// `cpm repo list`
#[derive(Debug, Args)]
pub struct RepoListArgs {
    /// Only this organization's.
    #[arg(long)]
    pub org: Option<String>,
    /// Only those this user can reach (org membership or direct grant).
    #[arg(long)]
    pub user: Option<String>,
}

/// `cpm repo rename`
#[derive(Debug, Args)]
pub struct RepoRenameArgs {
    /// ORG/NAME
    pub repo: String,
    /// The new name (same organization).
    pub new_name: String,
}

/// `cpm access …`
#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Give a user direct access to a repository (or change it).
    Grant(GrantArgs),
    /// Take a user's direct access away.
    Revoke(RevokeArgs),
    /// List direct grants, on one repository or of one user.
    List(AccessListArgs),
    /// What may USER do on ORG/REPO, and why.
    Check(RevokeArgs),
}

/// `cpm access grant`
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The user.
    pub username: String,
    /// ORG/REPO
    pub repo: String,
    /// read, write or admin.
    #[arg(value_enum)]
    pub level: Level,
}

/// `cpm access revoke` / `check`
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The user.
    pub username: String,
    /// ORG/REPO
    pub repo: String,
}

/// `cpm access list`
#[derive(Debug, Args)]
pub struct AccessListArgs {
    /// Only grants on this repository.
    pub repo: Option<String>,
    /// Only grants of this user.
    #[arg(long)]
    pub user: Option<String>,
}

/// `cpm key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate an ed25519 key pair under ~/.cpm/keys/.
    Generate(KeyGenerateArgs),
    /// List key pairs.
    List,
    /// Show a key pair's public key and fingerprint.
    Show(NameArg),
    /// Remove a key pair's record (servers using it lose it); --delete-files removes the files.
    Remove(KeyRemoveArgs),
}

/// `cpm key generate`
#[derive(Debug, Args)]
pub struct KeyGenerateArgs {
    /// Name: letters, digits, '.', '-' and '_'.
    pub name: String,
    /// Comment in the public key (default: cpm@<name>).
    #[arg(long)]
    pub comment: Option<String>,
}

/// `cpm key remove`
#[derive(Debug, Args)]
pub struct KeyRemoveArgs {
    /// The key.
    pub name: String,
    /// Also delete the private and public key files.
    #[arg(long)]
    pub delete_files: bool,
}

/// `cpm server …`
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Register a server.
    Add(ServerAddArgs),
    /// List servers.
    List,
    /// Show a server.
    Show(NameArg),
    /// Remove a server.
    Remove(NameArg),
}

/// `cpm server add`
#[derive(Debug, Args)]
pub struct ServerAddArgs {
    /// Name.
    pub name: String,
    /// Hostname or IP address.
    pub host: String,
    /// SSH port.
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// The key pair to use (see `cpm key list`).
    #[arg(long)]
    pub key: Option<String>,
    /// It is a peer cpm server.
    #[arg(long)]
    pub neighbor: bool,
}

/// `cpm neighbors …`
#[derive(Debug, Subcommand)]
pub enum NeighborsCommand {
    /// List neighbor servers.
    List,
    /// Register a neighbor (or flag an existing server as one).
    Add(ServerAddArgs),
    /// Unflag a neighbor (the server stays registered).
    Remove(NameArg),
    /// Push repositories to the neighbors.
    Sync(SyncArgs),
    /// Check neighbors: SSH banner time and an `info` round trip with their key.
    Ping(PingArgs),
    /// Find cpm servers on a network (banner plus `info`); shows host keys, adds nothing.
    Discover(DiscoverArgs),
}

/// `cpm neighbors ping`
#[derive(Debug, Args)]
pub struct PingArgs {
    /// Only this neighbor.
    pub name: Option<String>,
    /// Seconds to wait for each.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// `cpm neighbors discover`
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The IPv4 network to scan, at most a /16 (e.g. 192.168.1.0/24).
    #[arg(long)]
    pub network: String,
    /// The SSH port cpm servers listen on.
    #[arg(long, default_value_t = 2222)]
    pub port: u16,
    /// Seconds to wait for each host.
    #[arg(long, default_value_t = 1)]
    pub timeout: u64,
    /// The key pair to ask `info` with (a peer answers only keys it knows).
    #[arg(long)]
    pub key: Option<String>,
}

/// `cpm sync`
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only this repository (ORG/REPO).
    pub repo: Option<String>,
    /// Only this server.
    #[arg(long)]
    pub server: Option<String>,
}

/// `cpm log`
#[derive(Debug, Args)]
pub struct LogArgs {
    /// At most this many entries, newest first.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub limit: u32,
}

/// `cpm authorized-keys`
#[derive(Debug, Args)]
#[command(
    after_help = "Install with:\n  cpm authorized-keys > ~git/.ssh/authorized_keys\nand regenerate after every `cpm user key add/remove`."
)]
pub struct AuthorizedKeysArgs {
    /// The cpm binary sshd should run (default: this one).
    #[arg(long, value_name = "PATH")]
    pub cpm: Option<PathBuf>,
}

/// `cpm shell`
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// The user key sshd authenticated (its id in `user_keys`).
    #[arg(long)]
    pub key_id: i64,
}

/// `cpm serve`
#[derive(Debug, Args)]
#[command(
    after_help = "Clients connect with their registered key; the SSH user name does not matter:\n  git clone ssh://git@HOST:2222/acme/web.git\n  ssh -p 2222 git@HOST info"
)]
pub struct ServeArgs {
    /// Address and port to listen on (loopback unless told otherwise).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2222")]
    pub listen: std::net::SocketAddr,
    /// The server's host key, generated (ed25519, 0600) on first run [default: ~/.cpm/host_ed25519]
    #[arg(long, value_name = "PATH")]
    pub host_key: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
