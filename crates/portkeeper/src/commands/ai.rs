//! `portman ai [--json]`: the whole CLI described for agents and scripts, generated from the clap
//! definitions at run time, so it cannot drift from what `portman` really accepts.

use clap::{ArgAction, CommandFactory};
use serde_json::{Value, json};

use super::Context;
use crate::cli::Cli;
use crate::error::{EXIT_STATUS_HELP, Result};
use crate::output;

pub fn run(ctx: &Context) -> Result<u8> {
    let doc = describe();
    if ctx.json {
        output::json(&doc);
    } else {
        output::text(&guide(&doc));
    }
    Ok(0)
}

/// The description document.
pub fn describe() -> Value {
    let mut cli = Cli::command();
    cli.build();
    let exit_codes: serde_json::Map<String, Value> = EXIT_STATUS_HELP
        .lines()
        .skip(1)
        .filter_map(|line| {
            let line = line.trim();
            let (code, meaning) = line.split_once(char::is_whitespace)?;
            code.parse::<u8>().ok()?;
            Some((code.to_string(), Value::from(meaning.trim())))
        })
        .collect();
    json!({
        "name": "portman",
        "version": env!("CARGO_PKG_VERSION"),
        "description": cli.get_about().map(|s| s.to_string()),
        "database": {
            "default": "~/.portkeeper/database.db",
            "env": "PORTMAN_DB",
            "flag": "--db",
        },
        "json": "Every command that prints data takes --json: one JSON document on stdout with stable keys; errors become {\"error\":{\"code\":\"…\",\"message\":\"…\"}} on stdout with the exit code below.",
        "exitCodes": exit_codes,
        "globalOptions": cli.get_arguments().filter(|a| a.is_global_set()).map(arg).collect::<Vec<_>>(),
        "commands": cli.get_subcommands().filter(|c| c.get_name() != "help").map(command).collect::<Vec<_>>(),
    })
}

fn command(cmd: &clap::Command) -> Value {
    let mut cmd = cmd.clone();
    let usage = cmd.render_usage().to_string();
    json!({
        "name": cmd.get_name(),
        "aliases": cmd.get_visible_aliases().collect::<Vec<_>>(),
        "about": cmd.get_about().map(|s| s.to_string()),
        "details": cmd.get_after_help().map(|s| s.to_string()),
        "usage": usage.trim_start_matches("Usage: "),
        "arguments": cmd
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set() && a.get_id() != "help")
            .map(arg)
            .collect::<Vec<_>>(),
        "subcommands": cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .map(command)
            .collect::<Vec<_>>(),
    })
}

fn arg(a: &clap::Arg) -> Value {
    let takes_value = matches!(a.get_action(), ArgAction::Set | ArgAction::Append);
    json!({
        "name": a.get_id().as_str(),
        "positional": a.is_positional(),
        "long": a.get_long().map(|l| format!("--{l}")),
        "short": a.get_short().map(|s| format!("-{s}")),
        "aliases": a.get_visible_aliases().unwrap_or_default().iter().map(|l| format!("--{l}")).collect::<Vec<_>>(),
        "help": a.get_help().map(|s| s.to_string()),
        "required": a.is_required_set(),
        "takesValue": takes_value,
        "repeatable": matches!(a.get_action(), ArgAction::Append) || a.get_num_args().is_some_and(|n| n.max_values() > 1),
        "valueName": a.get_value_names().and_then(|v| v.first()).map(|s| s.to_string()),
        "default": a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        "possibleValues": a.get_possible_values().iter().map(|v| v.get_name().to_string()).collect::<Vec<_>>(),
    })
}

/// The same document as readable text.
fn guide(doc: &Value) -> String {
    let mut out = format!(
        "portman {} — {}\n\nDatabase: {} (override with --db or PORTMAN_DB)\n{}\n\nCOMMANDS\n",
        doc["version"].as_str().unwrap_or_default(),
        doc["description"].as_str().unwrap_or_default(),
        doc["database"]["default"].as_str().unwrap_or_default(),
        doc["json"].as_str().unwrap_or_default(),
    );
    fn walk(out: &mut String, cmds: &Value, depth: usize) {
        for c in cmds.as_array().into_iter().flatten() {
            let pad = "  ".repeat(depth + 1);
            out.push_str(&format!(
                "{pad}{}\n{pad}  {}\n",
                c["usage"].as_str().unwrap_or_default(),
                c["about"].as_str().unwrap_or_default()
            ));
            for a in c["arguments"].as_array().into_iter().flatten() {
                let name = a["long"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("<{}>", a["name"].as_str().unwrap_or_default()));
                out.push_str(&format!(
                    "{pad}    {name}: {}\n",
                    a["help"].as_str().unwrap_or_default()
                ));
            }
            walk(out, &c["subcommands"], depth + 1);
        }
    }
    walk(&mut out, &doc["commands"], 0);
    out.push_str("\nEXIT CODES\n");
    for (code, meaning) in doc["exitCodes"].as_object().into_iter().flatten() {
        out.push_str(&format!(
            "  {code:>3}  {}\n",
            meaning.as_str().unwrap_or_default()
        ));
    }
    out
}
