//! PROXY protocol headers, so a target behind the forwarder still learns who the client was.
//!
//! A target may ask for the HAProxy PROXY protocol: version 1 is one text line before the TCP
//! stream, version 2 a binary block before the stream (TCP) or before every datagram (UDP).
//! Both carry the original peer (source) and the address the peer connected to
//! (destination). IPv4-mapped IPv6 addresses, which a dual-stack listener reports for IPv4
//! peers, are written as plain IPv4. Version 1 has no UDP form, so the UDP relay sends no
//! header to a target that asks for version 1.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// The 12-byte signature that opens every version 2 header.
pub(crate) const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The longest version 2 header this module writes (IPv6: 16 + 36 bytes).
pub(crate) const V2_MAX_LEN: usize = 52;

/// Which transport a version 2 header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Stream,
    Datagram,
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The version 1 header line for a TCP connection from `peer` to `local`.
pub(crate) fn v1(peer: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (peer, local) = (canonical(peer), canonical(local));
    let family = match (peer.ip(), local.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => "TCP4",
        (IpAddr::V6(_), IpAddr::V6(_)) => "TCP6",
        _ => return b"PROXY UNKNOWN\r\n".to_vec(),
    };
    let mut line = String::with_capacity(108);
    // Writing to a String cannot fail.
    let _ = write!(
        line,
        "PROXY {family} {} {} {} {}\r\n",
        peer.ip(),
        local.ip(),
        peer.port(),
        local.port()
    );
    line.into_bytes()
}

/// The version 2 header (command PROXY) for traffic from `peer` to `local`.
pub(crate) fn v2(peer: SocketAddr, local: SocketAddr, transport: Transport) -> Vec<u8> {
    let (peer, local) = (canonical(peer), canonical(local));
    let mut out = Vec::with_capacity(V2_MAX_LEN);
    out.extend_from_slice(&V2_SIGNATURE);
    // Version 2, command PROXY.
    out.push(0x21);
    let proto: u8 = match transport {
        Transport::Stream => 0x1,
        Transport::Datagram => 0x2,
    };
    match (peer.ip(), local.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.push(0x10 | proto);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            out.push(0x20 | proto);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        _ => {
            // Mixed families cannot happen on one socket; say "unspecified" if they do.
            out.push(0x00);
            out.extend_from_slice(&0u16.to_be_bytes());
            return out;
        }
    }
    out.extend_from_slice(&peer.port().to_be_bytes());
    out.extend_from_slice(&local.port().to_be_bytes());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines_follow_the_spec() {
        let peer: SocketAddr = "192.0.2.1:56324".parse().unwrap();
        let local: SocketAddr = "198.51.100.7:443".parse().unwrap();
        assert_eq!(
            v1(peer, local),
            b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"
        );
        let peer: SocketAddr = "[2001:db8::1]:1000".parse().unwrap();
        let local: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(v1(peer, local), b"PROXY TCP6 2001:db8::1 ::1 1000 80\r\n");
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5".parse().unwrap();
        let local: SocketAddr = "[::ffff:10.0.0.2]:6".parse().unwrap();
        assert_eq!(v1(mapped, local), b"PROXY TCP4 10.0.0.1 10.0.0.2 5 6\r\n");
    }

    #[test]
    fn v2_headers_follow_the_spec() {
        let peer: SocketAddr = "192.0.2.1:256".parse().unwrap();
        let local: SocketAddr = "198.51.100.7:443".parse().unwrap();
        let h = v2(peer, local, Transport::Stream);
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[
            0x21, 0x11, 0, 12, 192, 0, 2, 1, 198, 51, 100, 7, 1, 0, 1, 187,
        ]);
        assert_eq!(h, want);

        let peer: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let local: SocketAddr = "[::1]:2".parse().unwrap();
        let h = v2(peer, local, Transport::Datagram);
        assert_eq!(h.len(), V2_MAX_LEN);
        assert_eq!(&h[12..16], &[0x21, 0x22, 0, 36]);
        assert_eq!(
            &h[16..32],
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(&h[48..], &[0, 1, 0, 2]);
    }
}
