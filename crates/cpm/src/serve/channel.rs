//! One session channel: the command a client runs, decided by [`crate::dispatch`] and run to its end.
//!
//! A channel gets one task, which owns both halves of it. It keeps the client's `GIT_PROTOCOL`,
//! answers a shell request with a one-line refusal, and for `exec` makes exactly the decision
//! `cpm shell` makes: a refusal is one `cpm: …` line on stderr and exit status 1, an admin reply is
//! written out, and a git command runs as a child process whose stdin, stdout and stderr are
//! pumped to and from the channel. Output waits for the client's window before it is read further,
//! so a large pack streams through a fixed amount of memory and a slow client slows `git` down
//! instead of filling the server. Pushes are audited with the refs they moved before the client is
//! told the exit status, so `cpm log` shows a push as soon as `git push` returns.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};

use super::{Shared, log, printable};
use crate::dispatch::{self, Prepared};
use crate::error::{Error, Result};
use crate::users::User;

/// The refusal a shell request gets.
const NO_SHELL: &str = "cpm: interactive shells are not available; use git\n";

/// Bytes read from git's stdout or stderr at a time.
const CHUNK: usize = 64 * 1024;

/// How long git may take to finish on its own after its client went away.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// A channel's task, with what it needs to know about its connection.
#[derive(Debug)]
pub(super) struct Task {
    pub peer: SocketAddr,
    pub user: Arc<User>,
    pub shared: Arc<Shared>,
    /// Held while the channel runs, so the connection can count its open sessions.
    pub _session: Arc<()>,
}

/// How pumping ended.
enum End {
    /// git exited and its output was all sent.
    Exited(i32),
    /// The client closed the channel or went away first; git's exit status, if it exited.
    Gone(Option<i32>),
}

impl Task {
    /// Waits for the channel's command (or shell request) and serves it.
    pub async fn run(self, channel: Channel<Msg>) {
        let (mut rx, tx) = channel.split();
        let mut protocol = None;
        while let Some(msg) = rx.wait().await {
            match msg {
                ChannelMsg::SetEnv {
                    variable_name,
                    variable_value,
                    ..
                } if variable_name == "GIT_PROTOCOL" => protocol = Some(variable_value),
                ChannelMsg::Exec { command, .. } => {
                    self.exec(&mut rx, &tx, &command, protocol.as_deref()).await;
                    return;
                }
                ChannelMsg::RequestShell { .. } => {
                    self.log("shell", "refused: interactive shells are not available");
                    let _ = tx
                        .extended_data_bytes(1, NO_SHELL.as_bytes().to_vec())
                        .await;
                    finish(&tx, 1).await;
                    return;
                }
                ChannelMsg::Close => return,
                _ => {}
            }
        }
    }

    fn log(&self, command: &str, outcome: impl std::fmt::Display) {
        log(
            self.peer,
            &self.user.username,
            format_args!("{} → {outcome}", printable(command)),
        );
    }

    async fn exec(
        &self,
        rx: &mut ChannelReadHalf,
        tx: &ChannelWriteHalf<Msg>,
        command: &[u8],
        protocol: Option<&str>,
    ) {
        let started = Instant::now();
        let line = String::from_utf8_lossy(command).into_owned();
        let prepared = match self.decide(command, protocol).await {
            Ok(prepared) => prepared,
            Err(e) => {
                self.log(&line, format_args!("refused: {e}"));
                let _ = tx
                    .extended_data_bytes(1, format!("cpm: {e}\n").into_bytes())
                    .await;
                finish(tx, 1).await;
                return;
            }
        };
        match prepared {
            Prepared::Reply(text) => {
                let _ = tx.data_bytes(text.into_bytes()).await;
                finish(tx, 0).await;
                let ms = started.elapsed().as_millis();
                self.log(&line, format_args!("ok after {ms} ms"));
            }
            Prepared::Git {
                command,
                repo,
                user,
                push,
            } => {
                let before = if push {
                    let path = repo.path.clone();
                    tokio::task::spawn_blocking(move || dispatch::refs(&path))
                        .await
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                let end = match run_git(command, rx, tx).await {
                    Ok(end) => end,
                    Err(e) => {
                        self.log(&line, format_args!("failed: {e}"));
                        let _ = tx
                            .extended_data_bytes(1, format!("cpm: {e}\n").into_bytes())
                            .await;
                        finish(tx, 1).await;
                        return;
                    }
                };
                let code = match end {
                    End::Exited(code) | End::Gone(Some(code)) => code,
                    End::Gone(None) => 1,
                };
                if push {
                    let recorded = self
                        .shared
                        .store
                        .with_store(move |store| {
                            dispatch::record_push(store, &user, &repo, &before, code)
                        })
                        .await;
                    match recorded {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => self.log(&line, format_args!("cannot audit the push: {e}")),
                        Err(e) => self.log(&line, format_args!("cannot audit the push: {e}")),
                    }
                }
                let ms = started.elapsed().as_millis();
                match end {
                    End::Exited(code) => {
                        finish(tx, code).await;
                        self.log(&line, format_args!("git exited with {code} after {ms} ms"));
                    }
                    End::Gone(_) => self.log(
                        &line,
                        format_args!("client went away after {ms} ms (git: {code})"),
                    ),
                }
            }
        }
    }

    /// Parses the command and decides it for this user, off the executor threads.
    async fn decide(&self, command: &[u8], protocol: Option<&str>) -> Result<Prepared> {
        let line = std::str::from_utf8(command)
            .map_err(|_| Error::Denied("the command is not valid UTF-8".into()))?;
        let request = dispatch::parse(line)?;
        let root = self.shared.root.clone();
        let user = Arc::clone(&self.user);
        let protocol = protocol.map(str::to_string);
        self.shared
            .store
            .read(move |c| dispatch::prepare(c, &root, &user, &request, protocol.as_deref()))
            .await
    }
}

/// Exit status, EOF and close: the end of a channel. Errors mean the client is gone already.
async fn finish(tx: &ChannelWriteHalf<Msg>, code: i32) {
    let _ = tx.exit_status(u32::try_from(code).unwrap_or(1)).await;
    let _ = tx.eof().await;
    let _ = tx.close().await;
}

/// Runs git with its stdio wired to the channel, until it exits and its output is sent.
async fn run_git(
    command: std::process::Command,
    rx: &mut ChannelReadHalf,
    tx: &ChannelWriteHalf<Msg>,
) -> Result<End> {
    let mut command = tokio::process::Command::from(command);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Should this task be dropped (the server stopping), git must not outlive it.
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| Error::Git(format!("cannot run git ({e})")))?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Error::Git("git started without its pipes".into()));
    };
    let finished = {
        let outputs = async {
            tokio::join!(forward(stdout, tx, None), forward(stderr, tx, Some(1)));
        };
        tokio::pin!(outputs);
        let input = feed(rx, stdin);
        tokio::pin!(input);
        tokio::select! {
            () = &mut outputs => true,
            () = &mut input => false,
        }
        // Leaving this block drops git's pipes: a git still writing to a client that left gets
        // EPIPE, one still reading gets EOF.
    };
    if finished {
        return Ok(End::Exited(exit_code(&mut child).await));
    }
    match tokio::time::timeout(ORPHAN_GRACE, child.wait()).await {
        Ok(Ok(status)) => Ok(End::Gone(Some(status.code().unwrap_or(1)))),
        _ => {
            let _ = child.kill().await;
            Ok(End::Gone(None))
        }
    }
}

async fn exit_code(child: &mut Child) -> i32 {
    match child.wait().await {
        Ok(status) => status.code().unwrap_or(1),
        Err(_) => 1,
    }
}

/// Copies one of git's outputs to the channel (`ext` 1 is stderr), waiting for window space, until
/// git closes it or the client is gone.
async fn forward(mut pipe: impl AsyncRead + Unpin, tx: &ChannelWriteHalf<Msg>, ext: Option<u32>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = buf.get(..n).unwrap_or_default().to_vec();
        let sent = match ext {
            None => tx.data_bytes(chunk).await,
            Some(ext) => tx.extended_data_bytes(ext, chunk).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Copies the client's data to git's stdin and closes it at the client's EOF; returns when the
/// client closes the channel or goes away, which before git is done means it gave up.
async fn feed(rx: &mut ChannelReadHalf, stdin: ChildStdin) {
    let mut stdin = Some(stdin);
    while let Some(msg) = rx.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if let Some(pipe) = stdin.as_mut()
                    && pipe.write_all(&data).await.is_err()
                {
                    // git stopped reading (it exited); what the client still sends is dropped.
                    stdin = None;
                }
            }
            ChannelMsg::Eof => stdin = None,
            ChannelMsg::Close => return,
            _ => {}
        }
    }
}
