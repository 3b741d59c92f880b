//! `cpm shell --key-id N` (OpenSSH's forced command) and `cpm authorized-keys` (its key list).
//!
//! A host that keeps its own sshd on port 22 lists cpm's user keys in the git account's
//! `authorized_keys` with `command="cpm … shell --key-id N",restrict`: sshd authenticates the key,
//! `restrict` turns off PTYs and forwarding, and `cpm shell` makes the same decision the built-in
//! server makes, from `SSH_ORIGINAL_COMMAND`.

use std::io::Write;
use std::process::ExitCode;

use super::Ctx;
use crate::cli::{AuthorizedKeysArgs, ShellArgs};
use crate::dispatch::{self, Prepared};
use crate::error::{Error, Result};
use crate::users;

pub fn shell(ctx: &Ctx, args: &ShellArgs) -> Result<ExitCode> {
    let command = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    let store = ctx.open()?;
    let user = store.read(|c| users::by_key_id(c, args.key_id))?;
    let request = dispatch::parse(&command)?;
    let root = ctx.root()?;
    let protocol = std::env::var("GIT_PROTOCOL").ok();
    let prepared =
        store.read(|c| dispatch::prepare(c, root.path(), &user, &request, protocol.as_deref()))?;
    match prepared {
        Prepared::Reply(text) => {
            crate::output::write_stdout(text.as_bytes());
            Ok(ExitCode::SUCCESS)
        }
        Prepared::Git {
            mut command,
            repo,
            user,
            push,
        } => {
            let before = if push {
                dispatch::refs(&repo.path)
            } else {
                Vec::new()
            };
            let status = command
                .status()
                .map_err(|e| Error::Git(format!("cannot run git ({e})")))?;
            let code = status.code().unwrap_or(1);
            if push {
                dispatch::record_push(&store, &user, &repo, &before, code)?;
            }
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
    }
}

/// Quotes a value for the inside of `command="…"` in `authorized_keys`.
fn quoted(text: &str) -> String {
    let needs = text.is_empty()
        || text
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || "/._-+:@".contains(c)));
    if needs {
        format!("'{}'", text.replace('\'', r"'\''").replace('"', "\\\""))
    } else {
        text.to_string()
    }
}

pub fn authorized_keys(ctx: &Ctx, args: &AuthorizedKeysArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let exe = match &args.cpm {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| Error::io("cpm", e))?,
    };
    let mut prefix = format!(
        "{} --db {}",
        quoted(&exe.to_string_lossy()),
        quoted(&store.path().to_string_lossy())
    );
    if let Some(config) = &ctx.config.source {
        prefix.push_str(&format!(" --config {}", quoted(&config.to_string_lossy())));
    }
    let keys = store.read(users::all_keys)?;
    let mut out = String::from(
        "# Written by `cpm authorized-keys`; regenerate after adding or removing keys.\n",
    );
    for (key, username) in &keys {
        out.push_str(&format!(
            "command=\"{prefix} shell --key-id {}\",restrict {} # {username} {}\n",
            key.id,
            key.public_key
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
            key.fingerprint
        ));
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}
