//! `cpm key …`: cpm's own ed25519 key pairs, kept under `~/.cpm/keys/` (private keys 0600).

use std::path::PathBuf;

use super::{Ctx, write};
use crate::cli::KeyCommand;
use crate::error::{Error, Result};
use crate::keys;
use crate::output::Table;
use crate::ssh_keys;

/// `~/.cpm/keys`, beside the default database.
fn key_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            Error::Config("HOME is not set; cpm keeps key pairs in ~/.cpm/keys".into())
        })?;
    Ok(PathBuf::from(home).join(".cpm/keys"))
}

pub fn run(ctx: &Ctx, cmd: KeyCommand) -> Result<()> {
    let store = ctx.open()?;
    match cmd {
        KeyCommand::Generate(args) => {
            keys::validate_key_name(&args.name)?;
            // Refuse a taken name before touching the disk.
            if store.read(|c| ssh_keys::get_by_name(c, &args.name)).is_ok() {
                return Err(Error::Exists(format!(
                    "a key named '{}' exists; see `cpm key show {}`",
                    args.name, args.name
                )));
            }
            let comment = args
                .comment
                .clone()
                .unwrap_or_else(|| format!("cpm@{}", args.name));
            let generated = keys::generate(&key_dir()?, &args.name, &comment)?;
            let private = generated.private_key_path.to_string_lossy().into_owned();
            let result = write(
                ctx,
                &store,
                "key.generate",
                &args.name,
                &generated.fingerprint,
                |tx| ssh_keys::create(tx, &args.name, &generated.public_key, &private),
            );
            let key = match result {
                Ok(k) => k,
                Err(e) => {
                    // The row was not written: do not leave an orphan key pair behind.
                    let _ = std::fs::remove_file(&generated.private_key_path);
                    let _ = std::fs::remove_file(format!("{private}.pub"));
                    return Err(e);
                }
            };
            ctx.out.done(
                &key,
                &format!(
                    "Generated {} ({})\n  private key: {}\n  public key:  {}",
                    key.name, key.fingerprint, key.private_key_path, key.public_key
                ),
            );
        }
        KeyCommand::List => {
            let list = store.read(ssh_keys::list)?;
            ctx.out.print(&list, |list| {
                let mut t = Table::new(&["NAME", "FINGERPRINT", "PRIVATE KEY", "CREATED"]);
                for k in list {
                    t.row(vec![
                        k.name.clone(),
                        k.fingerprint.clone(),
                        k.private_key_path.clone(),
                        store::timestamp::to_rfc3339(&k.created_at),
                    ]);
                }
                t.render()
            });
        }
        KeyCommand::Show(name) => {
            let key = store.read(|c| ssh_keys::get_by_name(c, &name.name))?;
            ctx.out.print(&key, |k| {
                format!(
                    "{}\n  fingerprint: {}\n  private key: {}\n  public key:  {}\n",
                    k.name, k.fingerprint, k.private_key_path, k.public_key
                )
            });
        }
        KeyCommand::Remove(args) => {
            let key = write(ctx, &store, "key.remove", &args.name, "", |tx| {
                let key = ssh_keys::get_by_name(tx, &args.name)?;
                ssh_keys::delete(tx, key.id)?;
                Ok(key)
            })?;
            if args.delete_files {
                for path in [
                    key.private_key_path.clone(),
                    format!("{}.pub", key.private_key_path),
                ] {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io(path, e)),
                    }
                }
            }
            let files = if args.delete_files {
                "its files were deleted"
            } else {
                "its files were kept"
            };
            ctx.out.done(
                &key,
                &format!(
                    "Removed key {} ({files}); servers that used it now have no key",
                    key.name
                ),
            );
        }
    }
    Ok(())
}
