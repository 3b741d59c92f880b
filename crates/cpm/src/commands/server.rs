//! `cpm server …`, `cpm neighbors …` and `cpm sync`: the servers repositories replicate to, and
//! the replication itself ([`crate::replicate`]).

use std::process::ExitCode;

use serde::Serialize;

use super::{Ctx, write};
use crate::cli::{NeighborsCommand, ServerAddArgs, ServerCommand, SyncArgs};
use crate::error::Result;
use crate::output::Table;
use crate::servers::{self, NewServer, Server};
use crate::ssh_keys;
use crate::{names, neighbors, replicate, repos};

fn table(list: &[Listed]) -> String {
    let mut t = Table::new(&["NAME", "HOST", "PORT", "NEIGHBOR", "KEY", "REPLICATION"]);
    for s in list {
        t.row(vec![
            s.server.name.clone(),
            s.server.host.clone(),
            s.server.port.to_string(),
            if s.server.is_neighbor { "yes" } else { "no" }.into(),
            s.key.clone().unwrap_or_else(|| "-".into()),
            replicate::summary(&s.replication, &s.server.name),
        ]);
    }
    t.render()
}

/// A server with its key's name and its replication status.
#[derive(Debug, Serialize)]
struct Listed {
    #[serde(flatten)]
    server: Server,
    #[serde(skip)]
    key: Option<String>,
    replication: Vec<replicate::Status>,
}

fn listed(store: &store::Store, list: Vec<Server>) -> Result<Vec<Listed>> {
    let keys = key_names(store, &list)?;
    store.read(|c| {
        list.into_iter()
            .zip(keys)
            .map(|(server, key)| {
                Ok(Listed {
                    replication: replicate::status(c, Some(server.id))?,
                    server,
                    key,
                })
            })
            .collect()
    })
}

/// `cpm sync` and `cpm neighbors sync`: every (server, repository) pair asked for.
pub fn sync(ctx: &Ctx, args: &SyncArgs, neighbors_only: bool) -> Result<ExitCode> {
    let store = ctx.open()?;
    let (targets, repositories) = store.read(|c| {
        let targets = match &args.server {
            Some(name) => vec![servers::get_by_name(c, name)?],
            None => servers::list(c, neighbors_only)?,
        };
        let repositories = match &args.repo {
            Some(spec) => {
                let (org, name) = names::repo_path(spec)?;
                vec![repos::find(c, &org, &name)?]
            }
            None => repos::list(c)?,
        };
        Ok::<_, crate::error::Error>((targets, repositories))
    })?;
    let mut outcomes = Vec::new();
    for server in &targets {
        for repo in &repositories {
            // Each push in its own short transaction: a slow server never holds the database.
            outcomes.push(store.write(|tx| replicate::push(tx, server, repo))?);
        }
    }
    let failed = outcomes.iter().any(|o| o.result != "ok");
    ctx.out.print(&outcomes, |list| {
        if list.is_empty() {
            return "Nothing to sync: no servers (see `cpm server add`) or no repositories.\n"
                .into();
        }
        let mut t = Table::new(&["SERVER", "REPOSITORY", "RESULT", "DETAILS"]);
        for o in list {
            let details = match o.result {
                "ok" if o.pushed.is_empty() => "up to date".to_string(),
                "ok" => format!("pushed {}", o.pushed.join(", ")),
                _ => o.error.clone().unwrap_or_default(),
            };
            t.row(vec![
                o.server.clone(),
                o.repository.clone(),
                o.result.to_string(),
                details,
            ]);
        }
        t.render()
    });
    Ok(if failed {
        ExitCode::from(crate::error::exit::FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

fn key_names(store: &store::Store, list: &[Server]) -> Result<Vec<Option<String>>> {
    store.read(|c| {
        list.iter()
            .map(|s| match s.ssh_key_id {
                Some(id) => ssh_keys::get(c, id).map(|k| Some(k.name)),
                None => Ok(None),
            })
            .collect()
    })
}

fn add(ctx: &Ctx, store: &store::Store, args: &ServerAddArgs, neighbor: bool) -> Result<Server> {
    write(
        ctx,
        store,
        "server.add",
        &args.name,
        &format!("{}:{}", args.host, args.port),
        |tx| {
            let ssh_key_id = match &args.key {
                Some(k) => Some(ssh_keys::get_by_name(tx, k)?.id),
                None => None,
            };
            servers::create(
                tx,
                &NewServer {
                    name: args.name.clone(),
                    host: args.host.clone(),
                    port: args.port,
                    is_neighbor: neighbor,
                    ssh_key_id,
                },
            )
        },
    )
}

pub fn run(ctx: &Ctx, cmd: ServerCommand) -> Result<()> {
    let store = ctx.open()?;
    match cmd {
        ServerCommand::Add(args) => {
            let server = add(ctx, &store, &args, args.neighbor)?;
            ctx.out.done(
                &server,
                &format!(
                    "Added server {} ({}:{})",
                    server.name, server.host, server.port
                ),
            );
        }
        ServerCommand::List => {
            let list = listed(&store, store.read(|c| servers::list(c, false))?)?;
            ctx.out.print(&list, |l| table(l));
        }
        ServerCommand::Show(name) => {
            let server = store.read(|c| servers::get_by_name(c, &name.name))?;
            let list = listed(&store, vec![server])?;
            ctx.out.print(&list[0], |s| {
                let mut text = table(std::slice::from_ref(s));
                for r in &s.replication {
                    text.push_str(&format!(
                        "  {}  last ok {}  {}\n",
                        r.repository,
                        r.last_ok_at
                            .as_deref()
                            .map_or("never".into(), store::timestamp::to_rfc3339),
                        r.last_error.as_deref().unwrap_or("")
                    ));
                }
                text
            });
        }
        ServerCommand::Remove(name) => {
            let server = write(ctx, &store, "server.remove", &name.name, "", |tx| {
                let s = servers::get_by_name(tx, &name.name)?;
                servers::delete(tx, s.id)?;
                Ok(s)
            })?;
            ctx.out
                .done(&server, &format!("Removed server {}", server.name));
        }
    }
    Ok(())
}

pub fn neighbors(ctx: &Ctx, cmd: NeighborsCommand) -> Result<()> {
    let store = ctx.open()?;
    match cmd {
        NeighborsCommand::List => {
            let list = listed(&store, store.read(|c| servers::list(c, true))?)?;
            ctx.out.print(&list, |l| table(l));
        }
        NeighborsCommand::Sync(args) => return sync(ctx, &args, true).map(|_| ()),
        NeighborsCommand::Ping(args) => ping(ctx, &store, &args)?,
        NeighborsCommand::Discover(args) => discover(ctx, &store, &args)?,
        NeighborsCommand::Add(args) => {
            let existing = store.read(|c| servers::get_by_name(c, &args.name)).ok();
            let server = match existing {
                Some(s) => write(ctx, &store, "neighbors.add", &args.name, "flagged", |tx| {
                    servers::set_neighbor(tx, s.id, true)?;
                    servers::get_by_name(tx, &args.name)
                })?,
                None => add(ctx, &store, &args, true)?,
            };
            ctx.out.done(
                &server,
                &format!(
                    "{} ({}:{}) is a neighbor",
                    server.name, server.host, server.port
                ),
            );
        }
        NeighborsCommand::Remove(name) => {
            let server = write(ctx, &store, "neighbors.remove", &name.name, "", |tx| {
                let s = servers::get_by_name(tx, &name.name)?;
                servers::set_neighbor(tx, s.id, false)?;
                servers::get_by_name(tx, &name.name)
            })?;
            ctx.out.done(&server, &format!("{} is no longer a neighbor (still registered; `cpm server remove {}` removes it)", server.name, server.name));
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct Pinged {
    name: String,
    host: String,
    port: u16,
    banner: Option<String>,
    banner_ms: Option<u128>,
    info: Option<neighbors::Info>,
    host_key: Option<String>,
    ok: bool,
}

fn ping(ctx: &Ctx, store: &store::Store, args: &crate::cli::PingArgs) -> Result<()> {
    let timeout = std::time::Duration::from_secs(args.timeout.max(1));
    let targets = store.read(|c| match &args.name {
        Some(n) => servers::get_by_name(c, n).map(|s| vec![s]),
        None => servers::list(c, true),
    })?;
    let known = replicate::known_hosts()?;
    let mut results = Vec::new();
    for server in targets {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(server.host.as_str(), server.port))
            .ok()
            .and_then(|mut a| a.next());
        let banner = addr.and_then(|a| neighbors::banner(a, timeout));
        let key = match server.ssh_key_id {
            Some(id) => Some(store.read(|c| ssh_keys::get(c, id))?),
            None => None,
        };
        let info = banner.as_ref().map(|_| {
            neighbors::info(
                &server.host,
                server.port,
                key.as_ref()
                    .map(|k| std::path::Path::new(&k.private_key_path)),
                &known,
                timeout,
            )
        });
        results.push(Pinged {
            ok: info.as_ref().is_some_and(|i| i.cpm),
            host_key: neighbors::pinned_fingerprint(&known, &server.host, server.port),
            banner_ms: banner.as_ref().map(|(_, d)| d.as_millis()),
            banner: banner.map(|(b, _)| b),
            info,
            name: server.name,
            host: server.host,
            port: server.port,
        });
    }
    ctx.out.print(&results, |list| {
        let mut t = Table::new(&["NAME", "ADDRESS", "RESULT", "BANNER", "INFO", "HOST KEY"]);
        for p in list {
            t.row(vec![
                p.name.clone(),
                format!("{}:{}", p.host, p.port),
                if p.ok {
                    "ok".into()
                } else if p.banner.is_none() {
                    "unreachable".into()
                } else {
                    "no cpm reply".into()
                },
                p.banner_ms.map_or("-".into(), |ms| format!("{ms} ms")),
                p.info.as_ref().map_or("-".into(), |i| {
                    if i.cpm {
                        format!("{} ms", i.millis)
                    } else {
                        i.reply.clone()
                    }
                }),
                p.host_key.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        t.render()
    });
    if results.iter().all(|p| p.ok) {
        Ok(())
    } else {
        Err(crate::error::Error::Denied(
            "some neighbors did not answer as cpm servers (see above)".into(),
        ))
    }
}

fn discover(ctx: &Ctx, store: &store::Store, args: &crate::cli::DiscoverArgs) -> Result<()> {
    let hosts = neighbors::hosts(&args.network)?;
    let key = match &args.key {
        Some(name) => Some(store.read(|c| ssh_keys::get_by_name(c, name))?),
        None => None,
    };
    let timeout = std::time::Duration::from_secs(args.timeout.max(1));
    let found = neighbors::discover(
        &hosts,
        args.port,
        key.as_ref()
            .map(|k| std::path::Path::new(&k.private_key_path)),
        timeout,
    )?;
    let found: Vec<_> = found.into_iter().filter(|f| f.cpm_banner).collect();
    ctx.out.print(&found, |list| {
        if list.is_empty() {
            return format!(
                "No cpm server answered on port {} in {}.\n",
                args.port, args.network
            );
        }
        let mut t = Table::new(&["ADDRESS", "CONFIRMED", "HOST KEY", "BANNER"]);
        for f in list {
            t.row(vec![
                format!("{}:{}", f.host, f.port),
                if f.confirmed {
                    "yes (info)".into()
                } else {
                    format!("no: {}", f.info)
                },
                f.host_key.clone().unwrap_or_else(|| "-".into()),
                f.banner.clone(),
            ]);
        }
        let mut text = t.render();
        text.push_str("Nothing was added. Check each host key with the peer's operator, then:\n");
        for f in list {
            text.push_str(&format!(
                "  cpm neighbors add NAME {} --port {}{}\n",
                f.host,
                f.port,
                args.key
                    .as_ref()
                    .map(|k| format!(" --key {k}"))
                    .unwrap_or_default()
            ));
        }
        text
    });
    Ok(())
}
