//! `cpm serve`: the built-in SSH git server, the front door for hosts without an sshd of their own.
//!
//! It speaks SSH with russh, on a tokio runtime of its own: [`connection`] authenticates each client
//! by its public key alone (the key's fingerprint must be one of a user's keys; the SSH user name
//! does not matter) and refuses everything but session channels running one command; [`channel`]
//! runs that command through the same [`crate::dispatch`] decision `cpm shell` uses, streaming
//! git's pack protocol between the client and the system `git` without holding packs in memory.
//! SQLite is only touched from [`AsyncStore`]'s writer thread and read pool, never on executor
//! threads. The server takes no instance lock: the CLI keeps working while it runs, and changes
//! it makes (a new key, a revoked grant) apply to the next connection or command.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use russh::server::Config;
use russh::{MethodKind, MethodSet, SshId};
use store::AsyncStore;
use tokio::net::TcpListener;

use crate::cli::ServeArgs;
use crate::commands::Ctx;
use crate::error::{Error, Result};
use crate::schema::TOOL;

mod channel;
mod connection;
pub mod host_key;

/// What every connection shares.
#[derive(Debug)]
struct Shared {
    /// The database, for key lookups, access decisions and the audit log.
    store: AsyncStore,
    /// The repository root every repository must lie inside.
    root: PathBuf,
}

/// How long a rejected authentication takes, whatever the reason, so that timing tells nothing.
const AUTH_REJECTION_TIME: Duration = Duration::from_millis(200);

/// Runs the server until SIGINT or SIGTERM.
pub fn run(ctx: &Ctx, args: &ServeArgs) -> Result<ExitCode> {
    let host_key_path = match &args.host_key {
        Some(path) => path.clone(),
        None => host_key::default_path()?,
    };
    let host_key = host_key::load_or_create(&host_key_path)?;
    // Creates or migrates the database (and adopts an original one) before serving from it.
    drop(ctx.open()?);
    let store = AsyncStore::open(&TOOL, &ctx.db)?;
    let root = ctx.root()?.path().to_path_buf();
    let shared = Arc::new(Shared { store, root });

    let config = Config {
        server_id: SshId::Standard(format!("SSH-2.0-cpm_{}", env!("CARGO_PKG_VERSION")).into()),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: AUTH_REJECTION_TIME,
        // OpenSSH clients open with a "none" request to learn the methods: answer it at once.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key.key],
        max_auth_attempts: 6,
        inactivity_timeout: Some(Duration::from_secs(600)),
        keepalive_interval: Some(Duration::from_secs(60)),
        nodelay: true,
        ..Config::default()
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cpm-serve")
        .build()
        .map_err(|e| Error::io("the tokio runtime", e))?;
    let result = runtime.block_on(async {
        let listener = TcpListener::bind(args.listen)
            .await
            .map_err(|e| Error::io(args.listen.to_string(), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(args.listen.to_string(), e))?;
        eprintln!(
            "cpm serve: listening on {addr}, host key {} ({})",
            host_key.fingerprint, host_key.algorithm
        );
        accept_until_stopped(listener, Arc::new(config), shared).await
    });
    // Connections still open are dropped with the runtime; their git processes are killed.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result.map(|()| ExitCode::SUCCESS)
}

/// Accepts connections, each on its own task, until a signal asks to stop.
async fn accept_until_stopped(
    listener: TcpListener,
    config: Arc<Config>,
    shared: Arc<Shared>,
) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| Error::io("SIGTERM", e))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| Error::io("SIGINT", e))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    tokio::spawn(connection::run(socket, peer, Arc::clone(&config), Arc::clone(&shared)));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: let connections finish, then go on.
                    eprintln!("cpm serve: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    eprintln!("cpm serve: stopping");
    Ok(())
}

/// One log line on stderr: `cpm serve: PEER WHO: MESSAGE`.
fn log(peer: SocketAddr, who: &str, message: impl Display) {
    eprintln!("cpm serve: {peer} {who}: {message}");
}

/// Text from a client, made safe to print on one line (control characters escaped, length capped).
fn printable(text: &str) -> String {
    const MAX: usize = 200;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_is_logged_on_one_line() {
        assert_eq!(printable("git-upload-pack 'a/b'"), "git-upload-pack 'a/b'");
        assert_eq!(printable("x\ny\u{1b}"), "x\\ny\\u{1b}");
        assert_eq!(printable(&"a".repeat(300)).chars().count(), 201);
    }
}
