//! Opening a rule's listening sockets, with errors a person can act on.
//!
//! Sockets are built with `socket2` so that a listener on `::` can be made dual-stack
//! (`IPV6_V6ONLY` off; where the OS refuses, the OS default stands) and so that TCP
//! listeners can rebind a port whose old connections linger in `TIME_WAIT`
//! (`SO_REUSEADDR`, which on Linux still refuses a port another socket listens on). UDP
//! sockets never get `SO_REUSEADDR`, since on Linux it would let two rules share a port.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// The accept backlog of TCP listeners.
const BACKLOG: i32 = 1024;

/// Which listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tcp,
    Udp,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Udp => "udp",
        }
    }
}

/// Parses a rule's listen address (an IP literal, brackets allowed around IPv6).
pub(crate) fn parse_listen_addr(text: &str) -> Result<IpAddr, String> {
    super::target::literal(text)
        .ok_or_else(|| format!("listen address '{text}' is not an IP address"))
}

/// Why binding failed, in words, e.g. `cannot listen on 0.0.0.0:8080/tcp: address in use`.
pub(crate) fn bind_error(addr: SocketAddr, kind: Kind, e: &io::Error) -> String {
    let why = match e.kind() {
        io::ErrorKind::AddrInUse => "address in use".to_string(),
        io::ErrorKind::AddrNotAvailable => "address not available on this host".to_string(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".to_string()
        }
        _ => e.to_string(),
    };
    format!("cannot listen on {addr}/{}: {why}", kind.as_str())
}

fn socket(addr: SocketAddr, kind: Kind) -> io::Result<Socket> {
    let ty = match kind {
        Kind::Tcp => Type::STREAM,
        Kind::Udp => Type::DGRAM,
    };
    let socket = Socket::new(Domain::for_address(addr), ty, None)?;
    if let IpAddr::V6(ip) = addr.ip()
        && ip.is_unspecified()
    {
        // Dual-stack where the OS allows it; otherwise the OS default (IPv6 only on some
        // systems) stands and the rule still listens on IPv6.
        let _ = socket.set_only_v6(false);
    }
    if kind == Kind::Tcp {
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// A TCP listener on `addr`, ready for tokio.
pub(crate) fn tcp(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    let open = || -> io::Result<tokio::net::TcpListener> {
        let socket = socket(addr, Kind::Tcp)?;
        socket.listen(BACKLOG)?;
        tokio::net::TcpListener::from_std(socket.into())
    };
    open().map_err(|e| bind_error(addr, Kind::Tcp, &e))
}

/// A UDP socket bound to `addr`, ready for tokio.
pub(crate) fn udp(addr: SocketAddr) -> Result<tokio::net::UdpSocket, String> {
    let open = || -> io::Result<tokio::net::UdpSocket> {
        let socket = socket(addr, Kind::Udp)?;
        tokio::net::UdpSocket::from_std(socket.into())
    };
    open().map_err(|e| bind_error(addr, Kind::Udp, &e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_in_use_is_reported_in_words() {
        let first = tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let err = tcp(addr).unwrap_err();
        assert_eq!(err, format!("cannot listen on {addr}/tcp: address in use"));

        let first = udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let err = udp(addr).unwrap_err();
        assert_eq!(err, format!("cannot listen on {addr}/udp: address in use"));
    }

    #[test]
    fn listen_addresses_must_be_ip_literals() {
        assert_eq!(
            parse_listen_addr("[::]").unwrap(),
            "::".parse::<IpAddr>().unwrap()
        );
        assert!(parse_listen_addr("example.com").is_err());
    }
}
