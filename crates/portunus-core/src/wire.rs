//! The control protocol between `portunus-server` and its edge clients, and its framing.
//!
//! A client dials the server's control listener over TLS and keeps one connection open. Each
//! message is one frame: a 4-byte big-endian length followed by that many bytes of JSON (an
//! object tagged by `"type"`). Frames are at most [`MAX_FRAME`] bytes, and a reader refuses a
//! larger length before reading or allocating anything for it. The first client frame is either
//! [`ClientMessage::Enroll`] (redeem a one-time code for a token; the server answers and closes)
//! or [`ClientMessage::Hello`] (authenticate; the server answers [`ServerMessage::Welcome`] and then
//! pushes the client's desired state as [`ServerMessage::Rules`], again whenever it changes).
//! Rules are desired state stamped with a generation, so a client that reconnects simply
//! reconciles to the latest generation it receives.

use std::io;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::rule::{PortRange, Protocol, Target};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame body either side sends or accepts (1 MiB).
pub const MAX_FRAME: usize = 1024 * 1024;

/// Bytes read from the stream at a time while assembling a frame.
const CHUNK: usize = 16 * 1024;

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Redeems a one-time enrollment code for a client token (first and only frame).
    Enroll {
        /// The code the operator handed out.
        code: String,
        /// A name to give the client if it has none yet.
        #[serde(default)]
        name: Option<String>,
        /// The client's [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// Authenticates a session (first frame).
    Hello {
        /// The client token received at enrollment.
        token: String,
        /// The generation of the rules the client runs now (0 when it has none).
        applied_generation: u64,
        /// The client's [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// Reports which generation the client applied and how each rule fared.
    Status {
        /// The generation the client now runs.
        generation: u64,
        /// One entry per rule of that generation.
        rules: Vec<RuleStatus>,
    },
    /// Bytes forwarded since the last report, per owner and minute (the server adds them to
    /// `traffic_samples_1m`/`_1h` and to the owner's monthly quota on this client).
    Usage {
        /// One entry per (owner, minute) with traffic.
        samples: Vec<UsageSample>,
    },
    /// Keeps the session alive (the server answers [`ServerMessage::Pong`]).
    Ping {
        /// Echoed back.
        nonce: u64,
    },
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to [`ClientMessage::Enroll`]: the client's id and its token (shown once).
    Enrolled {
        /// The client's id.
        client_id: String,
        /// The bearer token for [`ClientMessage::Hello`].
        token: String,
    },
    /// The answer to a good [`ClientMessage::Hello`].
    Welcome {
        /// The client's id.
        client_id: String,
        /// The server's version, for logs.
        server_version: String,
    },
    /// The client's complete desired state.
    Rules {
        /// Increases with every change to the client's rules.
        generation: u64,
        /// Every enabled rule of the client.
        rules: Vec<RuleSpec>,
    },
    /// The answer to [`ClientMessage::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// A refusal; when `terminal`, the server closes the connection and the client should not
    /// retry with the same credentials.
    Error {
        /// Stable machine-readable code, e.g. `unauthorized`.
        code: String,
        /// What went wrong and what to do.
        message: String,
        /// Whether retrying cannot help.
        terminal: bool,
    },
}

impl ServerMessage {
    /// An [`ServerMessage::Error`].
    pub fn error(code: &str, message: impl Into<String>, terminal: bool) -> ServerMessage {
        ServerMessage::Error {
            code: code.to_string(),
            message: message.into(),
            terminal,
        }
    }
}

/// Traffic of one owner's rules on one client during one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSample {
    /// The rules' owner.
    pub owner_id: String,
    /// Start of the minute, Unix milliseconds (a multiple of 60,000).
    pub minute: i64,
    /// Bytes from connecting peers towards targets.
    pub bytes_in: u64,
    /// Bytes from targets back to peers.
    pub bytes_out: u64,
}

/// One forwarding rule as a client runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// The rule's id.
    pub id: String,
    /// The user who owns it (per-owner caps are shared across their rules).
    pub owner_id: String,
    /// TCP, UDP or both.
    pub protocol: Protocol,
    /// The address to bind, e.g. `0.0.0.0` or `::`.
    pub listen_addr: String,
    /// The ports to listen on.
    pub listen: PortRange,
    /// Where traffic goes, in position order.
    pub targets: Vec<Target>,
    /// Per-rule limits.
    #[serde(default)]
    pub caps: Caps,
    /// The owner's limits across all their rules on this client (the same on every rule of
    /// one owner).
    #[serde(default)]
    pub owner_caps: Caps,
}

/// Per-rule limits; `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    /// Bytes per second, both directions together.
    #[serde(default)]
    pub bandwidth_bps: Option<u64>,
    /// New connections (or UDP flows) per second.
    #[serde(default)]
    pub new_conn_per_sec: Option<u32>,
    /// Concurrent connections (or UDP flows).
    #[serde(default)]
    pub max_connections: Option<u32>,
}

/// How one rule fared on the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStatus {
    /// The rule's id.
    pub rule_id: String,
    /// Running or not.
    pub state: RuleState,
    /// Why it failed (e.g. the port is in use).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Whether a rule runs on the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleState {
    /// Listening and forwarding.
    Active,
    /// Could not be applied.
    Failed,
}

impl RuleState {
    /// The stored spelling (`active` or `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleState::Active => "active",
            RuleState::Failed => "failed",
        }
    }
}

fn too_large(len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("frame of {len} bytes exceeds the limit of {MAX_FRAME} bytes"),
    )
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> io::Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("malformed frame: {e}")))
}

fn frame_len(header: [u8; 4]) -> io::Result<usize> {
    let len = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    if len > MAX_FRAME {
        return Err(too_large(len));
    }
    Ok(len)
}

/// Reads one frame. `Ok(None)` on a clean end of stream before the frame's first byte; an end
/// of stream inside a frame is [`io::ErrorKind::UnexpectedEof`]; a frame that is too large or not
/// valid JSON for `T` is [`io::ErrorKind::InvalidData`].
///
/// Not cancel-safe: use [`FrameReader`] inside `select!`.
pub async fn read_frame<T, R>(r: &mut R) -> io::Result<Option<T>>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + ?Sized,
{
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < header.len() {
        let n = r.read(&mut header[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
    }
    let len = frame_len(header)?;
    // Grow with what actually arrives rather than trusting the claimed length.
    let mut body = Vec::with_capacity(len.min(CHUNK));
    let want = u64::try_from(len).unwrap_or(u64::MAX);
    (&mut *r).take(want).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    parse(&body).map(Some)
}

/// Encodes one message as a frame (length prefix and JSON body).
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T) -> io::Result<Vec<u8>> {
    let body =
        serde_json::to_vec(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if body.len() > MAX_FRAME {
        return Err(too_large(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| too_large(body.len()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Writes one frame and flushes it. A message whose JSON exceeds [`MAX_FRAME`] is refused with
/// [`io::ErrorKind::InvalidData`] and nothing is written.
pub async fn write_frame<T, W>(w: &mut W, msg: &T) -> io::Result<()>
where
    T: Serialize + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let frame = encode_frame(msg)?;
    w.write_all(&frame).await?;
    w.flush().await
}

/// Reads frames from a stream, keeping partial input between calls so that
/// [`FrameReader::next`] is cancel-safe (it can lose a race in `select!` without losing data).
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a stream.
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader {
            inner,
            buf: Vec::new(),
        }
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Unwraps the stream, dropping any partially read frame.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next frame, with the same results as [`read_frame`]. Cancel-safe.
    pub async fn next<T: DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        loop {
            if let Some(body) = self.take_frame()? {
                return parse(&body).map(Some);
            }
            // Only ever read up to the end of the current frame (or its header), so the buffer
            // never holds more than one frame.
            let need = match self.buf.get(..4) {
                Some(header) => {
                    let mut h = [0u8; 4];
                    h.copy_from_slice(header);
                    4 + frame_len(h)? - self.buf.len()
                }
                None => 4 - self.buf.len(),
            };
            self.buf.reserve(need.min(CHUNK));
            let limit = u64::try_from(need).unwrap_or(u64::MAX);
            // `read_buf` is cancel-safe: if this future is dropped, no bytes were consumed.
            let n = (&mut self.inner)
                .take(limit)
                .read_buf(&mut self.buf)
                .await?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Removes and returns a complete frame body from the buffer, if there is one.
    fn take_frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        let Some(header) = self.buf.get(..4) else {
            return Ok(None);
        };
        let mut h = [0u8; 4];
        h.copy_from_slice(header);
        let len = frame_len(h)?;
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        // Hand the allocation to the caller so a large frame's buffer is not kept afterwards.
        let mut body = std::mem::take(&mut self.buf);
        body.drain(..4);
        Ok(Some(body))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::future::Future;

    use super::*;
    use crate::rule::ProxyProtocol;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn spec() -> RuleSpec {
        RuleSpec {
            id: "rul_1".into(),
            owner_id: "usr_1".into(),
            protocol: Protocol::Both,
            listen_addr: "0.0.0.0".into(),
            listen: PortRange::new(8000, 8010).unwrap(),
            targets: vec![
                Target {
                    host: "10.0.0.1".into(),
                    port: 80,
                    priority: 0,
                    proxy_protocol: ProxyProtocol::V2,
                },
                Target {
                    host: "backup.internal".into(),
                    port: 8080,
                    priority: 1,
                    proxy_protocol: ProxyProtocol::None,
                },
            ],
            caps: Caps {
                bandwidth_bps: Some(1_000_000),
                new_conn_per_sec: None,
                max_connections: Some(100),
            },
            owner_caps: Caps::default(),
        }
    }

    fn client_messages() -> Vec<ClientMessage> {
        vec![
            ClientMessage::Enroll {
                code: "pen_abc".into(),
                name: Some("edge-1".into()),
                version: PROTOCOL_VERSION,
            },
            ClientMessage::Enroll {
                code: "pen_abc".into(),
                name: None,
                version: PROTOCOL_VERSION,
            },
            ClientMessage::Hello {
                token: "pcl_xyz".into(),
                applied_generation: 7,
                version: PROTOCOL_VERSION,
            },
            ClientMessage::Status {
                generation: 7,
                rules: vec![
                    RuleStatus {
                        rule_id: "rul_1".into(),
                        state: RuleState::Active,
                        reason: None,
                    },
                    RuleStatus {
                        rule_id: "rul_2".into(),
                        state: RuleState::Failed,
                        reason: Some("address in use".into()),
                    },
                ],
            },
            ClientMessage::Usage {
                samples: vec![UsageSample {
                    owner_id: "usr_1".into(),
                    minute: 1_777_593_600_000,
                    bytes_in: 1,
                    bytes_out: u64::MAX,
                }],
            },
            ClientMessage::Ping { nonce: u64::MAX },
        ]
    }

    fn server_messages() -> Vec<ServerMessage> {
        vec![
            ServerMessage::Enrolled {
                client_id: "cli_1".into(),
                token: "pcl_xyz".into(),
            },
            ServerMessage::Welcome {
                client_id: "cli_1".into(),
                server_version: "0.1.0".into(),
            },
            ServerMessage::Rules {
                generation: 3,
                rules: vec![spec()],
            },
            ServerMessage::Rules {
                generation: 0,
                rules: vec![],
            },
            ServerMessage::Pong { nonce: 42 },
            ServerMessage::error("unauthorized", "bad token", true),
        ]
    }

    #[test]
    fn every_message_round_trips_through_the_framing() {
        block_on(async {
            let (mut a, mut b) = tokio::io::duplex(64);
            let sent_c = client_messages();
            let sent_s = server_messages();
            let (cs, ss) = (sent_c.clone(), sent_s.clone());
            let writer = async move {
                for m in &cs {
                    write_frame(&mut a, m).await.unwrap();
                }
                for m in &ss {
                    write_frame(&mut a, m).await.unwrap();
                }
                drop(a);
            };
            let reader = async move {
                let mut got_c = Vec::new();
                for _ in 0..sent_c.len() {
                    got_c.push(
                        read_frame::<ClientMessage, _>(&mut b)
                            .await
                            .unwrap()
                            .unwrap(),
                    );
                }
                let mut got_s = Vec::new();
                for _ in 0..sent_s.len() {
                    got_s.push(
                        read_frame::<ServerMessage, _>(&mut b)
                            .await
                            .unwrap()
                            .unwrap(),
                    );
                }
                assert_eq!(got_c, sent_c);
                assert_eq!(got_s, sent_s);
                assert!(
                    read_frame::<ServerMessage, _>(&mut b)
                        .await
                        .unwrap()
                        .is_none()
                );
            };
            let writer = tokio::spawn(writer);
            reader.await;
            writer.await.unwrap();
        });
    }

    #[test]
    fn the_frame_reader_reads_the_same_frames() {
        block_on(async {
            let (mut a, b) = tokio::io::duplex(7);
            let sent = server_messages();
            let ss = sent.clone();
            let writer = async move {
                for m in &ss {
                    write_frame(&mut a, m).await.unwrap();
                }
            };
            let reader = async move {
                let mut reader = FrameReader::new(b);
                let mut got = Vec::new();
                while let Some(m) = reader.next::<ServerMessage>().await.unwrap() {
                    got.push(m);
                }
                assert_eq!(got, sent);
            };
            let writer = tokio::spawn(writer);
            reader.await;
            writer.await.unwrap();
        });
    }

    #[test]
    fn messages_are_tagged_by_type_in_snake_case() {
        let json = serde_json::to_value(ClientMessage::Ping { nonce: 1 }).unwrap();
        assert_eq!(json, serde_json::json!({"type": "ping", "nonce": 1}));
        let json = serde_json::to_value(ServerMessage::Rules {
            generation: 2,
            rules: vec![spec()],
        })
        .unwrap();
        assert_eq!(json["type"], "rules");
        assert_eq!(
            json["rules"][0]["listen"],
            serde_json::json!({"start": 8000, "end": 8010})
        );
        assert_eq!(json["rules"][0]["protocol"], "tcp+udp");
        let status: RuleStatus =
            serde_json::from_str(r#"{"rule_id":"r","state":"failed"}"#).unwrap();
        assert_eq!(status.state, RuleState::Failed);
        assert_eq!(status.reason, None);
    }

    #[test]
    fn an_oversized_length_prefix_is_refused_before_reading_the_body() {
        block_on(async {
            // Claims 4 GiB - 1 and sends nothing more; a reader that trusted the length would
            // try to allocate it or wait for it.
            let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff];
            let err = read_frame::<ClientMessage, _>(&mut input)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);

            let len = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes();
            let mut input: &[u8] = &len;
            let err = read_frame::<ClientMessage, _>(&mut input)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);

            let mut reader = FrameReader::new(&len[..]);
            let err = reader.next::<ClientMessage>().await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        });
    }

    #[test]
    fn writing_an_oversized_message_is_refused() {
        block_on(async {
            let msg = ServerMessage::error("x", "y".repeat(MAX_FRAME), false);
            let mut out = Vec::new();
            let err = write_frame(&mut out, &msg).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(out.is_empty());
        });
    }

    #[test]
    fn truncated_and_malformed_frames_are_errors_and_clean_eof_is_none() {
        block_on(async {
            let mut empty: &[u8] = &[];
            assert!(
                read_frame::<ClientMessage, _>(&mut empty)
                    .await
                    .unwrap()
                    .is_none()
            );

            let mut half_header: &[u8] = &[0, 0];
            let err = read_frame::<ClientMessage, _>(&mut half_header)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

            let mut short_body: &[u8] = &[0, 0, 0, 10, b'{'];
            let err = read_frame::<ClientMessage, _>(&mut short_body)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

            let frame = encode_frame(&serde_json::json!({"type": "launch", "x": 1})).unwrap();
            let mut unknown: &[u8] = &frame;
            let err = read_frame::<ClientMessage, _>(&mut unknown)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        });
    }
}
