//! The signals both binaries act on: SIGTERM and SIGINT stop cleanly, SIGHUP reloads.
//!
//! Handlers are installed once at start (before any work, so an early SIGTERM is not lost and
//! does not kill the process mid-write) and awaited from inside the main loops, which lets those
//! loops finish what they were doing (report usage, stop the forwarder) before exiting.

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM or SIGINT: stop.
    Stop(&'static str),
    /// SIGHUP: reload the configuration.
    Reload,
}

/// Installed signal handlers.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers (inside a tokio runtime).
    pub fn install() -> io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal. Cancel-safe.
    pub async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.term.recv() => Request::Stop("SIGTERM"),
            _ = self.int.recv() => Request::Stop("SIGINT"),
            _ = self.hup.recv() => Request::Reload,
        }
    }

    /// The next stop request; SIGHUP is ignored (the fleet client has nothing to reload: its
    /// rules come from the server). Cancel-safe.
    pub async fn stop(&mut self) -> &'static str {
        loop {
            if let Request::Stop(name) = self.next().await {
                return name;
            }
        }
    }
}
