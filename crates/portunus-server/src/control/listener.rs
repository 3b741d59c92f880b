//! The control listener: where `portunus-client` edge nodes enroll and hold their session.
//!
//! Each connection is TLS (the client pins the server certificate) and speaks the framed JSON
//! protocol of [`portunus_core::wire`]. The first frame decides what the connection is: an
//! `enroll` redeems a one-time code for a client token and ends; a `hello` authenticates with
//! that token and opens a long-lived session on which the server pushes the client's desired
//! state (all its enabled rules, stamped with the client's generation) on connect and again
//! whenever [`Hub::notify`](super::hub::Hub::notify) says it changed, and the client reports back
//! what it applied. Rules are pushed on *every* connect, so a client that was away (or a server
//! that restarted) converges without anyone having to re-push anything.
//!
//! Unauthenticated work is bounded: a handshake and the first frame each get 10 seconds, and at
//! most [`MAX_PENDING`] connections may be in that phase at once. Sessions are dropped after 90
//! seconds without a frame (clients ping every ~30). All SQLite work goes through
//! [`store::AsyncStore`], never on the async threads, and secrets (codes, tokens) are never
//! logged or audited — only their outcome.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portunus_core::wire::{
    Caps, ClientMessage, FrameReader, PROTOCOL_VERSION, RuleSpec, RuleState, RuleStatus,
    ServerMessage, write_frame,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, rustls};

use super::hub::Signal;
use crate::app::Shared;
use crate::audit::{Event, Outcome};
use crate::error::Error;
use crate::ids;

/// How long a client has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has, after the handshake, to send its first frame.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// A session that sends nothing for this long is closed (clients ping every ~30 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one frame may take to write before the peer is considered gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `serve` waits for sessions to say goodbye at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Connections allowed in the unauthenticated phase (handshake and first frame) at once.
pub const MAX_PENDING: usize = 256;

/// The longest client name taken from an enrollment.
const MAX_NAME_CHARS: usize = 64;
/// The longest failure reason stored for a rule.
const MAX_REASON_CHARS: usize = 512;

const INVALID_CODE_MESSAGE: &str =
    "the enrollment code is unknown, used or expired; ask the operator for a new one";

/// Accepts control connections until `shutdown` becomes `true` (or its sender is dropped), then
/// stops accepting, tells open sessions the server is going away, and returns once they have
/// closed (or after [`SHUTDOWN_GRACE`]).
pub async fn serve(
    app: Shared,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutting_down(&mut shutdown) => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    eprintln!("event=control.session_panicked error={e}");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(connection(
                        Arc::clone(&app),
                        acceptor.clone(),
                        tcp,
                        remote,
                        Arc::clone(&pending),
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    eprintln!("event=control.accept_failed error={e}");
                    sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    let drained = timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        eprintln!(
            "event=control.shutdown_forced sessions={}",
            connections.len()
        );
    }
    connections.shutdown().await;
}

/// Resolves when shutdown was requested (or can no longer be, because the sender is gone).
async fn shutting_down(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

type Tls = TlsStream<TcpStream>;

/// One accepted connection after its handshake: a cancel-safe frame reader and a writer.
struct Conn {
    reader: FrameReader<ReadHalf<Tls>>,
    writer: WriteHalf<Tls>,
    remote: SocketAddr,
}

impl Conn {
    /// Sends one frame, giving up after [`WRITE_TIMEOUT`].
    async fn send(&mut self, msg: &ServerMessage) -> io::Result<()> {
        timeout(WRITE_TIMEOUT, write_frame(&mut self.writer, msg))
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// Ends the TLS session (close_notify) and the connection.
    async fn close(mut self) {
        let _ = timeout(WRITE_TIMEOUT, self.writer.shutdown()).await;
    }

    /// Sends an error and closes.
    async fn fail(mut self, code: &str, message: impl Into<String>, terminal: bool) {
        let _ = self
            .send(&ServerMessage::error(code, message, terminal))
            .await;
        self.close().await;
    }
}

async fn connection(
    app: Shared,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
    pending: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(Ok(permit)) = timeout(HANDSHAKE_TIMEOUT, pending.acquire_owned()).await else {
        eprintln!("event=control.too_many_pending remote={remote}");
        return;
    };
    let stream = match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            eprintln!("event=control.handshake_failed remote={remote} error=\"{e}\"");
            return;
        }
        Err(_) => {
            eprintln!("event=control.handshake_timeout remote={remote}");
            return;
        }
    };
    let (read, write) = tokio::io::split(stream);
    let mut conn = Conn {
        reader: FrameReader::new(read),
        writer: write,
        remote,
    };
    let first = tokio::select! {
        () = shutting_down(&mut shutdown) => {
            conn.fail("shutting_down", "the server is shutting down; try again shortly", false).await;
            return;
        }
        first = timeout(FIRST_FRAME_TIMEOUT, conn.reader.next::<ClientMessage>()) => first,
    };
    drop(permit);
    match first {
        Err(_) => {
            conn.fail(
                "protocol_error",
                "no enroll or hello message within 10 seconds",
                false,
            )
            .await;
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
            conn.fail("protocol_error", e.to_string(), true).await;
        }
        Ok(Err(_)) => {}
        Ok(Ok(Some(ClientMessage::Enroll {
            code,
            name,
            version,
        }))) => {
            if supported(version) {
                enroll(&app, conn, &code, name.as_deref()).await;
            } else {
                unsupported(conn, version).await;
            }
        }
        Ok(Ok(Some(ClientMessage::Hello {
            token,
            applied_generation,
            version,
        }))) => {
            if supported(version) {
                hello(app, conn, &token, applied_generation, shutdown).await;
            } else {
                unsupported(conn, version).await;
            }
        }
        Ok(Ok(Some(_))) => {
            conn.fail(
                "protocol_error",
                "the first message must be enroll or hello",
                true,
            )
            .await;
        }
    }
}

fn supported(version: u32) -> bool {
    (1..=PROTOCOL_VERSION).contains(&version)
}

async fn unsupported(conn: Conn, version: u32) {
    conn.fail(
        "unsupported_version",
        format!(
            "this server speaks control protocol version {PROTOCOL_VERSION}, not {version}; \
             upgrade the server or use a matching client"
        ),
        true,
    )
    .await;
}

/// A client-supplied name, cleaned: trimmed, no control characters, at most 64 characters.
fn clean_name(name: Option<&str>) -> Option<String> {
    let name: String = name?
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let name = name.trim().to_string();
    (!name.is_empty()).then_some(name)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Redeems an enrollment code: in one transaction marks it used, revokes the client's previous
/// tokens and stores the hash of a new one, which is sent back once.
async fn enroll(app: &Shared, conn: Conn, code: &str, name: Option<&str>) {
    let code_hash = ids::hash_secret(code);
    let token = ids::new_secret("pcl");
    let token_hash = ids::hash_secret(&token);
    let credential_id = ids::new_id("crd");
    let name = clean_name(name);
    let now = ids::now_ms();
    let redeemed = app
        .db
        .write(move |tx| -> Result<Option<String>, Error> {
            let client_id: Option<String> = tx
                .query_row(
                    "SELECT e.client_id FROM client_enrollments e \
                     JOIN clients c ON c.id = e.client_id \
                     WHERE e.code_hash = ?1 AND e.used_at IS NULL AND e.expires_at > ?2 \
                       AND c.revoked_at IS NULL",
                    params![code_hash, now],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(client_id) = client_id else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE client_enrollments SET used_at = ?2 WHERE code_hash = ?1",
                params![code_hash, now],
            )?;
            tx.execute(
                "UPDATE credentials SET status = 'revoked' \
                 WHERE client_id = ?1 AND kind = 'client' AND status = 'active'",
                params![client_id],
            )?;
            tx.execute(
                "INSERT INTO credentials (id, kind, client_id, token_hash, name, status, created_at) \
                 VALUES (?1, 'client', ?2, ?3, 'enrollment', 'active', ?4)",
                params![credential_id, client_id, token_hash, now],
            )?;
            tx.execute(
                "UPDATE clients SET last_seen_at = ?2 WHERE id = ?1",
                params![client_id, now],
            )?;
            if let Some(name) = name {
                tx.execute(
                    "UPDATE clients SET name = ?2 WHERE id = ?1 AND name = ''",
                    params![client_id, name],
                )?;
            }
            Ok(Some(client_id))
        })
        .await;
    let remote = conn.remote.to_string();
    match redeemed {
        Ok(Some(client_id)) => {
            // Tokens issued earlier are revoked now: end a session still using one.
            app.hub.revoke(&client_id);
            let who = format!("client:{client_id}");
            app.audit(Event::now(
                who.clone(),
                "client.enroll",
                who,
                Outcome::Ok,
                json!({ "remote": remote }),
            ));
            eprintln!("event=control.enrolled client={client_id} remote={remote}");
            let mut conn = conn;
            let _ = conn
                .send(&ServerMessage::Enrolled { client_id, token })
                .await;
            conn.close().await;
        }
        Ok(None) => {
            app.audit(Event::now(
                "anonymous",
                "client.enroll",
                "enrollment",
                Outcome::Denied,
                json!({ "remote": remote, "reason": "invalid_enrollment_code" }),
            ));
            conn.fail("invalid_enrollment_code", INVALID_CODE_MESSAGE, true)
                .await;
        }
        Err(e) => {
            app.audit(Event::now(
                "anonymous",
                "client.enroll",
                "enrollment",
                Outcome::Error,
                json!({ "remote": remote, "reason": e.code }),
            ));
            conn.fail(e.code, e.message, false).await;
        }
    }
}

/// What a `hello` token turned out to be.
enum Auth {
    /// Unknown, revoked or expired.
    Unknown,
    /// A valid token of a revoked client.
    Revoked(String),
    /// Good.
    Ok {
        client_id: String,
        credential_id: String,
    },
}

async fn hello(
    app: Shared,
    conn: Conn,
    token: &str,
    applied_generation: u64,
    shutdown: watch::Receiver<bool>,
) {
    let token_hash = ids::hash_secret(token);
    let now = ids::now_ms();
    let applied = to_i64(applied_generation);
    let auth = app
        .db
        .write(move |tx| -> Result<Auth, Error> {
            let found: Option<(String, String, Option<i64>)> = tx
                .query_row(
                    "SELECT cr.id, c.id, c.revoked_at FROM credentials cr \
                     JOIN clients c ON c.id = cr.client_id \
                     WHERE cr.token_hash = ?1 AND cr.kind = 'client' \
                       AND (c.revoked_at IS NOT NULL OR (cr.status = 'active' \
                            AND (cr.expires_at IS NULL OR cr.expires_at > ?2)))",
                    params![token_hash, now],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            match found {
                None => Ok(Auth::Unknown),
                Some((_, client_id, Some(_))) => Ok(Auth::Revoked(client_id)),
                Some((credential_id, client_id, None)) => {
                    tx.execute(
                        "UPDATE clients SET last_seen_at = ?2, applied_generation = ?3 \
                         WHERE id = ?1",
                        params![client_id, now, applied],
                    )?;
                    tx.execute(
                        "UPDATE credentials SET last_used_at = ?2 WHERE id = ?1",
                        params![credential_id, now],
                    )?;
                    Ok(Auth::Ok {
                        client_id,
                        credential_id,
                    })
                }
            }
        })
        .await;
    let remote = conn.remote.to_string();
    match auth {
        Ok(Auth::Ok {
            client_id,
            credential_id,
        }) => {
            let who = format!("client:{client_id}");
            app.audit(Event::now(
                who.clone(),
                "client.connect",
                who,
                Outcome::Ok,
                json!({ "remote": remote, "applied_generation": applied_generation }),
            ));
            let session = Session {
                app,
                conn,
                client_id,
                credential_id,
                last_sent: None,
            };
            session.run(shutdown).await;
        }
        Ok(Auth::Unknown) => {
            app.audit(Event::now(
                "anonymous",
                "client.connect",
                "client",
                Outcome::Denied,
                json!({ "remote": remote, "reason": "unauthorized" }),
            ));
            conn.fail(
                "unauthorized",
                "the client token is unknown, revoked or expired; enroll this client again",
                true,
            )
            .await;
        }
        Ok(Auth::Revoked(client_id)) => {
            let who = format!("client:{client_id}");
            app.audit(Event::now(
                who.clone(),
                "client.connect",
                who,
                Outcome::Denied,
                json!({ "remote": remote, "reason": "client_revoked" }),
            ));
            conn.fail("client_revoked", REVOKED_MESSAGE, true).await;
        }
        Err(e) => conn.fail(e.code, e.message, false).await,
    }
}

const REVOKED_MESSAGE: &str = "this client has been revoked by the operator";
const CREDENTIAL_REVOKED_MESSAGE: &str =
    "this client's token was revoked or replaced by a new enrollment; enroll it again";

/// An authenticated control session.
struct Session {
    app: Shared,
    conn: Conn,
    client_id: String,
    credential_id: String,
    /// The generation of the last `rules` frame sent.
    last_sent: Option<u64>,
}

/// Whether a session's client and token are still valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Both stand.
    Good,
    /// The operator revoked the client.
    ClientRevoked,
    /// Only this token was revoked (or replaced by a new enrollment).
    CredentialRevoked,
}

/// Why a session ended (for the log).
type Ended = String;

impl Session {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        // Register before reading the desired state: a change committed after the read is then
        // certain to wake this session.
        let mut registration = self.app.hub.register(&self.client_id);
        // A revocation committed between the token check and the registration found no session
        // to end; look again now that one is registered.
        if let Ok(standing @ (Standing::ClientRevoked | Standing::CredentialRevoked)) =
            self.standing().await
        {
            self.revoked(standing).await;
            self.conn.close().await;
            return;
        }
        eprintln!(
            "event=control.connected client={} remote={}",
            self.client_id, self.conn.remote
        );
        let welcome = ServerMessage::Welcome {
            client_id: self.client_id.clone(),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let mut ended: Result<(), Ended> = self
            .conn
            .send(&welcome)
            .await
            .map_err(|e| format!("write failed: {e}"));
        if ended.is_ok() {
            ended = self.push_rules(true).await;
        }
        let mut last_heard = Instant::now();
        while ended.is_ok() {
            tokio::select! {
                () = shutting_down(&mut shutdown) => {
                    let _ = self.conn.send(&ServerMessage::error(
                        "shutting_down",
                        "the server is shutting down; reconnect later",
                        false,
                    )).await;
                    ended = Err("server shutting down".into());
                }
                changed = registration.signals.changed() => {
                    ended = match changed.map(|()| *registration.signals.borrow_and_update()) {
                        Err(_) => {
                            let _ = self.conn.send(&ServerMessage::error(
                                "session_replaced",
                                "another connection authenticated as this client",
                                false,
                            )).await;
                            Err("replaced by a newer session".into())
                        }
                        Ok(Signal::Idle) => Ok(()),
                        Ok(Signal::Changed(_)) => self.push_rules(false).await,
                        Ok(Signal::Revoked) => {
                            let standing = self.standing().await.unwrap_or(Standing::ClientRevoked);
                            self.revoked(standing).await;
                            Err("revoked".into())
                        }
                    };
                }
                frame = self.conn.reader.next::<ClientMessage>() => {
                    last_heard = Instant::now();
                    ended = self.handle(frame).await;
                }
                () = sleep_until(last_heard + IDLE_TIMEOUT) => {
                    let _ = self.conn.send(&ServerMessage::error(
                        "idle_timeout",
                        "nothing received for 90 seconds; send ping at least every 30 seconds",
                        false,
                    )).await;
                    ended = Err("idle timeout".into());
                }
            }
        }
        drop(registration);
        let Session {
            app,
            conn,
            client_id,
            ..
        } = self;
        let remote = conn.remote;
        conn.close().await;
        let id = client_id.clone();
        let now = ids::now_ms();
        let _ = app
            .db
            .write(move |tx| -> Result<usize, Error> {
                Ok(tx.execute(
                    "UPDATE clients SET last_seen_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?)
            })
            .await;
        let reason = ended.err().unwrap_or_default();
        eprintln!(
            "event=control.disconnected client={client_id} remote={remote} reason=\"{reason}\""
        );
    }

    /// Answers one frame from the client.
    async fn handle(&mut self, frame: io::Result<Option<ClientMessage>>) -> Result<(), Ended> {
        match frame {
            Ok(None) => Err("closed by the client".into()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let _ = self
                    .conn
                    .send(&ServerMessage::error("protocol_error", e.to_string(), true))
                    .await;
                Err(format!("protocol error: {e}"))
            }
            Err(e) => Err(format!("read failed: {e}")),
            Ok(Some(ClientMessage::Ping { nonce })) => {
                self.send(&ServerMessage::Pong { nonce }).await
            }
            Ok(Some(ClientMessage::Usage { samples })) => {
                let client_id = self.client_id.clone();
                let result = self
                    .app
                    .db
                    .write(move |tx| {
                        let exhausted =
                            crate::model::quotas::record_usage(tx, &client_id, &samples)?;
                        if !exhausted.is_empty() {
                            crate::model::clients::bump_generation(tx, &client_id)?;
                        }
                        Ok::<_, Error>(exhausted)
                    })
                    .await;
                match result {
                    Ok(exhausted) => {
                        for owner in &exhausted {
                            self.app.audit(Event::now(
                                "system",
                                "quota.exhausted",
                                format!("client:{}", self.client_id),
                                Outcome::Ok,
                                json!({"owner_id": owner}),
                            ));
                        }
                        if exhausted.is_empty() {
                            Ok(())
                        } else {
                            self.push_rules(false).await
                        }
                    }
                    Err(e) => {
                        let _ = self
                            .conn
                            .send(&ServerMessage::error(e.code, e.message, false))
                            .await;
                        Err(format!("storing usage failed: {}", e.code))
                    }
                }
            }
            Ok(Some(ClientMessage::Status { generation, rules })) => {
                match self.store_status(generation, rules).await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let _ = self
                            .conn
                            .send(&ServerMessage::error(e.code, e.message, false))
                            .await;
                        Err(format!("storing the status failed: {}", e.code))
                    }
                }
            }
            Ok(Some(ClientMessage::Enroll { .. } | ClientMessage::Hello { .. })) => {
                let _ = self
                    .conn
                    .send(&ServerMessage::error(
                        "protocol_error",
                        "this session is already authenticated",
                        true,
                    ))
                    .await;
                Err("protocol error: a second enroll or hello".into())
            }
        }
    }

    async fn send(&mut self, msg: &ServerMessage) -> Result<(), Ended> {
        self.conn
            .send(msg)
            .await
            .map_err(|e| format!("write failed: {e}"))
    }

    /// Sends the client's desired state, unless (when not `force`d) its generation is the one
    /// sent last.
    async fn push_rules(&mut self, force: bool) -> Result<(), Ended> {
        let client_id = self.client_id.clone();
        let state = self
            .app
            .db
            .read(move |conn| desired_state(conn, &client_id))
            .await;
        let (generation, rules) = match state {
            Ok(state) => state,
            Err(e) => {
                let _ = self
                    .conn
                    .send(&ServerMessage::error(e.code, e.message, false))
                    .await;
                return Err(format!("loading the desired state failed: {}", e.code));
            }
        };
        if !force && self.last_sent == Some(generation) {
            return Ok(());
        }
        self.send(&ServerMessage::Rules { generation, rules })
            .await?;
        self.last_sent = Some(generation);
        Ok(())
    }

    /// Whether the client and this session's token still stand.
    async fn standing(&self) -> Result<Standing, Error> {
        let (client_id, credential_id) = (self.client_id.clone(), self.credential_id.clone());
        self.app
            .db
            .read(move |conn| -> Result<Standing, Error> {
                let revoked_at: Option<Option<i64>> = conn
                    .query_row(
                        "SELECT revoked_at FROM clients WHERE id = ?1",
                        params![client_id],
                        |row| row.get(0),
                    )
                    .optional()?;
                if !matches!(revoked_at, Some(None)) {
                    return Ok(Standing::ClientRevoked);
                }
                let status: Option<String> = conn
                    .query_row(
                        "SELECT status FROM credentials WHERE id = ?1",
                        params![credential_id],
                        |row| row.get(0),
                    )
                    .optional()?;
                Ok(if status.as_deref() == Some("active") {
                    Standing::Good
                } else {
                    Standing::CredentialRevoked
                })
            })
            .await
    }

    /// Ends the session after a revocation, saying whether the client or only this token was
    /// revoked (the client, when that cannot be told).
    async fn revoked(&mut self, standing: Standing) {
        let msg = match standing {
            Standing::CredentialRevoked => {
                ServerMessage::error("credential_revoked", CREDENTIAL_REVOKED_MESSAGE, true)
            }
            Standing::Good | Standing::ClientRevoked => {
                ServerMessage::error("client_revoked", REVOKED_MESSAGE, true)
            }
        };
        let _ = self.conn.send(&msg).await;
    }

    /// Records which generation the client runs and, if that is the current one, how each of
    /// its rules fared (a report about an older generation says nothing about current rules).
    async fn store_status(&self, generation: u64, rules: Vec<RuleStatus>) -> Result<(), Error> {
        let client_id = self.client_id.clone();
        let now = ids::now_ms();
        self.app
            .db
            .write(move |tx| -> Result<(), Error> {
                tx.execute(
                    "UPDATE clients SET applied_generation = ?2, last_seen_at = ?3 WHERE id = ?1",
                    params![client_id, to_i64(generation), now],
                )?;
                let current: Option<i64> = tx
                    .query_row(
                        "SELECT generation FROM clients WHERE id = ?1",
                        params![client_id],
                        |row| row.get(0),
                    )
                    .optional()?;
                if current != Some(to_i64(generation)) {
                    return Ok(());
                }
                let mut update = tx.prepare_cached(
                    "UPDATE rules SET status = ?3, status_reason = ?4 \
                     WHERE id = ?1 AND client_id = ?2",
                )?;
                for rule in rules {
                    let reason = match rule.state {
                        RuleState::Active => None,
                        RuleState::Failed => Some(
                            rule.reason
                                .as_deref()
                                .unwrap_or("failed")
                                .chars()
                                .take(MAX_REASON_CHARS)
                                .collect::<String>(),
                        ),
                    };
                    update.execute(params![
                        rule.rule_id,
                        client_id,
                        rule.state.as_str(),
                        reason
                    ])?;
                }
                Ok(())
            })
            .await
    }
}

/// A client's desired state: its generation and every enabled rule with its targets (in
/// position order) and its owner's caps, rules ordered by listen port. Reads one consistent
/// snapshot (opening a read transaction unless `conn` is already inside one). A missing client
/// is `not_found`.
pub fn desired_state(conn: &Connection, client_id: &str) -> Result<(u64, Vec<RuleSpec>), Error> {
    let snapshot = if conn.is_autocommit() {
        Some(conn.unchecked_transaction()?)
    } else {
        None
    };
    let generation: i64 = conn
        .query_row(
            "SELECT generation FROM clients WHERE id = ?1",
            params![client_id],
            |row| row.get(0),
        )
        .optional()?
        .ok_or_else(|| Error::not_found(format!("client {client_id}")))?;
    let rules = crate::model::rules::enabled_on(conn, client_id)?;
    let mut owners: HashMap<String, Caps> = HashMap::new();
    let mut specs = Vec::with_capacity(rules.len());
    let period = crate::model::quotas::period_of(ids::now_ms());
    for rule in rules {
        if crate::model::quotas::is_exhausted(conn, &rule.owner_id, client_id, &period)? {
            continue;
        }
        let owner_caps = match owners.get(&rule.owner_id) {
            Some(caps) => *caps,
            None => {
                let caps = crate::model::caps::of_owner(conn, &rule.owner_id)?;
                owners.insert(rule.owner_id.clone(), caps);
                caps
            }
        };
        specs.push(rule.into_spec(owner_caps));
    }
    drop(snapshot);
    let generation = u64::try_from(generation)
        .map_err(|_| Error::internal(format!("client {client_id} has generation {generation}")))?;
    Ok((generation, specs))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use portunus_core::pin::pinned_client_config;
    use portunus_core::wire::read_frame;
    use portunus_core::{PortRange, Protocol, ProxyProtocol};
    use rustls_pki_types::ServerName;
    use tokio::task::JoinHandle;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream as ClientTls;

    use super::*;
    use crate::app::App;
    use crate::audit::AuditLog;
    use crate::control::hub::Hub;
    use crate::metrics::Metrics;
    use crate::store::TOOL;

    const CODE: &str = "pen_first_code";
    const CLIENT: &str = "cli_test";
    const USER: &str = "usr_test";
    const WAIT: Duration = Duration::from_secs(10);

    struct Harness {
        app: Shared,
        addr: SocketAddr,
        pin: String,
        stop: watch::Sender<bool>,
        server: JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    async fn sql(app: &Shared, statements: &str) {
        let statements = statements.to_string();
        app.db
            .write(move |tx| -> Result<(), Error> { Ok(tx.execute_batch(&statements)?) })
            .await
            .unwrap();
    }

    async fn add_code(app: &Shared, code: &str, expires_at: i64) {
        let hash = ids::hash_secret(code);
        app.db
            .write(move |tx| -> Result<usize, Error> {
                Ok(tx.execute(
                    "INSERT INTO client_enrollments (code_hash, client_id, created_by, created_at, \
                     expires_at) VALUES (?1, ?2, ?3, 0, ?4)",
                    params![hash, CLIENT, USER, expires_at],
                )?)
            })
            .await
            .unwrap();
    }

    async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let material = crate::tls::load_or_create(dir.path(), &[]).unwrap();
        let tls = material.server_config().unwrap();
        let mut config = store::OpenConfig::for_path(&TOOL, dir.path().join("state.db"));
        config.allow_unsupported_fs = true;
        config.instance_lock = false;
        let (db, audit) = tokio::task::spawn_blocking(move || {
            let db = store::AsyncStore::open(&TOOL, &config).unwrap();
            let audit = AuditLog::start(&config, 1024).unwrap();
            (db, audit)
        })
        .await
        .unwrap();
        let app = Arc::new(App {
            db,
            audit,
            hub: Hub::new(),
            metrics: Metrics::default(),
            pin: material.fingerprint.clone(),
            public_control: String::new(),
            api_tls: false,
        });
        sql(
            &app,
            "INSERT INTO users (id, username, role, created_at) \
                 VALUES ('usr_test', 'alice', 'user', 0);
             INSERT INTO clients (id, name, owner_id, created_at, generation) \
                 VALUES ('cli_test', '', 'usr_test', 0, 1);
             INSERT INTO rules (id, client_id, owner_id, name, protocol, listen_start, \
                 listen_end, bandwidth_bps, created_at, updated_at) \
                 VALUES ('rul_a', 'cli_test', 'usr_test', 'web', 'tcp', 8080, 8080, 1000000, 0, 0);
             INSERT INTO rule_targets (rule_id, position, host, port) \
                 VALUES ('rul_a', 0, '10.0.0.1', 80);",
        )
        .await;
        add_code(&app, CODE, ids::now_ms() + 3_600_000).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, shutdown) = watch::channel(false);
        let server = tokio::spawn(serve(Arc::clone(&app), listener, tls, shutdown));
        Harness {
            app,
            addr,
            pin: material.fingerprint,
            stop,
            server,
            _dir: dir,
        }
    }

    type Client = ClientTls<TcpStream>;

    async fn dial_with(h: &Harness, pin: &str) -> io::Result<Client> {
        let connector = TlsConnector::from(pinned_client_config(pin).unwrap());
        let tcp = TcpStream::connect(h.addr).await?;
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    async fn dial(h: &Harness) -> Client {
        dial_with(h, &h.pin).await.unwrap()
    }

    async fn send(s: &mut Client, msg: ClientMessage) {
        write_frame(s, &msg).await.unwrap();
    }

    async fn recv(s: &mut Client) -> ServerMessage {
        timeout(WAIT, read_frame(s))
            .await
            .expect("no frame within the wait")
            .unwrap()
            .expect("the server closed the connection")
    }

    /// Asserts that the server closes the connection (politely or not) without another frame.
    async fn assert_closed(s: &mut Client) {
        match timeout(WAIT, read_frame::<ServerMessage, _>(s)).await {
            Ok(Ok(None) | Err(_)) => {}
            Ok(Ok(Some(msg))) => panic!("expected the end of the connection, got {msg:?}"),
            Err(_) => panic!("the connection stayed open"),
        }
    }

    async fn expect_error(s: &mut Client, code: &str, terminal: bool) {
        match recv(s).await {
            ServerMessage::Error {
                code: got,
                terminal: t,
                ..
            } => {
                assert_eq!(got, code);
                assert_eq!(t, terminal, "terminal flag of {code}");
            }
            other => panic!("expected error {code}, got {other:?}"),
        }
    }

    async fn enroll(h: &Harness, code: &str) -> ServerMessage {
        let mut s = dial(h).await;
        send(
            &mut s,
            ClientMessage::Enroll {
                code: code.into(),
                name: Some("  edge-1\n".into()),
                version: PROTOCOL_VERSION,
            },
        )
        .await;
        let answer = recv(&mut s).await;
        assert_closed(&mut s).await;
        answer
    }

    async fn token(h: &Harness, code: &str) -> String {
        match enroll(h, code).await {
            ServerMessage::Enrolled { client_id, token } => {
                assert_eq!(client_id, CLIENT);
                assert!(token.starts_with("pcl_"), "{token}");
                token
            }
            other => panic!("expected enrolled, got {other:?}"),
        }
    }

    /// Connects with `hello` and checks the welcome; returns the session and the first rules.
    async fn hello(h: &Harness, token: &str) -> (Client, u64, Vec<RuleSpec>) {
        let mut s = dial(h).await;
        send(
            &mut s,
            ClientMessage::Hello {
                token: token.into(),
                applied_generation: 0,
                version: PROTOCOL_VERSION,
            },
        )
        .await;
        match recv(&mut s).await {
            ServerMessage::Welcome { client_id, .. } => assert_eq!(client_id, CLIENT),
            other => panic!("expected welcome, got {other:?}"),
        }
        match recv(&mut s).await {
            ServerMessage::Rules { generation, rules } => (s, generation, rules),
            other => panic!("expected rules, got {other:?}"),
        }
    }

    async fn ping(s: &mut Client, nonce: u64) {
        send(s, ClientMessage::Ping { nonce }).await;
        assert_eq!(recv(s).await, ServerMessage::Pong { nonce });
    }

    async fn query<T: Send + 'static>(
        app: &Shared,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> T {
        app.db
            .read(move |conn| -> Result<T, Error> { Ok(f(conn)?) })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn enrollment_then_hello_gets_rules_and_later_changes() {
        let h = start().await;
        let token = token(&h, CODE).await;
        let name: String = query(&h.app, |c| {
            c.query_row("SELECT name FROM clients WHERE id = 'cli_test'", [], |r| {
                r.get(0)
            })
        })
        .await;
        assert_eq!(name, "edge-1");

        // The code works once.
        match enroll(&h, CODE).await {
            ServerMessage::Error { code, terminal, .. } => {
                assert_eq!(code, "invalid_enrollment_code");
                assert!(terminal);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }

        let (mut s, generation, rules) = hello(&h, &token).await;
        assert_eq!(generation, 1);
        assert_eq!(rules.len(), 1);
        let rule = &rules[0];
        assert_eq!(rule.id, "rul_a");
        assert_eq!(rule.owner_id, USER);
        assert_eq!(rule.protocol, Protocol::Tcp);
        assert_eq!(rule.listen, PortRange::new(8080, 8080).unwrap());
        assert_eq!(rule.caps.bandwidth_bps, Some(1_000_000));
        assert_eq!(rule.targets.len(), 1);
        assert_eq!(rule.targets[0].host, "10.0.0.1");
        assert!(h.app.hub.is_connected(CLIENT));

        ping(&mut s, 7).await;

        // Status is stored; the pong after it shows it was handled.
        send(
            &mut s,
            ClientMessage::Status {
                generation: 1,
                rules: vec![RuleStatus {
                    rule_id: "rul_a".into(),
                    state: RuleState::Failed,
                    reason: Some("address in use".into()),
                }],
            },
        )
        .await;
        ping(&mut s, 8).await;
        let (applied, status, reason): (i64, String, Option<String>) = query(&h.app, |c| {
            c.query_row(
                "SELECT c.applied_generation, r.status, r.status_reason \
                 FROM clients c JOIN rules r ON r.client_id = c.id WHERE c.id = 'cli_test'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        })
        .await;
        assert_eq!(
            (applied, status.as_str(), reason.as_deref()),
            (1, "failed", Some("address in use"))
        );

        // A notification without a new generation pushes nothing.
        h.app.hub.notify(CLIENT);
        ping(&mut s, 9).await;

        // A new rule and a new generation are pushed.
        sql(
            &h.app,
            "INSERT INTO rules (id, client_id, owner_id, protocol, listen_start, listen_end, \
                 created_at, updated_at) \
                 VALUES ('rul_b', 'cli_test', 'usr_test', 'udp', 5000, 5010, 0, 0);
             INSERT INTO rule_targets (rule_id, position, host, port, priority, proxy_protocol) \
                 VALUES ('rul_b', 1, 'backup.internal', 53, 1, 'none'), \
                        ('rul_b', 0, 'dns.internal', 53, 0, 'v2');
             UPDATE clients SET generation = 2 WHERE id = 'cli_test';",
        )
        .await;
        h.app.hub.notify(CLIENT);
        match recv(&mut s).await {
            ServerMessage::Rules { generation, rules } => {
                assert_eq!(generation, 2);
                let ids: Vec<_> = rules.iter().map(|r| r.id.as_str()).collect();
                assert_eq!(ids, ["rul_b", "rul_a"]);
                let hosts: Vec<_> = rules[0].targets.iter().map(|t| t.host.as_str()).collect();
                assert_eq!(hosts, ["dns.internal", "backup.internal"]);
                assert_eq!(rules[0].targets[0].proxy_protocol, ProxyProtocol::V2);
            }
            other => panic!("expected rules, got {other:?}"),
        }

        // Revocation ends the session.
        sql(
            &h.app,
            "UPDATE clients SET revoked_at = 1 WHERE id = 'cli_test';",
        )
        .await;
        h.app.hub.revoke(CLIENT);
        expect_error(&mut s, "client_revoked", true).await;
        assert_closed(&mut s).await;

        // The audit log has the outcomes, and never a secret.
        h.app.audit.flush().await;
        let rows: Vec<(String, String, String, String)> = query(&h.app, |c| {
            let mut stmt =
                c.prepare("SELECT actor, action, outcome, details FROM audit ORDER BY seq")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect()
        })
        .await;
        let summary: Vec<_> = rows
            .iter()
            .map(|(actor, action, outcome, _)| format!("{actor} {action} {outcome}"))
            .collect();
        assert_eq!(
            summary,
            [
                "client:cli_test client.enroll ok",
                "anonymous client.enroll denied",
                "client:cli_test client.connect ok",
            ]
        );
        for (_, _, _, details) in &rows {
            assert!(details.contains("127.0.0.1"), "{details}");
            assert!(
                !details.contains(CODE) && !details.contains(&token),
                "{details}"
            );
        }
    }

    #[tokio::test]
    async fn a_wrong_pin_fails_the_handshake() {
        let h = start().await;
        let wrong = portunus_core::pin::fingerprint_of_der(b"some other certificate");
        assert!(dial_with(&h, &wrong).await.is_err());
        // The right pin still works.
        let mut s = dial(&h).await;
        send(&mut s, ClientMessage::Ping { nonce: 1 }).await;
        expect_error(&mut s, "protocol_error", true).await;
    }

    #[tokio::test]
    async fn the_pin_is_enforced_over_tls_1_2_as_well() {
        use portunus_core::pin::PinnedVerifier;
        use tokio_rustls::rustls::crypto::ring;

        let h = start().await;
        let tls12 = |pin: &str| {
            let provider = Arc::new(ring::default_provider());
            let verifier = Arc::new(PinnedVerifier::new(pin, &provider).unwrap());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            TlsConnector::from(Arc::new(config))
        };
        let name = || ServerName::try_from("localhost").unwrap();
        let tcp = TcpStream::connect(h.addr).await.unwrap();
        let mut s = tls12(&h.pin).connect(name(), tcp).await.unwrap();
        assert_eq!(
            s.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        send(&mut s, ClientMessage::Ping { nonce: 1 }).await;
        expect_error(&mut s, "protocol_error", true).await;

        let wrong = portunus_core::pin::fingerprint_of_der(b"another certificate");
        let tcp = TcpStream::connect(h.addr).await.unwrap();
        assert!(tls12(&wrong).connect(name(), tcp).await.is_err());
    }

    #[tokio::test]
    async fn bad_tokens_and_revoked_clients_are_refused() {
        let h = start().await;
        let mut s = dial(&h).await;
        send(
            &mut s,
            ClientMessage::Hello {
                token: "pcl_not_a_token".into(),
                applied_generation: 0,
                version: PROTOCOL_VERSION,
            },
        )
        .await;
        expect_error(&mut s, "unauthorized", true).await;
        assert_closed(&mut s).await;

        let token = token(&h, CODE).await;
        sql(
            &h.app,
            "UPDATE clients SET revoked_at = 1 WHERE id = 'cli_test';",
        )
        .await;
        let mut s = dial(&h).await;
        send(
            &mut s,
            ClientMessage::Hello {
                token,
                applied_generation: 0,
                version: PROTOCOL_VERSION,
            },
        )
        .await;
        expect_error(&mut s, "client_revoked", true).await;
        assert_closed(&mut s).await;

        // A revoked client cannot enroll either.
        add_code(&h.app, "pen_second", ids::now_ms() + 60_000).await;
        assert!(matches!(
            enroll(&h, "pen_second").await,
            ServerMessage::Error { code, .. } if code == "invalid_enrollment_code"
        ));
        h.app.audit.flush().await;
        let denied: i64 = query(&h.app, |c| {
            c.query_row(
                "SELECT count(*) FROM audit WHERE outcome = 'denied'",
                [],
                |r| r.get(0),
            )
        })
        .await;
        assert_eq!(denied, 3);
    }

    #[tokio::test]
    async fn expired_codes_are_refused() {
        let h = start().await;
        add_code(&h.app, "pen_old", ids::now_ms() - 1).await;
        assert!(matches!(
            enroll(&h, "pen_old").await,
            ServerMessage::Error { code, .. } if code == "invalid_enrollment_code"
        ));
    }

    #[tokio::test]
    async fn re_enrolling_revokes_the_old_token_and_ends_its_session() {
        let h = start().await;
        let old = token(&h, CODE).await;
        let (mut s, _, _) = hello(&h, &old).await;
        add_code(&h.app, "pen_again", ids::now_ms() + 60_000).await;
        let new = token(&h, "pen_again").await;
        expect_error(&mut s, "credential_revoked", true).await;
        assert_closed(&mut s).await;

        let mut s = dial(&h).await;
        send(
            &mut s,
            ClientMessage::Hello {
                token: old,
                applied_generation: 0,
                version: PROTOCOL_VERSION,
            },
        )
        .await;
        expect_error(&mut s, "unauthorized", true).await;
        let (mut s, generation, _) = hello(&h, &new).await;
        assert_eq!(generation, 1);
        ping(&mut s, 1).await;
    }

    #[tokio::test]
    async fn a_second_session_replaces_the_first() {
        let h = start().await;
        let token = token(&h, CODE).await;
        let (mut first, _, _) = hello(&h, &token).await;
        let (mut second, _, _) = hello(&h, &token).await;
        expect_error(&mut first, "session_replaced", false).await;
        assert_closed(&mut first).await;
        ping(&mut second, 3).await;
        assert!(h.app.hub.is_connected(CLIENT));
    }

    #[tokio::test]
    async fn anything_but_enroll_or_hello_first_is_a_protocol_error() {
        let h = start().await;
        let mut s = dial(&h).await;
        send(
            &mut s,
            ClientMessage::Status {
                generation: 1,
                rules: vec![],
            },
        )
        .await;
        expect_error(&mut s, "protocol_error", true).await;
        assert_closed(&mut s).await;

        let mut s = dial(&h).await;
        write_frame(&mut s, &serde_json::json!({"type": "launch"}))
            .await
            .unwrap();
        expect_error(&mut s, "protocol_error", true).await;

        let mut s = dial(&h).await;
        s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        s.flush().await.unwrap();
        expect_error(&mut s, "protocol_error", true).await;

        let mut s = dial(&h).await;
        send(
            &mut s,
            ClientMessage::Hello {
                token: "x".into(),
                applied_generation: 0,
                version: PROTOCOL_VERSION + 1,
            },
        )
        .await;
        expect_error(&mut s, "unsupported_version", true).await;
    }

    #[tokio::test]
    async fn shutdown_says_goodbye_and_serve_returns() {
        let h = start().await;
        let token = token(&h, CODE).await;
        let (mut s, _, _) = hello(&h, &token).await;
        h.stop.send(true).unwrap();
        expect_error(&mut s, "shutting_down", false).await;
        assert_closed(&mut s).await;
        timeout(WAIT, h.server).await.unwrap().unwrap();
        assert!(TcpStream::connect(h.addr).await.is_err());
        let seen: Option<i64> = query(&h.app, |c| {
            c.query_row(
                "SELECT last_seen_at FROM clients WHERE id = 'cli_test'",
                [],
                |r| r.get(0),
            )
        })
        .await;
        assert!(seen.is_some());
    }

    #[tokio::test]
    async fn desired_state_lists_enabled_rules_only() {
        let h = start().await;
        sql(
            &h.app,
            "INSERT INTO rules (id, client_id, owner_id, protocol, listen_start, listen_end, \
                 enabled, max_connections, new_conn_per_sec, created_at, updated_at) \
                 VALUES ('rul_off', 'cli_test', 'usr_test', 'tcp', 9000, 9000, 0, 5, 2, 0, 0), \
                        ('rul_low', 'cli_test', 'usr_test', 'tcp+udp', 100, 199, 1, 5, 2, 0, 0);
             INSERT INTO rule_targets (rule_id, position, host, port) \
                 VALUES ('rul_off', 0, 'a', 1), ('rul_low', 0, 'b', 2);",
        )
        .await;
        let (generation, rules) = h
            .app
            .db
            .read(|conn| desired_state(conn, CLIENT))
            .await
            .unwrap();
        assert_eq!(generation, 1);
        let ids: Vec<_> = rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["rul_low", "rul_a"]);
        assert_eq!(rules[0].protocol, Protocol::Both);
        assert_eq!(
            rules[0].caps,
            Caps {
                bandwidth_bps: None,
                new_conn_per_sec: Some(2),
                max_connections: Some(5),
            }
        );
        // Inside a write transaction too (as the API's tests use it).
        let inside = h
            .app
            .db
            .write(|tx| desired_state(tx, CLIENT))
            .await
            .unwrap();
        assert_eq!(inside.1.len(), 2);
        let missing = h
            .app
            .db
            .read(|conn| desired_state(conn, "cli_nope"))
            .await
            .unwrap_err();
        assert_eq!(missing.code, "not_found");
    }

    #[test]
    fn names_from_clients_are_cleaned() {
        assert_eq!(clean_name(Some(" a\tb\u{7}c ")).as_deref(), Some("abc"));
        assert_eq!(clean_name(Some(" \n ")), None);
        assert_eq!(clean_name(None), None);
        assert_eq!(
            clean_name(Some(&"x".repeat(100))).map(|n| n.len()),
            Some(64)
        );
    }
}
