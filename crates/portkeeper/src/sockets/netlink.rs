//! The kernel's socket tables read through netlink `sock_diag`, the interface `ss` uses.
//!
//! Reading `/proc/net/tcp` makes the kernel walk its whole table of established connections even
//! when only listeners are wanted, which costs milliseconds on every read. A `SOCK_DIAG_BY_FAMILY`
//! dump names the TCP states it wants, so a dump of listeners only visits the listening hash, and
//! a dump of unconnected UDP sockets is as cheap as the UDP table is small. One dump is asked for
//! each (family, protocol) pair on one netlink socket; the replies are parsed in place from one
//! buffer, and each kept socket becomes the same [`Row`] the `/proc` parser makes.
//!
//! Restricted sandboxes (some containers, gVisor) have no `sock_diag`; any failure here is
//! reported as an [`io::Error`] and the caller falls back to `/proc`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, sockopt};

use super::procfs::{Row, Table};
use super::{Family, Proto};

/// `SOCK_DIAG_BY_FAMILY`: the message type of requests and of the replies carrying sockets.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_NOOP`: a message to skip.
const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR`: the request failed; the payload starts with a negated errno.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump; the payload starts with 0 or a negated errno.
const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`: data was lost.
const NLMSG_OVERRUN: u16 = 4;
/// `NLM_F_REQUEST | NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const DUMP_REQUEST: u16 = 0x0001 | 0x0100 | 0x0200;

/// `AF_INET` and `AF_INET6` as `sdiag_family` bytes.
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// `IPPROTO_TCP` and `IPPROTO_UDP` as `sdiag_protocol` bytes.
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// `TCP_LISTEN` in the kernel's state numbering.
const TCP_LISTEN: u8 = 10;
/// `TCP_CLOSE`: the state of a bound UDP socket without a peer.
const TCP_CLOSE: u8 = 7;

/// `struct nlmsghdr`: length, type, flags, sequence number, port id.
const HEADER_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, extensions, padding, states, and a 48-byte
/// `struct inet_diag_sockid` left zero (no port, address or cookie to match).
const REQUEST_LEN: usize = HEADER_LEN + 8 + 48;
/// `struct inet_diag_msg`, the start of every reply's payload; attributes follow and are ignored.
const DIAG_MSG_LEN: usize = 72;

/// Offsets in `struct inet_diag_msg`.
const MSG_FAMILY: usize = 0;
const MSG_STATE: usize = 1;
/// `id.idiag_sport`, big-endian.
const MSG_SPORT: usize = 4;
/// `id.idiag_src`: 16 bytes, of which an IPv4 address uses the first 4, in network order.
const MSG_SRC: usize = 8;
const MSG_UID: usize = 64;
const MSG_INODE: usize = 68;

/// Room for one reply datagram. The kernel sizes dump replies to the reader's buffer but caps
/// them near 32 KiB; twice that leaves headroom, and a longer one is detected, not cut short.
const RECV_BUFFER: usize = 64 * 1024;

/// How long to wait for a reply before giving up on netlink (and reading `/proc` instead).
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// A netlink `sock_diag` socket and the buffer its replies are read into.
#[derive(Debug)]
pub(super) struct Dumper {
    socket: OwnedFd,
    buf: Vec<u8>,
    /// The sequence number of the last request.
    seq: u32,
}

impl Dumper {
    /// Opens a `NETLINK_SOCK_DIAG` socket. Fails where the sandbox forbids netlink or the kernel
    /// lacks `sock_diag`.
    pub(super) fn open() -> io::Result<Dumper> {
        let socket = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(netlink::SOCK_DIAG),
        )?;
        // The kernel answers at once; a sandbox that emulates netlink badly must not hang us.
        sockopt::set_socket_timeout(&socket, sockopt::Timeout::Recv, Some(REPLY_TIMEOUT))?;
        Ok(Dumper {
            socket,
            buf: vec![0; RECV_BUFFER],
            seq: 0,
        })
    }

    /// Dumps `table` from the kernel, appending to `out` every socket in the wanted state whose
    /// local port is non-zero and accepted by `wanted`, in the order the kernel gives them.
    ///
    /// On error, `out` may hold part of the table and the socket should not be used again.
    pub(super) fn dump(
        &mut self,
        table: &Table,
        wanted: &dyn Fn(u16) -> bool,
        out: &mut Vec<Row>,
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let request = request(table, self.seq);
        let kernel = SocketAddrNetlink::new(0, 0);
        let sent =
            retry(|| rustix::net::sendto(&self.socket, &request, SendFlags::empty(), &kernel))?;
        if sent != request.len() {
            return Err(malformed("the request was sent in part"));
        }
        loop {
            let (_, len) =
                retry(|| rustix::net::recv(&self.socket, &mut self.buf[..], RecvFlags::TRUNC))?;
            let reply = self
                .buf
                .get(..len)
                .ok_or_else(|| malformed("a reply is longer than the receive buffer"))?;
            if reply.len() < HEADER_LEN {
                // Every reply holds at least one message; an empty one would loop forever.
                return Err(malformed("an empty reply"));
            }
            if parse_reply(reply, table, self.seq, wanted, out)? == Progress::Done {
                return Ok(());
            }
        }
    }
}

/// Calls `op` again while it is interrupted by a signal.
fn retry<T>(mut op: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(Errno::INTR) => {}
            result => return result.map_err(io::Error::from),
        }
    }
}

/// The bytes of a dump request for the sockets of `table` in its wanted state.
fn request(table: &Table, seq: u32) -> [u8; REQUEST_LEN] {
    let mut msg = [0u8; REQUEST_LEN];
    // REQUEST_LEN is 72: it fits any integer type.
    msg[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg[6..8].copy_from_slice(&DUMP_REQUEST.to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    // The port id stays 0: the kernel fills in ours.
    let body = &mut msg[HEADER_LEN..];
    body[0] = family_byte(table.family);
    body[1] = match table.proto {
        Proto::Tcp => IPPROTO_TCP,
        Proto::Udp => IPPROTO_UDP,
    };
    // body[2] (extensions) and body[3] (padding) stay 0.
    body[4..8].copy_from_slice(&(1u32 << wanted_state(table.proto)).to_ne_bytes());
    msg
}

/// The `sdiag_family` byte of a family.
fn family_byte(family: Family) -> u8 {
    match family {
        Family::Ipv4 => AF_INET,
        Family::Ipv6 => AF_INET6,
    }
}

/// The state a socket of `proto` must be in to be kept.
fn wanted_state(proto: Proto) -> u8 {
    match proto {
        Proto::Tcp => TCP_LISTEN,
        Proto::Udp => TCP_CLOSE,
    }
}

/// Whether a dump has more replies to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    More,
    Done,
}

/// Parses one reply datagram, which holds one or more netlink messages.
fn parse_reply(
    mut reply: &[u8],
    table: &Table,
    seq: u32,
    wanted: &dyn Fn(u16) -> bool,
    out: &mut Vec<Row>,
) -> io::Result<Progress> {
    while reply.len() >= HEADER_LEN {
        let len = usize::try_from(ne_u32(reply, 0))
            .map_err(|_| malformed("a message length does not fit in memory"))?;
        if len < HEADER_LEN || len > reply.len() {
            return Err(malformed("a message length is out of bounds"));
        }
        let kind = ne_u16(reply, 4);
        let message_seq = ne_u32(reply, 8);
        let payload = &reply[HEADER_LEN..len];
        // Messages are padded to 4 bytes; the last one of a datagram may not be.
        reply = reply.get(len.next_multiple_of(4)..).unwrap_or_default();
        if message_seq != seq {
            // Left over from an earlier request.
            continue;
        }
        match kind {
            SOCK_DIAG_BY_FAMILY => {
                if let Some(row) = parse_socket(payload, table, wanted)? {
                    out.push(row);
                }
            }
            NLMSG_DONE => {
                // A dump that failed part way ends with a negated errno here.
                return match payload.get(..4).map(|_| ne_i32(payload, 0)) {
                    Some(err) if err < 0 => Err(kernel_error(err)),
                    _ => Ok(Progress::Done),
                };
            }
            NLMSG_ERROR => {
                let err = payload
                    .get(..4)
                    .map(|_| ne_i32(payload, 0))
                    .ok_or_else(|| malformed("an error message is too short"))?;
                // 0 is an acknowledgement, which we did not ask for: it ends the request too.
                return if err < 0 {
                    Err(kernel_error(err))
                } else {
                    Ok(Progress::Done)
                };
            }
            NLMSG_NOOP => {}
            NLMSG_OVERRUN => return Err(malformed("the kernel reports lost data")),
            _ => return Err(malformed("a message of an unknown type")),
        }
    }
    Ok(Progress::More)
}

/// Decodes one `struct inet_diag_msg`: `Ok(None)` when it is not wanted.
fn parse_socket(
    msg: &[u8],
    table: &Table,
    wanted: &dyn Fn(u16) -> bool,
) -> io::Result<Option<Row>> {
    if msg.len() < DIAG_MSG_LEN {
        return Err(malformed("a socket message is too short"));
    }
    if msg[MSG_FAMILY] != family_byte(table.family) || msg[MSG_STATE] != wanted_state(table.proto) {
        return Ok(None);
    }
    let port = u16::from_be_bytes([msg[MSG_SPORT], msg[MSG_SPORT + 1]]);
    if port == 0 || !wanted(port) {
        return Ok(None);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&msg[MSG_SRC..MSG_SRC + 16]);
    let address = match table.family {
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3])),
        Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(src)),
    };
    Ok(Some(Row {
        proto: table.proto,
        family: table.family,
        address,
        port,
        inode: u64::from(ne_u32(msg, MSG_INODE)),
        uid: ne_u32(msg, MSG_UID),
    }))
}

/// The native-endian `u32` at `at`; the caller has checked the bounds.
fn ne_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_ne_bytes(word)
}

/// The native-endian `i32` at `at`; the caller has checked the bounds.
fn ne_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes(ne_u32(bytes, at).to_ne_bytes())
}

/// The native-endian `u16` at `at`; the caller has checked the bounds.
fn ne_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

/// The error a kernel's negated errno stands for.
fn kernel_error(negated: i32) -> io::Error {
    io::Error::from_raw_os_error(negated.saturating_neg())
}

/// A reply that does not have the shape this parser knows.
fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected netlink sock_diag reply: {what}"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::procfs::TABLES;
    use super::*;

    /// A netlink message of `kind` with `payload`, padded to 4 bytes.
    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(HEADER_LEN + payload.len()).unwrap();
        let mut msg = Vec::new();
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&0x0002u16.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&4242u32.to_ne_bytes());
        msg.extend_from_slice(payload);
        while msg.len() % 4 != 0 {
            msg.push(0);
        }
        msg
    }

    /// A `struct inet_diag_msg` followed by one 8-byte attribute, as the kernel sends.
    fn socket(family: u8, state: u8, port: u16, src: [u8; 16], uid: u32, inode: u32) -> Vec<u8> {
        let mut msg = vec![0u8; DIAG_MSG_LEN];
        msg[MSG_FAMILY] = family;
        msg[MSG_STATE] = state;
        msg[MSG_SPORT..MSG_SPORT + 2].copy_from_slice(&port.to_be_bytes());
        msg[MSG_SRC..MSG_SRC + 16].copy_from_slice(&src);
        msg[MSG_UID..MSG_UID + 4].copy_from_slice(&uid.to_ne_bytes());
        msg[MSG_INODE..MSG_INODE + 4].copy_from_slice(&inode.to_ne_bytes());
        msg.extend_from_slice(&[5, 0, 8, 0, 0, 0, 0, 0]);
        msg
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[a, b, c, d]);
        src
    }

    #[test]
    fn a_request_asks_for_listening_tcp_of_one_family() {
        let msg = request(&TABLES[1], 7);
        assert_eq!(ne_u32(&msg, 0), 72);
        assert_eq!(ne_u16(&msg, 4), SOCK_DIAG_BY_FAMILY);
        assert_eq!(ne_u16(&msg, 6), 0x0301);
        assert_eq!(ne_u32(&msg, 8), 7);
        assert_eq!(&msg[16..20], &[AF_INET6, IPPROTO_TCP, 0, 0]);
        assert_eq!(ne_u32(&msg, 20), 1 << 10);
        assert!(msg[24..].iter().all(|&b| b == 0));
        let udp = request(&TABLES[2], 8);
        assert_eq!(&udp[16..20], &[AF_INET, IPPROTO_UDP, 0, 0]);
        assert_eq!(ne_u32(&udp, 20), 1 << 7);
    }

    #[test]
    fn a_reply_of_several_messages_is_decoded_until_done() {
        let mut reply = message(
            SOCK_DIAG_BY_FAMILY,
            3,
            &socket(AF_INET, TCP_LISTEN, 3000, v4(127, 0, 0, 1), 1000, 4242),
        );
        reply.extend(message(
            SOCK_DIAG_BY_FAMILY,
            3,
            &socket(AF_INET, TCP_LISTEN, 22, v4(0, 0, 0, 0), 0, 17),
        ));
        reply.extend(message(NLMSG_DONE, 3, &0i32.to_ne_bytes()));
        let mut rows = Vec::new();

        let progress = parse_reply(&reply, &TABLES[0], 3, &|port| port != 22, &mut rows).unwrap();

        assert_eq!(progress, Progress::Done);
        assert_eq!(
            rows,
            [Row {
                proto: Proto::Tcp,
                family: Family::Ipv4,
                address: "127.0.0.1".parse().unwrap(),
                port: 3000,
                inode: 4242,
                uid: 1000,
            }]
        );
    }

    #[test]
    fn ipv6_addresses_are_kept_whole_and_other_states_are_dropped() {
        let mapped: Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        let mut reply = message(
            SOCK_DIAG_BY_FAMILY,
            1,
            &socket(AF_INET6, TCP_CLOSE, 53, mapped.octets(), 0, 778),
        );
        reply.extend(message(
            SOCK_DIAG_BY_FAMILY,
            1,
            &socket(AF_INET6, 1, 40000, mapped.octets(), 0, 779),
        ));
        let mut rows = Vec::new();

        let progress = parse_reply(&reply, &TABLES[3], 1, &|_| true, &mut rows).unwrap();

        assert_eq!(progress, Progress::More);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].address, IpAddr::V6(mapped));
        assert_eq!(
            (rows[0].proto, rows[0].port, rows[0].inode),
            (Proto::Udp, 53, 778)
        );
    }

    #[test]
    fn a_kernel_error_becomes_its_errno() {
        let mut payload = (-2i32).to_ne_bytes().to_vec();
        payload.extend_from_slice(&request(&TABLES[2], 5)[..HEADER_LEN]);
        let reply = message(NLMSG_ERROR, 5, &payload);

        let err = parse_reply(&reply, &TABLES[2], 5, &|_| true, &mut Vec::new()).unwrap_err();

        assert_eq!(err.raw_os_error(), Some(2));
    }

    #[test]
    fn messages_of_another_request_are_skipped_and_bad_lengths_refused() {
        let stale = message(
            SOCK_DIAG_BY_FAMILY,
            1,
            &socket(AF_INET, TCP_LISTEN, 80, v4(0, 0, 0, 0), 0, 1),
        );
        let mut rows = Vec::new();
        assert_eq!(
            parse_reply(&stale, &TABLES[0], 2, &|_| true, &mut rows).unwrap(),
            Progress::More
        );
        assert!(rows.is_empty());

        let mut bad = message(NLMSG_DONE, 2, &0i32.to_ne_bytes());
        bad[0..4].copy_from_slice(&100u32.to_ne_bytes());
        assert!(parse_reply(&bad, &TABLES[0], 2, &|_| true, &mut rows).is_err());

        let short = message(SOCK_DIAG_BY_FAMILY, 2, &[0u8; 20]);
        assert!(parse_reply(&short, &TABLES[0], 2, &|_| true, &mut rows).is_err());
    }
}
