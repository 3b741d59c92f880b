//! The command line, as clap types only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit statuses of every command, shown in `--help`.
pub const EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
  0   success
  1   failure not covered below
  64  the command line was wrong (see the message, and --help)
  65  bad data: not this tool's database, or a value that is not accepted
  66  not found: the database, a model, or the models folder
  69  the listen address cannot be bound
  73  would overwrite: a backup target exists
  74  input/output error
  75  in use: another server holds the database, or a writer kept it busy
  78  the schema is newer than this binary, or the filesystem is unsupported";

/// Manage GGUF models and llama.cpp's llama-server: catalog, metrics, logs, settings, REST API.
///
/// State lives in data/llama-dashboard.db under the working directory (override with --db or
/// LLAMA_DASHBOARD_DB). Start with `llama-dashboard scan`, then `llama-dashboard serve`.
#[derive(Debug, Parser)]
#[command(name = "llama-dashboard", version, after_long_help = EXIT_STATUS_HELP)]
pub struct Cli {
    /// Database file [env: LLAMA_DASHBOARD_DB] [default: data/llama-dashboard.db]
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the dashboard server: REST API, live events, metrics sampler, Prometheus export.
    Serve(ServeArgs),
    /// Scan the models folder (baseModelsPath) into the catalog.
    Scan(ScanArgs),
    /// List, show, favorite and remove models of the catalog.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Show and change settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show the log (newest first), or clear it.
    Logs(LogsArgs),
    /// Show stored metrics samples (newest first).
    Metrics(MetricsArgs),
    /// Back up, restore, check and maintain the database.
    #[command(subcommand)]
    Db(store::cli::DbCommand),
    /// Print a shell completion script.
    Completions(store::cli::CompletionsArgs),
}

/// `llama-dashboard serve`
#[derive(Debug, Args)]
#[command(after_help = "\
EXAMPLES:
  llama-dashboard serve
  llama-dashboard serve --listen 0.0.0.0:3000 --api-key-file /etc/llama-dashboard/key

Beyond loopback every request needs the API key (Authorization: Bearer KEY). Without
--api-key-file or LLAMA_DASHBOARD_API_KEY a key is made once in <db dir>/api-key (mode 0600).")]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3000")]
    pub listen: String,
    /// File holding the API key (first line) [env: LLAMA_DASHBOARD_API_KEY holds the key itself]
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Seconds between metrics samples sent to live dashboards.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub sample_interval: f64,
    /// Seconds between samples stored in the metrics table.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub store_interval: f64,
    /// Metrics rows kept (the documented default).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub metrics_keep: u64,
    /// Days after which metrics rows are deleted.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    pub metrics_max_age_days: u64,
    /// Log entries kept.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub logs_keep: u64,
    /// Days after which log entries are deleted.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub logs_max_age_days: u64,
    /// Lowest level of our own events written to the log: debug, info, warn or error.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
}

/// `llama-dashboard scan`
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Folder to scan [default: the baseModelsPath setting]
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `llama-dashboard models …`
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the catalog, newest first.
    List(ModelsListArgs),
    /// Show one model (by id, or by name when unique).
    Show(ModelArg),
    /// Mark a model as favorite (or not, with --off).
    Favorite(FavoriteArgs),
    /// Remove a model from the catalog (its file stays).
    Remove(ModelArg),
    /// Remove models whose files are gone.
    Cleanup(JsonArg),
}

/// `models list`
#[derive(Debug, Args)]
pub struct ModelsListArgs {
    /// Only favorites, by name.
    #[arg(long)]
    pub favorites: bool,
    /// Only models with this status (idle, loading, loaded, unloaded, error).
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A model named on the command line.
#[derive(Debug, Args)]
pub struct ModelArg {
    /// Model id (model_…) or name.
    pub model: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `models favorite`
#[derive(Debug, Args)]
pub struct FavoriteArgs {
    /// Model id (model_…) or name.
    pub model: String,
    /// Unmark instead.
    #[arg(long)]
    pub off: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Only `--json`.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `llama-dashboard config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every setting (defaults merged under saved values), or one.
    Get(ConfigGetArgs),
    /// Change one setting; the value is checked before anything is saved.
    #[command(
        after_help = "EXAMPLES:\n  llama-dashboard config set baseModelsPath /data/models\n  llama-dashboard config set ctx_size 8192\n  llama-dashboard config set llama_server_metrics false"
    )]
    Set(ConfigSetArgs),
}

/// `config get`
#[derive(Debug, Args)]
pub struct ConfigGetArgs {
    /// The setting to print.
    pub key: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `config set`
#[derive(Debug, Args)]
pub struct ConfigSetArgs {
    /// The setting.
    pub key: String,
    /// Its new value (numbers and true/false for settings of those kinds).
    pub value: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `llama-dashboard logs`
#[derive(Debug, Args)]
#[command(
    after_help = "EXAMPLES:\n  llama-dashboard logs --level error,critical\n  llama-dashboard logs --source llama-server --limit 50\n  llama-dashboard logs clear"
)]
pub struct LogsArgs {
    /// Entries to show.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u32,
    /// Only these levels (comma-separated: debug, info, warn, error, critical).
    #[arg(long, value_name = "LEVELS")]
    pub level: Option<String>,
    /// Only this source (server, models, api, llama-server, …).
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// Print the result as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<LogsCommand>,
}

/// `logs clear`
#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Delete every log entry.
    Clear,
}

/// `llama-dashboard metrics`
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Samples to show.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}
