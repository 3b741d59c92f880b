//! The kernel's socket tables, `/proc/net/{tcp,tcp6,udp,udp6}`, read and parsed.
//!
//! These four text files list every socket of the network namespace without special privileges.
//! Netlink `sock_diag` (the `netlink` module) gives the same rows far cheaper, since these files
//! make the kernel print every TCP connection too; they remain the fallback where netlink is
//! forbidden, and the reference the netlink rows are tested against. This part reads each table
//! once into a buffer the caller reuses, and parses it in place: a row that is not a listening TCP
//! socket or a bound, unconnected UDP socket is dropped after looking at two fields, and no row
//! allocates.

use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Family, Proto, ScanError};

/// One kernel socket table and what its rows are.
#[derive(Debug, Clone, Copy)]
pub(super) struct Table {
    /// Its short name, `tcp6` for instance.
    pub(super) name: &'static str,
    /// Where the kernel publishes it.
    pub(super) path: &'static str,
    /// The transport protocol of every row.
    pub(super) proto: Proto,
    /// The address family of every row.
    pub(super) family: Family,
}

/// The four tables, in the order they are read.
pub(super) const TABLES: [Table; 4] = [
    Table {
        name: "tcp",
        path: "/proc/net/tcp",
        proto: Proto::Tcp,
        family: Family::Ipv4,
    },
    Table {
        name: "tcp6",
        path: "/proc/net/tcp6",
        proto: Proto::Tcp,
        family: Family::Ipv6,
    },
    Table {
        name: "udp",
        path: "/proc/net/udp",
        proto: Proto::Udp,
        family: Family::Ipv4,
    },
    Table {
        name: "udp6",
        path: "/proc/net/udp6",
        proto: Proto::Udp,
        family: Family::Ipv6,
    },
];

/// `TCP_LISTEN` in the kernel's state numbering.
const TCP_LISTEN: u8 = 0x0A;
/// `TCP_CLOSE`: what a bound UDP socket without a peer reports (a connected one says `01`).
const UDP_UNCONNECTED: u8 = 0x07;

impl Table {
    /// The state a row must be in to be kept.
    fn wanted_state(&self) -> u8 {
        match self.proto {
            Proto::Tcp => TCP_LISTEN,
            Proto::Udp => UDP_UNCONNECTED,
        }
    }
}

/// A kept row: a socket before its owners and its user's name are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Row {
    pub(super) proto: Proto,
    pub(super) family: Family,
    pub(super) address: IpAddr,
    pub(super) port: u16,
    pub(super) inode: u64,
    pub(super) uid: u32,
}

/// Reads `table` whole into `buf`, which is cleared first.
///
/// An IPv6 table that does not exist (a kernel booted with IPv6 disabled) reads as empty.
pub(super) fn read_table(table: &Table, buf: &mut Vec<u8>) -> Result<(), ScanError> {
    buf.clear();
    let unreadable = |source: io::Error| ScanError::Table {
        path: table.path,
        source,
    };
    match File::open(table.path) {
        Ok(mut file) => file.read_to_end(buf).map(drop).map_err(unreadable),
        Err(err) if err.kind() == io::ErrorKind::NotFound && table.family == Family::Ipv6 => Ok(()),
        Err(err) => Err(unreadable(err)),
    }
}

/// Parses the text of `table`, appending to `out` every row in the wanted state whose local port
/// is non-zero and accepted by `wanted`.
pub(super) fn parse_table(
    table: &Table,
    text: &[u8],
    wanted: &dyn Fn(u16) -> bool,
    out: &mut Vec<Row>,
) -> Result<(), ScanError> {
    // The first line is the column header.
    for (index, line) in text.split(|&b| b == b'\n').enumerate().skip(1) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_row(table, line, wanted) {
            Ok(Some(row)) => out.push(row),
            Ok(None) => {}
            Err(Malformed) => {
                return Err(ScanError::Malformed {
                    path: table.path,
                    line: index + 1,
                    text: String::from_utf8_lossy(line).trim().to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// A row that does not have the shape this parser knows.
#[derive(Debug)]
struct Malformed;

/// Parses one row: `Ok(None)` when it is well formed but not wanted.
///
/// The columns are `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid
/// timeout inode ...`; addresses are `ADDR:PORT` in hexadecimal.
fn parse_row(
    table: &Table,
    line: &[u8],
    wanted: &dyn Fn(u16) -> bool,
) -> Result<Option<Row>, Malformed> {
    let mut fields = line
        .split(u8::is_ascii_whitespace)
        .filter(|field| !field.is_empty());
    let mut next = || fields.next().ok_or(Malformed);

    let _slot = next()?;
    let local = next()?;
    let _remote = next()?;
    let state = hex(next()?, 2).ok_or(Malformed)?;
    if state != u64::from(table.wanted_state()) {
        return Ok(None);
    }
    let colon = local.iter().rposition(|&b| b == b':').ok_or(Malformed)?;
    let (address, port) = (&local[..colon], &local[colon + 1..]);
    let port = hex(port, 4)
        .and_then(|port| u16::try_from(port).ok())
        .ok_or(Malformed)?;
    if port == 0 || !wanted(port) {
        return Ok(None);
    }
    let address = parse_address(address, table.family).ok_or(Malformed)?;
    let _queues = next()?;
    let _timer = next()?;
    let _retransmits = next()?;
    let uid = decimal(next()?)
        .and_then(|uid| u32::try_from(uid).ok())
        .ok_or(Malformed)?;
    let _timeout = next()?;
    let inode = decimal(next()?).ok_or(Malformed)?;
    Ok(Some(Row {
        proto: table.proto,
        family: table.family,
        address,
        port,
        inode,
        uid,
    }))
}

/// Decodes the kernel's hexadecimal address: 32-bit words printed with `%08X`, each word holding
/// network-order bytes as the host stores them, so each word's native-endian bytes are the
/// address bytes.
fn parse_address(hex_text: &[u8], family: Family) -> Option<IpAddr> {
    let word = |chunk: &[u8]| hex(chunk, 8).and_then(|w| u32::try_from(w).ok());
    match family {
        Family::Ipv4 if hex_text.len() == 8 => {
            Some(IpAddr::V4(Ipv4Addr::from(word(hex_text)?.to_ne_bytes())))
        }
        Family::Ipv6 if hex_text.len() == 32 => {
            let mut bytes = [0u8; 16];
            for (chunk, out) in hex_text.chunks_exact(8).zip(bytes.chunks_exact_mut(4)) {
                out.copy_from_slice(&word(chunk)?.to_ne_bytes());
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Parses at most `max_digits` hexadecimal digits.
fn hex(field: &[u8], max_digits: usize) -> Option<u64> {
    if field.is_empty() || field.len() > max_digits {
        return None;
    }
    field.iter().try_fold(0u64, |acc, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some((acc << 4) | u64::from(digit))
    })
}

/// Parses an unsigned decimal number, refusing overflow.
pub(super) fn decimal(field: &[u8]) -> Option<u64> {
    if field.is_empty() {
        return None;
    }
    field.iter().try_fold(0u64, |acc, &b| {
        let digit = char::from(b).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

// The sample rows are what a little-endian kernel prints.
#[cfg(all(test, target_endian = "little"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000018170f12 100 0 0 10 0
   1: 020200C0:D8CC 507100CB:01BB 01 00000000:00000000 02:00000062 00000000     0        0 68276 2 00000000b605417a 20 4 1 21 -1
   2: 00000000:0000 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000018170f12 100 0 0 10 0
";

    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000000000000000000001000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   105        0 777 2 0000000000000000 0
  101: 0000000000000000FFFF00000100007F:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 778 2 0000000000000000 0
  102: 00000000000000000000000001000000:9C40 00000000000000000000000001000000:0035 01 00000000:00000000 00:00000000 00000000     0        0 779 2 0000000000000000 0
";

    fn parse(table: usize, text: &str, wanted: &dyn Fn(u16) -> bool) -> Vec<Row> {
        let mut rows = Vec::new();
        parse_table(&TABLES[table], text.as_bytes(), wanted, &mut rows).unwrap();
        rows
    }

    #[test]
    fn a_listening_ipv4_row_is_decoded_and_others_are_dropped() {
        let rows = parse(0, TCP, &|_| true);
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
    fn unconnected_ipv6_udp_rows_are_kept_and_mapped_addresses_stay_ipv6() {
        let rows = parse(3, UDP6, &|_| true);
        let found: Vec<(IpAddr, u16, u64, u32)> = rows
            .iter()
            .map(|r| (r.address, r.port, r.inode, r.uid))
            .collect();
        assert_eq!(
            found,
            [
                ("::1".parse().unwrap(), 5353, 777, 105),
                ("::ffff:127.0.0.1".parse().unwrap(), 53, 778, 0),
            ]
        );
    }

    #[test]
    fn the_port_filter_drops_unwanted_rows() {
        assert!(parse(0, TCP, &|port| port != 3000).is_empty());
    }

    #[test]
    fn a_malformed_row_is_reported_with_its_line() {
        let text = "header\n   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000\n";
        let mut rows = Vec::new();
        let err = parse_table(&TABLES[0], text.as_bytes(), &|_| true, &mut rows).unwrap_err();
        assert!(matches!(err, ScanError::Malformed { line: 2, .. }), "{err}");
    }
}
