//! `portman run -n PROJECT [--port N] -- CMD…`: reserve a port, run the command with it, release it
//! when the command exits or portman is told to stop.
//!
//! The child gets `PORT` in its environment and `{PORT}` replaced in its arguments. portman stays
//! alive as its parent: INT, TERM, HUP and QUIT are caught, passed on to the child when another
//! process sent them (a terminal's Ctrl-C already reaches the child, being in the same process
//! group, so it is not sent twice), and once the child has exited the reservation is released and
//! portman exits with the child's status (128 + signal if it was killed by one).

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;

use super::request::{range, snapshot_in};
use super::{Context, snapshot_of, template};
use crate::cli::RunArgs;
use crate::error::{Error, Result};
use crate::history::{self, Actor};
use crate::port::Port;
use crate::ports;
use crate::request::{self, Request, Reserved};

pub fn run(ctx: &Context, args: &RunArgs) -> Result<u8> {
    let mut template = template(&args.fields)?;
    let project = args.fields.project.trim().to_string();
    if template.description.is_none() {
        template.description = Some(format!("portman run: {}", args.command.join(" ")));
    }
    let store = ctx.open()?;
    let actor = Actor::current("run");

    let (port, outcome) = match args.port {
        Some(port) => {
            let snapshot = snapshot_of([port.get()])?;
            if let Some(s) = snapshot.on_port(port.get()).next() {
                let who = s.owners.first().map_or_else(
                    || "a process".to_string(),
                    |o| format!("pid {} ({})", o.pid, o.process),
                );
                return Err(Error::Conflict(format!(
                    "port {port} is in use by {who} on {} {}; stop it (`portman kill {port}`) or leave out --port to get a free one",
                    s.proto,
                    s.endpoint()
                )));
            }
            let outcome =
                store.write(|tx| request::reserve(tx, port, &project, &template, &actor))?;
            (port, outcome)
        }
        None => {
            let range = range(&args.search)?;
            let req = Request {
                project: project.clone(),
                count: 1,
                range,
                avoid: args.search.avoid.clone(),
                contiguous: false,
                stable: args.search.stable,
                random: false,
                template: template.clone(),
            };
            let snapshot = snapshot_in(range)?;
            let allocation = store.write(|tx| request::allocate(tx, &req, &snapshot, &actor))?;
            let port = *allocation
                .ports
                .first()
                .ok_or_else(|| Error::NoFreePorts(format!("no free port in {range}")))?;
            let outcome = if allocation.reused.contains(&port) {
                Reserved::Updated
            } else {
                Reserved::Reserved
            };
            (port, outcome)
        }
    };

    let result = supervise(port, &args.command);
    // Release what this run reserved (a reservation the project held before is left alone).
    if outcome == Reserved::Reserved {
        let details = match &result {
            Ok(code) => format!("command exited with status {code}"),
            Err(e) => format!("command failed: {e}"),
        };
        let released = store.write(|tx| {
            if let Some(row) = ports::get(tx, port)?
                && row.status.is_held()
                && row.project_name == project
            {
                ports::release(tx, port)?;
                history::annotate(tx, port, &Actor::current("run"), &details)?;
            }
            Ok::<_, Error>(())
        });
        if let Err(e) = released {
            eprintln!("portman: could not release port {port}: {e}");
        }
    }
    result
}

/// Runs the child with the port and waits for it, passing on signals. Returns its exit status.
fn supervise(port: Port, command: &[String]) -> Result<u8> {
    let port_text = port.to_string();
    let mut argv = command.iter().map(|a| a.replace("{PORT}", &port_text));
    let program = argv
        .next()
        .ok_or_else(|| Error::Usage("no command given after --".into()))?;
    // Catch the signals before the child exists, so none can kill us between spawn and wait.
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
        .map_err(|e| Error::Other(format!("cannot install signal handlers: {e}")))?;
    let handle = signals.handle();
    eprintln!(
        "portman: port {port} reserved; running {}",
        command.join(" ")
    );
    let mut child = Command::new(&program)
        .args(argv)
        .env("PORT", &port_text)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!(
                "command '{program}' not found; check the name and PATH"
            )),
            _ => Error::io(&program, e),
        })?;
    let child_pid = rustix::process::Pid::from_raw(child.id() as i32);
    let forwarder = std::thread::spawn(move || {
        for info in signals.forever() {
            // A signal from the terminal reached the child already; pass on only those sent to us.
            if info.process.is_none() {
                continue;
            }
            let signal = match info.signal {
                SIGINT => rustix::process::Signal::INT,
                SIGHUP => rustix::process::Signal::HUP,
                SIGQUIT => rustix::process::Signal::QUIT,
                _ => rustix::process::Signal::TERM,
            };
            if let Some(pid) = child_pid {
                let _ = rustix::process::kill_process(pid, signal);
            }
        }
    });
    let status = child.wait().map_err(|e| Error::io(&program, e));
    handle.close();
    let _ = forwarder.join();
    let status = status?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        _ => 1,
    })
}
