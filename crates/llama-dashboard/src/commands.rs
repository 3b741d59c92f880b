//! Running the commands other than `serve`: each opens the database directly (no server needed;
//! they work beside a running one), does its work through the repositories and prints text, or
//! one JSON document under `--json`. Failures print a message that says what to do and exit
//! with the documented status.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::{Map, Value, json};
use store::cli::{Table, human_bytes, print_failure};
use store::{OpenConfig, Store, exit};

use crate::cli::{
    Cli, Command, ConfigCommand, LogsArgs, LogsCommand, MetricsArgs, ModelsCommand, ScanArgs,
};
use crate::db::{TOOL, config, logs, metrics, models};
use crate::scan::{self, ScanError, ScanReport};

/// A failed command: its stable code, exit status and message.
#[derive(Debug)]
pub struct Failure {
    code: &'static str,
    status: u8,
    message: String,
}

impl Failure {
    fn new(code: &'static str, status: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            status,
            message: message.into(),
        }
    }
}

impl From<store::Error> for Failure {
    fn from(e: store::Error) -> Failure {
        Failure::new(e.code(), e.exit_code(), e.to_string())
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Failure {
        Failure::from(store::Error::Query(e))
    }
}

type Outcome<T> = Result<T, Failure>;

/// Runs a parsed command line; returns the exit status.
pub fn run(cli: Cli) -> ExitCode {
    let config = match OpenConfig::resolve(&TOOL, cli.db.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            store::cli::print_error(false, &e);
            return ExitCode::from(e.exit_code());
        }
    };
    match cli.command {
        Command::Serve(args) => crate::serve::run(&config, &args),
        Command::Db(db) => db.run(&TOOL, &config),
        Command::Completions(args) => args.run::<Cli>("llama-dashboard"),
        Command::Scan(args) => {
            let json = args.json;
            finish(json, scan_command(&config, &args), print_scan)
        }
        Command::Models(command) => models_command(&config, command),
        Command::Config(command) => config_command(&config, command),
        Command::Logs(args) => logs_command(&config, args),
        Command::Metrics(args) => {
            let json = args.json;
            finish(json, metrics_command(&config, &args), print_metrics)
        }
    }
}

/// Prints a result (JSON under `--json`, else `human`) or the failure; returns the status.
fn finish<T: Serialize>(
    json: bool,
    result: Outcome<T>,
    human: impl FnOnce(&T) -> String,
) -> ExitCode {
    match result {
        Ok(value) => {
            let text = if json {
                serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
            } else {
                human(&value)
            };
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::from(exit::OK)
        }
        Err(f) => {
            print_failure(json, f.code, &f.message);
            ExitCode::from(f.status)
        }
    }
}

fn open(config: &OpenConfig) -> Outcome<Store> {
    Ok(Store::open(&TOOL, config)?)
}

fn scan_failure(e: ScanError) -> Failure {
    match e {
        ScanError::Root(path, io) => Failure::new(
            "models_folder_unreadable",
            exit::NO_INPUT,
            format!(
                "cannot read the models folder {}: {io}; create it, pass --path, or run \
                 `llama-dashboard config set baseModelsPath DIR`",
                path.display()
            ),
        ),
        ScanError::Db(e) => Failure::from(e),
    }
}

fn scan_command(config: &OpenConfig, args: &ScanArgs) -> Outcome<ScanReport> {
    let store = open(config)?;
    let home = config::home();
    let root = match &args.path {
        Some(path) => path.clone(),
        None => store
            .read(|conn| Ok::<_, Failure>(config::models_dir(&config::get(conn, &home)?, &home)))?,
    };
    let bar = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{bar:30} {pos}/{len} models ({elapsed}) {msg}")
        {
            bar.set_style(style);
        }
        bar.set_message(root.display().to_string());
        bar
    };
    let report = store
        .write(|tx| {
            scan::scan(tx, &root, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
        })
        .map_err(scan_failure)?;
    bar.finish_and_clear();
    Ok(report)
}

fn print_scan(r: &ScanReport) -> String {
    let mut text = format!(
        "{} models in {} files: {} added, {} updated, {} unchanged\n",
        r.models, r.files, r.added, r.updated, r.unchanged
    );
    for (path, reason) in &r.failed {
        text.push_str(&format!("unreadable: {}: {reason}\n", path.display()));
    }
    text
}

/// The model an argument names: its id, or its name when exactly one model has it.
fn find(conn: &rusqlite::Connection, arg: &str) -> Outcome<models::Model> {
    if let Some(model) = models::get_by_id(conn, arg)? {
        return Ok(model);
    }
    let mut named: Vec<models::Model> = models::get_all(conn)?
        .into_iter()
        .filter(|m| m.name == arg)
        .collect();
    match named.len() {
        1 => Ok(named.remove(0)),
        0 => Err(Failure::new(
            "model_not_found",
            exit::NO_INPUT,
            format!(
                "no model has the id or name `{arg}`; `llama-dashboard models list` shows them"
            ),
        )),
        _ => Err(Failure::new(
            "ambiguous_model",
            exit::USAGE,
            format!(
                "{} models are named `{arg}`; name one by id: {}",
                named.len(),
                named
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn model_table(rows: &[models::Model]) -> String {
    if rows.is_empty() {
        return "no models; run `llama-dashboard scan`\n".to_string();
    }
    let mut table = Table::new(&[
        "ID", "NAME", "ARCH", "PARAMS", "QUANT", "SIZE", "CTX", "STATUS", "FAV",
    ]);
    for m in rows {
        table.row(vec![
            m.id.clone(),
            m.name.clone(),
            m.kind.clone(),
            crate::scan::size_label(m.params.as_deref()).unwrap_or_default(),
            m.quantization.clone().unwrap_or_default(),
            m.file_size
                .map(|s| human_bytes(u64::try_from(s).unwrap_or(0)))
                .unwrap_or_default(),
            m.ctx_size.to_string(),
            m.status.clone(),
            if m.favorite != 0 {
                "*".into()
            } else {
                String::new()
            },
        ]);
    }
    table.render()
}

fn model_details(m: &models::Model) -> String {
    let value = serde_json::to_value(m).unwrap_or(Value::Null);
    let mut text = String::new();
    if let Value::Object(map) = value {
        for column in models::COLUMNS {
            let shown = match map.get(column) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => "-".into(),
                Some(other) => other.to_string(),
            };
            text.push_str(&format!("{column:<15} {shown}\n"));
        }
    }
    text
}

fn models_command(config: &OpenConfig, command: ModelsCommand) -> ExitCode {
    match command {
        ModelsCommand::List(args) => {
            let result = open(config).and_then(|store| {
                store.read(|conn| {
                    let rows = if args.favorites {
                        models::get_favorites(conn)?
                    } else {
                        models::get_all(conn)?
                    };
                    Ok::<_, Failure>(
                        rows.into_iter()
                            .filter(|m| args.status.as_deref().is_none_or(|s| m.status == s))
                            .collect::<Vec<_>>(),
                    )
                })
            });
            finish(args.json, result, |rows| model_table(rows))
        }
        ModelsCommand::Show(args) => {
            let result = open(config).and_then(|store| store.read(|conn| find(conn, &args.model)));
            finish(args.json, result, model_details)
        }
        ModelsCommand::Favorite(args) => {
            let result = open(config).and_then(|store| {
                store.write(|tx| {
                    let model = find(tx, &args.model)?;
                    let mut changes = Map::new();
                    changes.insert("favorite".into(), json!(i64::from(!args.off)));
                    Ok::<_, Failure>(models::update(tx, &model.id, &changes)?.unwrap_or(model))
                })
            });
            finish(args.json, result, |m| {
                format!(
                    "{} {} favorite\n",
                    m.name,
                    if m.favorite != 0 {
                        "is now a"
                    } else {
                        "is no longer a"
                    }
                )
            })
        }
        ModelsCommand::Remove(args) => {
            let result = open(config).and_then(|store| {
                store.write(|tx| {
                    let model = find(tx, &args.model)?;
                    models::delete(tx, &model.id)?;
                    Ok::<_, Failure>(json!({"deleted": true, "id": model.id, "name": model.name}))
                })
            });
            finish(args.json, result, |v| {
                format!(
                    "removed {} from the catalog (the file stays)\n",
                    v["name"].as_str().unwrap_or("")
                )
            })
        }
        ModelsCommand::Cleanup(args) => {
            let result = open(config).and_then(|store| {
                store.write(|tx| {
                    Ok::<_, Failure>(json!({"removed": models::cleanup_missing_files(tx)?}))
                })
            });
            finish(args.json, result, |v| {
                format!("removed {} models whose files are gone\n", v["removed"])
            })
        }
    }
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn config_command(config: &OpenConfig, command: ConfigCommand) -> ExitCode {
    let home = config::home();
    match command {
        ConfigCommand::Get(args) => {
            let result = open(config).and_then(|store| {
                let all = store.read(|conn| Ok::<_, Failure>(config::get(conn, &home)?))?;
                match &args.key {
                    None => Ok(Value::Object(all)),
                    Some(key) => all.get(key).cloned().ok_or_else(|| {
                        Failure::new(
                            "unknown_setting",
                            exit::USAGE,
                            format!("no setting `{key}`; `llama-dashboard config get` lists them"),
                        )
                    }),
                }
            });
            finish(args.json, result, |v| match v {
                Value::Object(map) => map
                    .iter()
                    .map(|(k, v)| format!("{k} = {}\n", shown(v)))
                    .collect(),
                other => shown(other) + "\n",
            })
        }
        ConfigCommand::Set(args) => {
            let value = config::parse_cli_value(&args.key, &args.value);
            let result = open(config).and_then(|store| {
                store.write(|tx| {
                    let mut changes = Map::new();
                    changes.insert(args.key.clone(), value.clone());
                    config::update(tx, &home, &changes).map_err(|e| match e {
                        config::UpdateError::Invalid(bad) => {
                            Failure::new("invalid_setting", exit::DATA_ERR, bad.message)
                        }
                        config::UpdateError::Db(e) => Failure::from(e),
                    })
                })
            });
            let key = args.key.clone();
            finish(args.json, result.map(Value::Object), |v| {
                format!("{key} = {}\n", shown(&v[key.as_str()]))
            })
        }
    }
}

fn logs_command(config: &OpenConfig, args: LogsArgs) -> ExitCode {
    if let Some(LogsCommand::Clear) = args.command {
        let result = open(config).and_then(|store| {
            store.write(|tx| Ok::<_, Failure>(json!({"deleted": logs::clear(tx)?})))
        });
        return finish(args.json, result, |v| {
            format!("deleted {} log entries\n", v["deleted"])
        });
    }
    let levels = match args.level.as_deref().map(logs::parse_levels) {
        Some(Err(message)) => {
            print_failure(args.json, "invalid_level", &message);
            return ExitCode::from(exit::USAGE);
        }
        Some(Ok(levels)) => levels,
        None => Vec::new(),
    };
    let filter = logs::Filter {
        levels,
        source: args.source.clone(),
        after_id: None,
    };
    let result = open(config).and_then(|store| {
        store.read(|conn| Ok::<_, Failure>(logs::query(conn, &filter, args.limit)?))
    });
    finish(args.json, result, |rows| {
        if rows.is_empty() {
            return "no log entries\n".to_string();
        }
        rows.iter()
            .rev()
            .map(|e| {
                format!(
                    "{} {:<8} [{}] {}\n",
                    when(e.timestamp),
                    e.level,
                    e.source.as_deref().unwrap_or(logs::DEFAULT_SOURCE),
                    e.message
                )
            })
            .collect()
    })
}

fn metrics_command(config: &OpenConfig, args: &MetricsArgs) -> Outcome<Vec<metrics::Metrics>> {
    let store = open(config)?;
    store.read(|conn| Ok(metrics::get_history(conn, args.limit)?))
}

fn print_metrics(rows: &Vec<metrics::Metrics>) -> String {
    if rows.is_empty() {
        return "no metrics yet; `llama-dashboard serve` samples them\n".to_string();
    }
    let mut table = Table::new(&[
        "TIME", "CPU%", "MEM%", "SWAP%", "DISK%", "GPU%", "GPU MEM", "MODELS",
    ]);
    for m in rows {
        table.row(vec![
            when(m.timestamp),
            format!("{:.1}", m.cpu_usage),
            format!("{:.1}", m.memory_usage),
            format!("{:.1}", m.swap_usage),
            format!("{:.1}", m.disk_usage),
            format!("{:.1}", m.gpu_usage),
            format!("{:.0}/{:.0} MiB", m.gpu_memory_used, m.gpu_memory_total),
            m.active_models.to_string(),
        ]);
    }
    table.render()
}

/// A unix-seconds timestamp as UTC RFC 3339 (`2026-11-23T10:00:00Z`).
fn when(timestamp: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(timestamp)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| timestamp.to_string())
}
