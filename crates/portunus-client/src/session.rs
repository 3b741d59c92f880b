//! Dialling the control listener: TCP, TLS pinned to one certificate, and framed messages.
//!
//! Both enrollment and the long-lived session start the same way, and both need the same
//! guarantees: no step may hang forever (every connect, handshake and write has a deadline), the
//! only certificate accepted is the pinned one, and a pin mismatch is reported as exactly that
//! rather than as a generic TLS failure, since it usually means the URI or bundle points at the
//! wrong server (or someone is in the middle).

use std::io;
use std::time::Duration;

use portunus_core::pin::pinned_client_config;
use portunus_core::wire::{ClientMessage, FrameReader, ServerMessage, write_frame};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

/// How long the TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one frame may take to write.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server has to answer the first frame.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the control listener could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The pin in the bundle or URI is malformed.
    #[error("{0}")]
    Pin(#[from] portunus_core::pin::PinError),
    /// TCP failed.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, io::Error),
    /// The server presented another certificate.
    #[error(
        "the server at {0} presented a certificate that does not match the pinned fingerprint; \
         check the address (or ask the operator whether the server's certificate was replaced)"
    )]
    PinMismatch(String),
    /// TLS failed otherwise.
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(String, io::Error),
    /// A step took too long.
    #[error("{1} with {0} timed out")]
    Timeout(String, &'static str),
}

type Tls = TlsStream<TcpStream>;

/// An open control connection.
#[derive(Debug)]
pub struct Conn {
    reader: FrameReader<ReadHalf<Tls>>,
    writer: WriteHalf<Tls>,
}

/// The TLS server name: the host when it is a valid name or address (the pinned verifier
/// ignores names anyway), else a fixed placeholder.
fn server_name(server: &str) -> ServerName<'static> {
    let host = crate::uri::parse_authority(server)
        .map(|(host, _)| host)
        .unwrap_or_default();
    ServerName::try_from(host)
        .or_else(|_| ServerName::try_from("portunus"))
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
}

fn is_pin_mismatch(e: &io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(_))
    )
}

/// Opens a TLS connection to `server` (`host:port`) that trusts only the certificate `pin`.
pub async fn dial(server: &str, pin: &str) -> Result<Conn, DialError> {
    let config = pinned_client_config(pin)?;
    let tcp = match timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(DialError::Connect(server.to_string(), e)),
        Err(_) => return Err(DialError::Timeout(server.to_string(), "connecting")),
    };
    let _ = tcp.set_nodelay(true);
    let connector = TlsConnector::from(config);
    let tls = match timeout(
        HANDSHAKE_TIMEOUT,
        connector.connect(server_name(server), tcp),
    )
    .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) if is_pin_mismatch(&e) => {
            return Err(DialError::PinMismatch(server.to_string()));
        }
        Ok(Err(e)) => return Err(DialError::Tls(server.to_string(), e)),
        Err(_) => return Err(DialError::Timeout(server.to_string(), "the TLS handshake")),
    };
    let (read, write) = tokio::io::split(tls);
    Ok(Conn {
        reader: FrameReader::new(read),
        writer: write,
    })
}

impl Conn {
    /// Sends one frame, giving up after [`WRITE_TIMEOUT`].
    pub async fn send(&mut self, msg: &ClientMessage) -> io::Result<()> {
        timeout(WRITE_TIMEOUT, write_frame(&mut self.writer, msg))
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// The next frame from the server (`None` when it closed the connection). Cancel-safe.
    pub async fn recv(&mut self) -> io::Result<Option<ServerMessage>> {
        self.reader.next().await
    }

    /// The next frame, waiting at most [`ANSWER_TIMEOUT`].
    pub async fn answer(&mut self) -> io::Result<Option<ServerMessage>> {
        timeout(ANSWER_TIMEOUT, self.recv())
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// Says goodbye (TLS close_notify) and closes.
    pub async fn close(mut self) {
        let _ = timeout(Duration::from_secs(2), self.writer.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host_or_a_placeholder() {
        assert_eq!(
            server_name("relay.example.com:7871"),
            ServerName::try_from("relay.example.com").unwrap_or(ServerName::IpAddress(
                std::net::Ipv4Addr::UNSPECIFIED.into()
            ))
        );
        assert!(matches!(
            server_name("[::1]:7871"),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(server_name("bad"), ServerName::DnsName(_)));
    }
}
