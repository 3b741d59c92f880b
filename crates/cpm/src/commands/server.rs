//! `cpm server …` and `cpm neighbors …`: the servers repositories replicate to. Part 2 adds
//! ping, sync and discovery.

use super::{Ctx, write};
use crate::cli::{NeighborsCommand, ServerAddArgs, ServerCommand};
use crate::error::Result;
use crate::output::Table;
use crate::servers::{self, NewServer, Server};
use crate::ssh_keys;

fn table(list: &[Server], keys: &[Option<String>]) -> String {
    let mut t = Table::new(&["NAME", "HOST", "PORT", "NEIGHBOR", "KEY", "CREATED"]);
    for (s, k) in list.iter().zip(keys) {
        t.row(vec![
            s.name.clone(),
            s.host.clone(),
            s.port.to_string(),
            if s.is_neighbor { "yes" } else { "no" }.into(),
            k.clone().unwrap_or_else(|| "-".into()),
            store::timestamp::to_rfc3339(&s.created_at),
        ]);
    }
    t.render()
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
            let list = store.read(|c| servers::list(c, false))?;
            let keys = key_names(&store, &list)?;
            ctx.out.print(&list, |l| table(l, &keys));
        }
        ServerCommand::Show(name) => {
            let server = store.read(|c| servers::get_by_name(c, &name.name))?;
            let keys = key_names(&store, std::slice::from_ref(&server))?;
            ctx.out
                .print(&server, |s| table(std::slice::from_ref(s), &keys));
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
            let list = store.read(|c| servers::list(c, true))?;
            let keys = key_names(&store, &list)?;
            ctx.out.print(&list, |l| table(l, &keys));
        }
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
