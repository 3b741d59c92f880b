//! `cpm repo …`: repositories, on disk and in the database together.

use std::path::PathBuf;

use serde::Serialize;
use store::Store;

use super::{Ctx, write};
use crate::access;
use crate::cli::RepoCommand;
use crate::config::DeleteMode;
use crate::disk::Root;
use crate::error::{Error, Result};
use crate::names::{self, Kind};
use crate::orgs;
use crate::output::{Table, or_dash};
use crate::repos::{self, Grant, RepoUpdate, Repository};
use crate::users;

#[derive(Debug, Serialize)]
struct Shown {
    #[serde(flatten)]
    repo: Repository,
    clone_url: String,
    grants: Vec<Grant>,
    members: Vec<Reach>,
}

#[derive(Debug, Serialize)]
struct Reach {
    username: String,
    level: Option<access::Level>,
    reason: String,
}

fn table(list: &[Repository]) -> String {
    let mut t = Table::new(&["REPOSITORY", "PATH", "CREATED", "DESCRIPTION"]);
    for r in list {
        t.row(vec![
            r.full_name(),
            r.path.clone(),
            store::timestamp::to_rfc3339(&r.created_at),
            or_dash(&r.description),
        ]);
    }
    t.render()
}

pub fn run(ctx: &Ctx, cmd: RepoCommand) -> Result<()> {
    let store = ctx.open()?;
    match cmd {
        RepoCommand::Create(args) => {
            let (org_name, name) = names::repo_path(&args.repo)?;
            let root = ctx.root()?;
            let org = store.read(|c| orgs::get_by_name(c, &org_name))?;
            let mut staged = root.stage_bare(&org.name, &name)?;
            let path = staged.target().to_string_lossy().into_owned();
            let result = write(
                ctx,
                &store,
                "repo.create",
                &format!("{org_name}/{name}"),
                "",
                |tx| {
                    let repo = repos::create(tx, org.id, &name, &path, &args.description)?;
                    staged.place()?;
                    Ok(repo)
                },
            );
            let repo = match result {
                Ok(repo) => {
                    staged.keep();
                    repo
                }
                Err(e) => {
                    staged.undo();
                    return Err(e);
                }
            };
            ctx.out.done(
                &repo,
                &format!(
                    "Created {} at {}\n  git clone {}",
                    repo.full_name(),
                    repo.path,
                    repo.path
                ),
            );
        }
        RepoCommand::List(args) => {
            let list = store.read(|c| match (&args.org, &args.user) {
                (Some(_), Some(_)) => Err(Error::Invalid("give --org or --user, not both".into())),
                (Some(org), None) => repos::list_by_org(c, orgs::get_by_name(c, org)?.id),
                (None, Some(user)) => {
                    repos::user_repositories(c, users::get_by_username(c, user)?.id)
                }
                (None, None) => repos::list(c),
            })?;
            ctx.out.print(&list, |l| table(l));
        }
        RepoCommand::Show(args) => {
            let (org, name) = names::repo_path(&args.repo)?;
            let shown = store.read(|c| {
                let repo = repos::find(c, &org, &name)?;
                let grants = repos::grants(c, Some(repo.id), None)?;
                let org_row = orgs::get(c, repo.org_id)?;
                let mut members = Vec::new();
                let mut seen: Vec<String> = orgs::members(c, org_row.id)?
                    .into_iter()
                    .map(|m| m.username)
                    .collect();
                seen.extend(grants.iter().map(|g| g.username.clone()));
                seen.sort();
                seen.dedup();
                for username in seen {
                    let user = users::get_by_username(c, &username)?;
                    let d = access::check(c, &user, &repo)?;
                    members.push(Reach {
                        username,
                        level: d.level,
                        reason: d.reason,
                    });
                }
                Ok::<_, Error>(Shown {
                    clone_url: repo.path.clone(),
                    repo,
                    grants,
                    members,
                })
            })?;
            ctx.out.print(&shown, |s| {
                let mut text = format!(
                    "{} (id {})\n  path:        {}\n  description: {}\n  created:     {}\n  who can reach it:\n",
                    s.repo.full_name(),
                    s.repo.id,
                    s.repo.path,
                    or_dash(&s.repo.description),
                    store::timestamp::to_rfc3339(&s.repo.created_at)
                );
                for m in &s.members {
                    text.push_str(&format!("    {:<16} {:<6} {}\n", m.username, m.level.map_or("-".into(), |l| l.to_string()), m.reason));
                }
                text
            });
        }
        RepoCommand::Rename(args) => {
            let (org, name) = names::repo_path(&args.repo)?;
            let new_name = names::check(Kind::Repo, &args.new_name)?;
            let root = ctx.root()?;
            let repo = store.read(|c| repos::find(c, &org, &name))?;
            let from = PathBuf::from(&repo.path);
            let to = root.repo_dir(&org, &new_name);
            let mut moved = false;
            let result = write(
                ctx,
                &store,
                "repo.rename",
                &repo.full_name(),
                &new_name,
                |tx| {
                    let renamed = repos::rename(tx, repo.id, &new_name, &to.to_string_lossy())?;
                    root.rename(&from, &to)?;
                    moved = true;
                    Ok(renamed)
                },
            );
            let renamed = match result {
                Ok(r) => r,
                Err(e) => {
                    if moved {
                        let _ = root.rename(&to, &from);
                    }
                    return Err(e);
                }
            };
            ctx.out.done(
                &renamed,
                &format!(
                    "Renamed {} to {} ({})",
                    repo.full_name(),
                    renamed.full_name(),
                    renamed.path
                ),
            );
        }
        RepoCommand::Update(args) => {
            let (org, name) = names::repo_path(&args.repo)?;
            let update = RepoUpdate {
                description: Some(args.description.clone()),
            };
            let repo = write(ctx, &store, "repo.update", &args.repo, "", |tx| {
                let repo = repos::find(tx, &org, &name)?;
                repos::update(tx, repo.id, &update)
            })?;
            ctx.out
                .done(&repo, &format!("Updated {}", repo.full_name()));
        }
        RepoCommand::Delete(args) => {
            let (org, name) = names::repo_path(&args.name)?;
            let root = ctx.root()?;
            let repo = store.read(|c| repos::find(c, &org, &name))?;
            let trashed = remove_with_rows(
                ctx,
                &store,
                &root,
                std::slice::from_ref(&repo),
                args.purge,
                ("repo.delete", &repo.full_name()),
                |tx| repos::delete(tx, repo.id),
            )?;
            let message = match trashed.first() {
                Some(t) => format!(
                    "Deleted {}; its directory is in {} (remove it to reclaim the space)",
                    repo.full_name(),
                    t.display()
                ),
                None => format!("Deleted {} and its directory", repo.full_name()),
            };
            ctx.out.done(
                &serde_json::json!({"deleted": repo, "trash": trashed}),
                &message,
            );
        }
    }
    Ok(())
}

/// Deletes rows (`delete_rows`) and moves the repositories' directories to the trash in one
/// transaction; if the transaction fails the directories are moved back. With `purge` (or the
/// config's `delete = "purge"`) the trashed directories are then removed. Returns where the
/// directories went (empty when purged).
pub fn remove_with_rows(
    ctx: &Ctx,
    store: &Store,
    root: &Root,
    repos: &[Repository],
    purge: bool,
    (action, target): (&str, &str),
    delete_rows: impl FnOnce(&rusqlite::Connection) -> Result<()>,
) -> Result<Vec<PathBuf>> {
    let stamp = store::timestamp::now()
        .replace([' ', ':'], "")
        .replace('-', "");
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = write(ctx, store, action, target, "", |tx| {
        delete_rows(tx)?;
        for r in repos {
            let dir = PathBuf::from(&r.path);
            if let Some(to) = root.remove(&dir, DeleteMode::Trash, &stamp)? {
                moved.push((dir, to));
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        for (from, to) in moved.iter().rev() {
            let _ = store::rename_no_replace(to, from);
        }
        return Err(e);
    }
    if purge || ctx.config.delete == DeleteMode::Purge {
        for (_, trashed) in &moved {
            std::fs::remove_dir_all(trashed).map_err(|e| Error::io(trashed, e))?;
        }
        return Ok(Vec::new());
    }
    Ok(moved.into_iter().map(|(_, to)| to).collect())
}
