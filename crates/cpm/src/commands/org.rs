//! `cpm org …`: organizations and their members.

use serde::Serialize;

use super::{Ctx, write};
use crate::cli::{MemberCommand, OrgCommand};
use crate::error::{Error, Result};
use crate::orgs::{self, OrgMember, OrgUpdate, Organization};
use crate::output::{Table, or_dash};
use crate::repos::{self, Repository};
use crate::users;

#[derive(Debug, Serialize)]
struct Shown {
    #[serde(flatten)]
    org: Organization,
    members: Vec<OrgMember>,
    repositories: Vec<Repository>,
}

pub fn run(ctx: &Ctx, cmd: OrgCommand) -> Result<()> {
    let store = ctx.open()?;
    match cmd {
        OrgCommand::Create(args) => {
            let org = write(ctx, &store, "org.create", &args.name, "", |tx| {
                orgs::create(tx, &args.name, &args.description)
            })?;
            ctx.out
                .done(&org, &format!("Created organization {}", org.name));
        }
        OrgCommand::List(args) => {
            let list = store.read(|c| orgs::list(c, args.sort))?;
            ctx.out.print(&list, |list| {
                let mut t = Table::new(&["NAME", "MEMBERS", "REPOS", "CREATED", "DESCRIPTION"]);
                for o in list {
                    t.row(vec![
                        o.name.clone(),
                        o.member_count.to_string(),
                        o.repo_count.to_string(),
                        store::timestamp::to_rfc3339(&o.created_at),
                        or_dash(&o.description),
                    ]);
                }
                t.render()
            });
        }
        OrgCommand::Show(name) => {
            let shown = store.read(|c| {
                let org = orgs::get_by_name(c, &name.name)?;
                Ok::<_, Error>(Shown {
                    members: orgs::members(c, org.id)?,
                    repositories: repos::list_by_org(c, org.id)?,
                    org,
                })
            })?;
            ctx.out.print(&shown, |s| {
                let mut text = format!(
                    "{} (id {})\n  description: {}\n  created:     {}\n  members:\n",
                    s.org.name,
                    s.org.id,
                    or_dash(&s.org.description),
                    store::timestamp::to_rfc3339(&s.org.created_at)
                );
                for m in &s.members {
                    text.push_str(&format!("    {:<8} {}\n", m.role, m.username));
                }
                text.push_str("  repositories:\n");
                for r in &s.repositories {
                    text.push_str(&format!("    {}  {}\n", r.name, r.path));
                }
                text
            });
        }
        OrgCommand::Update(args) => {
            let update = OrgUpdate {
                description: Some(args.description.clone()),
            };
            let org = write(ctx, &store, "org.update", &args.name, "", |tx| {
                let org = orgs::get_by_name(tx, &args.name)?;
                orgs::update(tx, org.id, &update)
            })?;
            ctx.out
                .done(&org, &format!("Updated organization {}", org.name));
        }
        OrgCommand::Delete(args) => {
            let root = ctx.root()?;
            let org = store.read(|c| orgs::get_by_name(c, &args.name))?;
            let repos = store.read(|c| repos::list_by_org(c, org.id))?;
            let trashed = super::repo::remove_with_rows(
                ctx,
                &store,
                &root,
                &repos,
                args.purge,
                ("org.delete", &org.name),
                |tx| orgs::delete(tx, org.id),
            )?;
            ctx.out.done(
                &serde_json::json!({"deleted": org, "repositories": repos.iter().map(Repository::full_name).collect::<Vec<_>>(), "trash": trashed}),
                &format!(
                    "Deleted organization {} with {} repositories{}",
                    org.name,
                    repos.len(),
                    if trashed.is_empty() { String::new() } else { format!(" (directories moved to {})", root.path().join(".trash").display()) }
                ),
            );
        }
        OrgCommand::Member(MemberCommand::Add(args)) => {
            let (org, previous) = write(
                ctx,
                &store,
                "org.member.add",
                &args.org,
                &format!("{} as {}", args.username, args.role),
                |tx| {
                    let org = orgs::get_by_name(tx, &args.org)?;
                    let user = users::get_by_username(tx, &args.username)?;
                    Ok((
                        org.clone(),
                        orgs::add_member(tx, org.id, user.id, args.role)?,
                    ))
                },
            )?;
            let message = match previous {
                Some(p) if p == args.role => {
                    format!("{} already is {} of {}", args.username, args.role, org.name)
                }
                Some(p) => format!(
                    "{} is now {} of {} (was {p})",
                    args.username, args.role, org.name
                ),
                None => format!("Added {} to {} as {}", args.username, org.name, args.role),
            };
            ctx.out.done(&serde_json::json!({"org": org.name, "username": args.username, "role": args.role, "previous_role": previous}), &message);
        }
        OrgCommand::Member(MemberCommand::Remove(args)) => {
            let role = write(
                ctx,
                &store,
                "org.member.remove",
                &args.org,
                &args.username,
                |tx| {
                    let org = orgs::get_by_name(tx, &args.org)?;
                    let user = users::get_by_username(tx, &args.username)?;
                    orgs::remove_member(tx, org.id, user.id)
                },
            )?;
            ctx.out.done(
                &serde_json::json!({"org": args.org, "username": args.username, "role": role}),
                &format!("Removed {} ({role}) from {}", args.username, args.org),
            );
        }
        OrgCommand::Member(MemberCommand::List(args)) => {
            let mut members = store.read(|c| {
                let org = orgs::get_by_name(c, &args.org)?;
                orgs::members(c, org.id)
            })?;
            if let Some(role) = args.role {
                members.retain(|m| m.role == role.as_str());
            }
            ctx.out.print(&members, |members| {
                let mut t = Table::new(&["USERNAME", "ROLE", "EMAIL", "JOINED"]);
                for m in members {
                    t.row(vec![
                        m.username.clone(),
                        m.role.clone(),
                        or_dash(&m.email),
                        store::timestamp::to_rfc3339(&m.joined_at),
                    ]);
                }
                t.render()
            });
        }
    }
    Ok(())
}
