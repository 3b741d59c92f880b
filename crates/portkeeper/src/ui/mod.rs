//! `portman ui` (alias `gui`): a terminal UI over reservations and listening ports.
//!
//! The original Port Keeper shipped an Electron window for people who would rather look at their
//! ports than type commands; this is its counterpart for the terminal, so it works over SSH and
//! needs no browser engine. One tab lists the reservations with their live status, the other every
//! listening TCP and bound UDP socket on the machine; both refresh on a timer and on `r`, and a
//! selected port can be released (`d`) or its listeners stopped (`K`) after a y/n question.
//!
//! The module is split so the parts worth testing need no terminal: [`app`] holds the state and
//! turns keys into [`app::Action`]s, [`view`] draws that state into a ratatui frame, and this file
//! runs the loop, reads the database and the kernel between key presses, and carries out the
//! actions with the same library calls as `portman release` and `portman kill`.

pub mod app;
pub mod view;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event};
use rustix::process::Signal;
use store::Store;

use crate::cli::UiArgs;
use crate::commands::{Context, snapshot_of};
use crate::error::{Error, Result};
use crate::history::{self, Actor};
use crate::kill;
use crate::live::{self, Observed, ProbeUnseen};
use crate::port::Port;
use crate::ports;
use crate::sockets::Snapshot;

use app::{Action, App, Notice};

/// How long `K` waits after TERM before sending KILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(3);

/// The shortest auto-refresh interval, so `--refresh 0` does not spin.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Runs the terminal UI until the user quits; the terminal is restored on every way out.
pub fn run(ctx: &Context, args: &UiArgs) -> Result<u8> {
    if !std::io::stdout().is_terminal() {
        return Err(Error::Usage(
            "portman ui needs a terminal; use `portman list` or `portman scan --json` in scripts"
                .into(),
        ));
    }
    let store = ctx.open()?;
    let interval = args.refresh.max(MIN_INTERVAL);
    let mut app = App::new(interval);
    refresh(&store, &mut app);
    // `try_init` also installs a panic hook that restores the terminal before the panic message.
    let _restore = Restore;
    let mut terminal = ratatui::try_init().map_err(terminal_error)?;
    event_loop(&mut terminal, &store, &mut app, interval)?;
    Ok(0)
}

/// Leaves raw mode and the alternate screen when dropped: on return, on `?`, and on unwinding.
#[derive(Debug)]
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        // Nothing useful can be done if this fails; the terminal is being given back anyway.
        let _ = ratatui::try_restore();
    }
}

fn terminal_error(e: std::io::Error) -> Error {
    Error::Other(format!("terminal: {e}"))
}

fn event_loop(
    terminal: &mut DefaultTerminal,
    store: &Store,
    app: &mut App,
    interval: Duration,
) -> Result<()> {
    let mut next_refresh = Instant::now() + interval;
    loop {
        terminal
            .draw(|frame| view::draw(app, frame))
            .map_err(terminal_error)?;
        let wait = next_refresh.saturating_duration_since(Instant::now());
        if event::poll(wait).map_err(terminal_error)? {
            let Event::Key(key) = event::read().map_err(terminal_error)? else {
                // A resize or focus change: just draw again.
                continue;
            };
            let refresh_now = match app.handle_key(key) {
                Action::None => false,
                Action::Quit => return Ok(()),
                Action::Refresh => true,
                Action::Release(port) => {
                    let notice = notice_of(release(store, port));
                    app.set_notice(notice);
                    true
                }
                Action::Kill { port, pids } => {
                    app.set_notice(Notice::Info(format!(
                        "Stopping the listeners on port {port}..."
                    )));
                    terminal
                        .draw(|frame| view::draw(app, frame))
                        .map_err(terminal_error)?;
                    let notice = notice_of(kill_listeners(store, port, &pids));
                    app.set_notice(notice);
                    true
                }
            };
            if !refresh_now && Instant::now() < next_refresh {
                continue;
            }
        }
        refresh(store, app);
        next_refresh = Instant::now() + interval;
    }
}

fn notice_of(result: Result<String>) -> Notice {
    match result {
        Ok(text) => Notice::Info(text),
        Err(e) => Notice::Error(e.to_string()),
    }
}

/// Reads the reservations and the sockets again; a failure is shown, not fatal.
fn refresh(store: &Store, app: &mut App) {
    match load(store) {
        Ok((reserved, snapshot)) => {
            let now = crate::timestamp::now();
            let clock = now.split_once(' ').map_or(now.as_str(), |(_, t)| t);
            app.set_data(reserved, snapshot, format!("{clock} UTC"));
        }
        Err(e) => app.refresh_failed(e.to_string()),
    }
}

/// One kernel snapshot, and the held reservations observed against it (which also brings their
/// stored status up to date, as `portman list` does), so both tables show the same moment.
fn load(store: &Store) -> Result<(Vec<Observed>, Snapshot)> {
    let snapshot = Snapshot::take().map_err(|e| Error::Scan(e.to_string()))?;
    let rows = store.read(|c| ports::list(c, &ports::Filter::default()))?;
    let observed = live::observe(store, &snapshot, rows, ProbeUnseen::Yes, "ui")?;
    let held = observed
        .into_iter()
        .filter(|o| o.reservation.status.is_held())
        .collect();
    Ok((held, snapshot))
}

/// Releases `port` if it is still held; says what happened.
fn release(store: &Store, port: Port) -> Result<String> {
    let actor = Actor::current("ui");
    let project = store.write(|tx| {
        let Some(row) = ports::get(tx, port)?.filter(|r| r.status.is_held()) else {
            return Ok::<_, Error>(None);
        };
        ports::release(tx, port)?;
        history::annotate(tx, port, &actor, "")?;
        Ok(Some(row.project_name))
    })?;
    Ok(match project {
        Some(project) => format!("Released port {port} (project {project})."),
        None => format!("Port {port} was no longer reserved; nothing to release."),
    })
}

/// Signals the listeners on `port` that the user confirmed (`pids`), after checking again what
/// listens there now; records the kill in the port's history.
fn kill_listeners(store: &Store, port: Port, pids: &[u32]) -> Result<String> {
    let snapshot = snapshot_of([port.get()])?;
    let targets = kill::targets(&snapshot, port, None)?;
    if targets.is_empty() {
        return Ok(format!(
            "Nothing listens on port {port} any more; nothing signalled."
        ));
    }
    let unconfirmed: Vec<String> = targets
        .iter()
        .filter(|t| !pids.contains(&t.pid))
        .map(|t| format!("pid {} ({})", t.pid, t.process))
        .collect();
    if !unconfirmed.is_empty() {
        return Err(Error::Conflict(format!(
            "port {port} now also has {} listening, which you did not confirm; nothing was signalled; press K again",
            unconfirmed.join(", ")
        )));
    }
    let outcome = kill::signal_all(&targets, Signal::TERM, KILL_TIMEOUT)?;
    let actor = Actor::current("ui");
    let details = kill::record(
        store,
        port,
        Signal::TERM,
        &targets,
        &outcome,
        KILL_TIMEOUT,
        &actor,
    )?;
    Ok(format!("Port {port}: sent {details}."))
}
