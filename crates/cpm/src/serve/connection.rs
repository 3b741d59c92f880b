//! One SSH connection: who the client is, and which of its requests are refused outright.
//!
//! [`Connection`] is russh's per-connection handler. Authentication is by public key only: the
//! key's SHA256 fingerprint is looked up among the users' keys, and an unknown key is rejected
//! before the client even proves it holds it, so it sees "Permission denied (publickey)". What an
//! authenticated client may open is one kind of channel, a session, on which it may set
//! `GIT_PROTOCOL` and then run one command (or ask for a shell, which [`super::channel`] answers
//! with a refusal); PTYs, X11, agent forwarding, subsystems such as sftp and every kind of port
//! forwarding are refused here and logged.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use russh::keys::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, Pty};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{Shared, log};
use crate::users::{self, User};

/// Session channels one connection may have open at once (OpenSSH's `MaxSessions`).
const MAX_SESSIONS: usize = 10;

/// Serves one accepted TCP connection to its end.
pub(super) async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
) {
    if config.nodelay {
        // Small protocol messages (git's negotiation) must not wait for Nagle.
        let _ = socket.set_nodelay(true);
    }
    let handler = Connection {
        peer,
        shared,
        user: None,
        offered: None,
        started: HashSet::new(),
        sessions: Arc::new(()),
    };
    let session = match russh::server::run_stream(config, QuickAck::new(socket), handler).await {
        Ok(session) => session,
        Err(e) => {
            log(peer, "-", format_args!("SSH handshake failed: {e}"));
            return;
        }
    };
    if let Err(e) = session.await {
        match e {
            // The client went away; nothing worth a line.
            russh::Error::Disconnect | russh::Error::HUP | russh::Error::IO(_) => {}
            e => log(peer, "-", format_args!("connection ended: {e}")),
        }
    }
}

/// Reads at the start of a connection after which the kernel is left to delay ACKs as it likes.
const QUICK_ACK_READS: u32 = 64;

/// The client's socket, acknowledging what it receives at once during the handshake.
///
/// OpenSSH's client leaves Nagle's algorithm on for non-interactive sessions, and sends its key
/// exchange in two writes; with Linux delaying the ACK of the first (we have nothing to send at
/// that moment), the second waits about 40 ms for it. Asking for a quick ACK after each read of the
/// handshake (the kernel clears the flag by itself) saves those 40 ms on every connection.
#[derive(Debug)]
struct QuickAck {
    socket: TcpStream,
    reads_left: u32,
}

impl QuickAck {
    fn new(socket: TcpStream) -> QuickAck {
        QuickAck {
            socket,
            reads_left: QUICK_ACK_READS,
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.socket).poll_read(cx, buf);
        if this.reads_left > 0 && matches!(polled, Poll::Ready(Ok(()))) {
            this.reads_left -= 1;
            let _ = rustix::net::sockopt::set_tcp_quickack(&this.socket, true);
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

/// russh's handler for one connection.
#[derive(Debug)]
pub(super) struct Connection {
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// Whom the client authenticated as.
    user: Option<Arc<User>>,
    /// The key last offered and accepted, with its owner, so the signed request that follows
    /// needs no second lookup.
    offered: Option<(String, User)>,
    /// Channels that already run (or refused) their one command.
    started: HashSet<ChannelId>,
    /// One clone per running channel task: the count of open sessions.
    sessions: Arc<()>,
}

impl Connection {
    /// The user a key fingerprint belongs to. A database failure is logged and counts as unknown.
    async fn owner(&self, fingerprint: &str) -> Option<User> {
        if let Some((offered, user)) = &self.offered
            && offered == fingerprint
        {
            return Some(user.clone());
        }
        let fp = fingerprint.to_string();
        match self
            .shared
            .store
            .read(move |c| users::key_owner(c, &fp))
            .await
        {
            Ok(owner) => owner,
            Err(e) => {
                log(
                    self.peer,
                    "-",
                    format_args!("cannot look up key {fingerprint}: {e}"),
                );
                None
            }
        }
    }

    fn who(&self) -> &str {
        self.user.as_deref().map_or("-", |u| u.username.as_str())
    }

    fn refuse(
        &self,
        session: &mut Session,
        channel: ChannelId,
        what: &str,
    ) -> Result<(), russh::Error> {
        log(self.peer, self.who(), format_args!("refused {what}"));
        session.channel_failure(channel)
    }

    /// Exec and shell: the first of them on a channel goes ahead (its task runs it), any later one
    /// is refused.
    fn start(&mut self, session: &mut Session, channel: ChannelId) -> Result<(), russh::Error> {
        if self.started.insert(channel) {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let fingerprint = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
        match self.owner(&fingerprint).await {
            Some(user) => {
                self.offered = Some((fingerprint, user));
                Ok(Auth::Accept)
            }
            None => {
                log(
                    self.peer,
                    "-",
                    format_args!("rejected key {fingerprint}: not a registered user key"),
                );
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        match self.owner(&fingerprint).await {
            Some(user) => {
                log(
                    self.peer,
                    &user.username,
                    format_args!("authenticated with key {fingerprint}"),
                );
                self.user = Some(Arc::new(user));
                self.offered = None;
                Ok(Auth::Accept)
            }
            None => Ok(Auth::reject()),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(user) = self.user.clone() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        // The handler's own clone counts one.
        if Arc::strong_count(&self.sessions) > MAX_SESSIONS {
            log(
                self.peer,
                self.who(),
                format_args!("refused a session channel: {MAX_SESSIONS} are open"),
            );
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        reply.accept().await;
        let task = super::channel::Task {
            peer: self.peer,
            user,
            shared: Arc::clone(&self.shared),
            _session: Arc::clone(&self.sessions),
        };
        tokio::spawn(task.run(channel));
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.started.remove(&channel);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(session, channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Accepted only so that the channel's task can say why there is no shell.
        self.start(session, channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The channel's task keeps the value; other variables (LANG, …) are quietly declined.
        if variable_name == "GIT_PROTOCOL" {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(session, channel, "a PTY")
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(session, channel, "X11 forwarding")
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let what = format!("the subsystem '{}'", super::printable(name));
        self.refuse(session, channel, &what)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        log(self.peer, self.who(), "refused agent forwarding");
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        log(
            self.peer,
            self.who(),
            format_args!(
                "refused remote port forwarding ({}:{port})",
                super::printable(address)
            ),
        );
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        log(self.peer, self.who(), "refused remote socket forwarding");
        Ok(false)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        log(
            self.peer,
            self.who(),
            format_args!(
                "refused port forwarding to {}:{port_to_connect}",
                super::printable(host_to_connect)
            ),
        );
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        log(self.peer, self.who(), "refused socket forwarding");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }
}
