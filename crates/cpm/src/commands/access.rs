//! `cpm access …`: direct grants, and the effective access of a user on a repository.

use serde::Serialize;

use super::{Ctx, write};
use crate::access::{self, Decision};
use crate::cli::AccessCommand;
use crate::error::{Error, Result};
use crate::names;
use crate::output::Table;
use crate::repos;
use crate::users;

#[derive(Debug, Serialize)]
struct Checked {
    username: String,
    repository: String,
    #[serde(flatten)]
    decision: Decision,
    can_read: bool,
    can_write: bool,
    can_admin: bool,
}

pub fn run(ctx: &Ctx, cmd: AccessCommand) -> Result<()> {
    let store = ctx.open()?;
    match cmd {
        AccessCommand::Grant(args) => {
            let (org, name) = names::repo_path(&args.repo)?;
            let previous = write(
                ctx,
                &store,
                "access.grant",
                &args.repo,
                &format!("{} {}", args.username, args.level),
                |tx| {
                    let repo = repos::find(tx, &org, &name)?;
                    let user = users::get_by_username(tx, &args.username)?;
                    repos::grant(tx, repo.id, user.id, args.level)
                },
            )?;
            let message = match previous {
                Some(p) if p == args.level => format!(
                    "{} already has {} on {org}/{name}",
                    args.username, args.level
                ),
                Some(p) => format!(
                    "{} now has {} on {org}/{name} (was {p})",
                    args.username, args.level
                ),
                None => format!("Granted {} {} on {org}/{name}", args.username, args.level),
            };
            ctx.out.done(&serde_json::json!({"username": args.username, "repository": format!("{org}/{name}"), "access_level": args.level, "previous": previous}), &message);
        }
        AccessCommand::Revoke(args) => {
            let (org, name) = names::repo_path(&args.repo)?;
            let level = write(
                ctx,
                &store,
                "access.revoke",
                &args.repo,
                &args.username,
                |tx| {
                    let repo = repos::find(tx, &org, &name)?;
                    let user = users::get_by_username(tx, &args.username)?;
                    repos::revoke(tx, repo.id, user.id)
                },
            )?;
            ctx.out.done(&serde_json::json!({"username": args.username, "repository": format!("{org}/{name}"), "revoked": level}), &format!("Revoked {}'s {level} on {org}/{name} (an org role may still give access; see `cpm access check`)", args.username));
        }
        AccessCommand::List(args) => {
            let grants = store.read(|c| {
                let repo_id = match &args.repo {
                    Some(spec) => {
                        let (org, name) = names::repo_path(spec)?;
                        Some(repos::find(c, &org, &name)?.id)
                    }
                    None => None,
                };
                let user_id = match &args.user {
                    Some(u) => Some(users::get_by_username(c, u)?.id),
                    None => None,
                };
                repos::grants(c, repo_id, user_id)
            })?;
            ctx.out.print(&grants, |grants| {
                let mut t = Table::new(&["REPOSITORY", "USERNAME", "LEVEL"]);
                for g in grants {
                    t.row(vec![
                        g.repository.clone(),
                        g.username.clone(),
                        g.access_level.to_string(),
                    ]);
                }
                t.render()
            });
        }
        AccessCommand::Check(args) => {
            let (org, name) = names::repo_path(&args.repo)?;
            let checked = store.read(|c| {
                let repo = repos::find(c, &org, &name)?;
                let user = users::get_by_username(c, &args.username)?;
                let decision = access::check(c, &user, &repo)?;
                Ok::<_, Error>(Checked {
                    username: user.username,
                    repository: repo.full_name(),
                    can_read: decision.allows(access::Level::Read),
                    can_write: decision.allows(access::Level::Write),
                    can_admin: decision.allows(access::Level::Admin),
                    decision,
                })
            })?;
            ctx.out.print(&checked, |c| {
                format!(
                    "{} on {}: {}\n  {}\n  clone/fetch: {}  push: {}  manage: {}\n",
                    c.username,
                    c.repository,
                    c.decision.level.map_or("none".into(), |l| l.to_string()),
                    c.decision.reason,
                    yes(c.can_read),
                    yes(c.can_write),
                    yes(c.can_admin)
                )
            });
        }
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
