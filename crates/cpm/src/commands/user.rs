//! `cpm user …`: accounts and their SSH keys.

use serde::Serialize;

use super::{Ctx, read_keys, write};
use crate::cli::UserCommand;
use crate::error::{Error, Result};
use crate::output::{Table, or_dash};
use crate::repos::{self, Repository};
use crate::users::{self, User, UserKey, UserUpdate};

#[derive(Debug, Serialize)]
struct Shown {
    #[serde(flatten)]
    user: User,
    keys: Vec<UserKey>,
    organizations: Vec<Membership>,
    repositories: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Membership {
    org: String,
    role: String,
}

pub fn run(ctx: &Ctx, cmd: UserCommand) -> Result<()> {
    let store = ctx.open()?;
    match cmd {
        UserCommand::Add(args) => {
            let keys = read_keys(&args.keys)?;
            let user = write(ctx, &store, "user.add", &args.username, "", |tx| {
                users::create(tx, &args.username, &args.email, &keys)
            })?;
            ctx.out.done(
                &user,
                &format!(
                    "Added user {}{} with {} key(s)",
                    user.username,
                    if user.email.is_empty() {
                        String::new()
                    } else {
                        format!(" <{}>", user.email)
                    },
                    keys.len()
                ),
            );
        }
        UserCommand::List => {
            let list = store.read(users::list)?;
            let keys = store.read(|c| {
                list.iter()
                    .map(|u| users::keys_of(c, u.id).map(|k| k.len()))
                    .collect::<Result<Vec<_>>>()
            })?;
            ctx.out.print(&list, |list| {
                let mut t = Table::new(&["USERNAME", "EMAIL", "KEYS", "CREATED"]);
                for (u, k) in list.iter().zip(&keys) {
                    t.row(vec![
                        u.username.clone(),
                        or_dash(&u.email),
                        k.to_string(),
                        store::timestamp::to_rfc3339(&u.created_at),
                    ]);
                }
                t.render()
            });
        }
        UserCommand::Show(name) => {
            let shown = store.read(|c| {
                let user = users::get_by_username(c, &name.name)?;
                let keys = users::keys_of(c, user.id)?;
                let mut stmt = c.prepare(
                    "SELECT o.name, m.role FROM org_members m JOIN organizations o ON o.id = m.org_id
                     WHERE m.user_id = ?1 ORDER BY o.name",
                )?;
                let organizations = stmt
                    .query_map([user.id], |r| Ok(Membership { org: r.get(0)?, role: r.get(1)? }))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let repositories = repos::user_repositories(c, user.id)?
                    .iter()
                    .map(Repository::full_name)
                    .collect();
                Ok::<_, Error>(Shown { user, keys, organizations, repositories })
            })?;
            ctx.out.print(&shown, |s| {
                let mut text = format!(
                    "{} (id {})\n  email:   {}\n  created: {}\n",
                    s.user.username,
                    s.user.id,
                    or_dash(&s.user.email),
                    store::timestamp::to_rfc3339(&s.user.created_at)
                );
                text.push_str(&format!("  keys:    {}\n", s.keys.len()));
                for k in &s.keys {
                    text.push_str(&format!("    {}  {}\n", k.fingerprint, k.name));
                }
                for m in &s.organizations {
                    text.push_str(&format!("  member of {} ({})\n", m.org, m.role));
                }
                text.push_str(&format!(
                    "  can reach: {}\n",
                    if s.repositories.is_empty() {
                        "-".into()
                    } else {
                        s.repositories.join(", ")
                    }
                ));
                text
            });
        }
        UserCommand::Update(args) => {
            let update = UserUpdate {
                email: args.email.clone(),
                username: args.rename.clone(),
            };
            let user = write(ctx, &store, "user.update", &args.username, "", |tx| {
                let user = users::get_by_username(tx, &args.username)?;
                users::update(tx, user.id, &update)
            })?;
            ctx.out
                .done(&user, &format!("Updated user {}", user.username));
        }
        UserCommand::Remove(name) => {
            let user = write(ctx, &store, "user.remove", &name.name, "", |tx| {
                let user = users::get_by_username(tx, &name.name)?;
                users::delete(tx, user.id)?;
                Ok(user)
            })?;
            ctx.out.done(
                &user,
                &format!(
                    "Removed user {} (and their memberships, grants and keys)",
                    user.username
                ),
            );
        }
        UserCommand::Key(crate::cli::UserKeyCommand::Add(args)) => {
            let keys = read_keys(&args.keys)?;
            if keys.is_empty() {
                return Err(Error::Invalid("give a key with --key or --key-file".into()));
            }
            if keys.len() > 1 && args.name.is_some() {
                return Err(Error::Invalid(
                    "--name names one key; add keys one at a time to name them".into(),
                ));
            }
            let added = write(
                ctx,
                &store,
                "user.key.add",
                &args.username,
                &keys
                    .iter()
                    .map(|k| k.fingerprint.clone())
                    .collect::<Vec<_>>()
                    .join(" "),
                |tx| {
                    let user = users::get_by_username(tx, &args.username)?;
                    keys.iter()
                        .map(|k| users::add_key(tx, user.id, k, args.name.as_deref()))
                        .collect::<Result<Vec<_>>>()
                },
            )?;
            ctx.out.done(
                &added,
                &added
                    .iter()
                    .map(|k| {
                        format!(
                            "Added key {} ({}) to {}",
                            k.fingerprint, k.name, args.username
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        UserCommand::Key(crate::cli::UserKeyCommand::List(name)) => {
            let keys = store.read(|c| {
                let user = users::get_by_username(c, &name.name)?;
                users::keys_of(c, user.id)
            })?;
            ctx.out.print(&keys, |keys| {
                let mut t = Table::new(&["NAME", "FINGERPRINT", "TYPE", "ADDED"]);
                for k in keys {
                    t.row(vec![
                        k.name.clone(),
                        k.fingerprint.clone(),
                        k.public_key
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                        store::timestamp::to_rfc3339(&k.created_at),
                    ]);
                }
                t.render()
            });
        }
        UserCommand::Key(crate::cli::UserKeyCommand::Remove(args)) => {
            let key = write(
                ctx,
                &store,
                "user.key.remove",
                &args.username,
                &args.key,
                |tx| {
                    let user = users::get_by_username(tx, &args.username)?;
                    users::remove_key(tx, user.id, &args.key)
                },
            )?;
            ctx.out.done(
                &key,
                &format!(
                    "Removed key {} ({}) from {}",
                    key.fingerprint, key.name, args.username
                ),
            );
        }
    }
    Ok(())
}
