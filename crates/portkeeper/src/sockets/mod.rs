//! What is holding ports on this machine right now, read straight from the kernel.
//!
//! Reserving a port is only useful if portman can tell which ports are already taken and by whom.
//! This module lists every listening TCP socket and every bound, unconnected UDP socket (IPv4 and
//! IPv6) with the processes and user that own it, in one [`Snapshot`] per call, by asking Linux
//! directly instead of running `ss` or `lsof`: through netlink `sock_diag` where the kernel offers
//! it, else by reading `/proc/net` (see [`Source`]). Sockets we cannot see (another network
//! namespace, a hidden `/proc`) are covered by [`probe`], which asks the kernel by binding the port,
//! so that a port held out of our sight is never reported free.

mod netlink;
mod owners;
mod procfs;

pub use owners::user_name;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP; only listening sockets are listed.
    Tcp,
    /// UDP; only bound, unconnected sockets are listed.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// An address family: which kernel table a socket came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4.
    Ipv4,
    /// IPv6, including dual-stack sockets bound to `[::]`, which also accept IPv4.
    Ipv6,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        })
    }
}

/// A process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Owner {
    /// Its process id.
    pub pid: u32,
    /// Its name as the kernel keeps it (`/proc/<pid>/comm`: at most 15 bytes).
    pub process: String,
}

/// One kernel socket holding a port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Socket {
    /// TCP or UDP.
    pub proto: Proto,
    /// The table it came from.
    pub family: Family,
    /// The local address; IPv4-mapped IPv6 addresses stay IPv6.
    pub address: IpAddr,
    /// The local port, never 0.
    pub port: u16,
    /// `"LISTEN"` for TCP, `"UNCONN"` for UDP.
    pub state: &'static str,
    /// The socket's inode number, which identifies it.
    pub inode: u64,
    /// The uid that created it.
    pub uid: u32,
    /// That uid's name from `/etc/passwd`, else the uid as text.
    pub user: String,
    /// The processes with a file descriptor on it, sorted by pid; empty when none is visible to
    /// us (another user's process while we lack privilege, or one in another pid namespace).
    pub owners: Vec<Owner>,
}

impl Socket {
    /// The local endpoint as `address:port`: `127.0.0.1:3000`, `0.0.0.0:3000`, `[::1]:3000`,
    /// `[::]:3000`.
    pub fn endpoint(&self) -> String {
        SocketAddr::new(self.address, self.port).to_string()
    }

    /// The order of a snapshot: port, protocol, family, address, then inode.
    fn sort_key(&self) -> (u16, Proto, Family, IpAddr, u64) {
        (self.port, self.proto, self.family, self.address, self.inode)
    }
}

/// The sockets holding ports at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Sorted by [`Socket::sort_key`].
    sockets: Vec<Socket>,
}

/// Where a snapshot reads the kernel's socket tables from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Netlink `sock_diag` dumps, as `ss` does: only listening TCP and unconnected UDP sockets
    /// are visited, so the cost does not grow with established connections.
    Netlink,
    /// The text tables `/proc/net/{tcp,tcp6,udp,udp6}`: every TCP connection is printed by the
    /// kernel and skipped by us, but they work where netlink is forbidden.
    Procfs,
}

impl Snapshot {
    /// Lists every listening TCP socket and bound UDP socket, with owners and users.
    ///
    /// The tables are read through [`Source::Netlink`]; where that is unavailable (a sandbox
    /// without `sock_diag`, a refusal by the kernel), through [`Source::Procfs`], with the same
    /// result.
    pub fn take() -> Result<Snapshot, ScanError> {
        scan(None, &|_| true, Owners::Find)
    }

    /// Like [`Snapshot::take`], but keeps only sockets on ports for which `wanted` is true; the
    /// costly search for owning processes covers only those, and is skipped when none is found.
    pub fn take_filtered(wanted: impl Fn(u16) -> bool) -> Result<Snapshot, ScanError> {
        scan(None, &wanted, Owners::Find)
    }

    /// Like [`Snapshot::take_filtered`], but without looking for owning processes at all: every
    /// socket's [`Socket::owners`] is empty (its uid and user are still filled in).
    ///
    /// The search for owners reads every process's open files and costs far more than listing
    /// the sockets; use this when only the ports held matter, as when allocating a free one.
    pub fn take_unowned(wanted: impl Fn(u16) -> bool) -> Result<Snapshot, ScanError> {
        scan(None, &wanted, Owners::Skip)
    }

    /// Like [`Snapshot::take_filtered`], reading the tables from `source` only, with no fallback:
    /// an unavailable source is an error. For tests and diagnostics; callers otherwise want
    /// [`Snapshot::take_filtered`], which picks the source itself.
    pub fn take_from(source: Source, wanted: impl Fn(u16) -> bool) -> Result<Snapshot, ScanError> {
        scan(Some(source), &wanted, Owners::Find)
    }

    /// A snapshot of the given sockets, for callers that build one themselves (tests, replays).
    pub fn from_sockets(mut sockets: Vec<Socket>) -> Snapshot {
        sockets.sort_by_key(Socket::sort_key);
        Snapshot { sockets }
    }

    /// All sockets, sorted by port, protocol, family and address.
    pub fn sockets(&self) -> &[Socket] {
        &self.sockets
    }

    /// How many sockets it holds.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether it holds no socket.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The sockets on `port`, in snapshot order.
    pub fn on_port(&self, port: u16) -> impl Iterator<Item = &Socket> {
        self.port_slice(port).iter()
    }

    /// Whether any socket, a TCP listener or a bound UDP socket, is on `port`.
    pub fn is_listening(&self, port: u16) -> bool {
        !self.port_slice(port).is_empty()
    }

    /// The distinct pids owning sockets on `port`, sorted.
    pub fn pids_on_port(&self, port: u16) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .on_port(port)
            .flat_map(|socket| socket.owners.iter().map(|owner| owner.pid))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// The distinct ports held, ascending.
    pub fn ports(&self) -> impl Iterator<Item = u16> {
        self.sockets
            .chunk_by(|a, b| a.port == b.port)
            .map(|run| run[0].port)
    }

    /// The contiguous run of sockets on `port`.
    fn port_slice(&self, port: u16) -> &[Socket] {
        let start = self.sockets.partition_point(|s| s.port < port);
        let end = self.sockets.partition_point(|s| s.port <= port);
        &self.sockets[start..end]
    }
}

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A kernel socket table could not be read.
    #[error(
        "cannot read the kernel socket table {path}: {source} (listing sockets needs Linux's /proc)"
    )]
    Table {
        /// The table's path.
        path: &'static str,
        /// What reading it said.
        #[source]
        source: std::io::Error,
    },
    /// A kernel socket table had a line of an unknown shape.
    #[error("unexpected line {line} in the kernel socket table {path}: {text:?}")]
    Malformed {
        /// The table's path.
        path: &'static str,
        /// The 1-based line number.
        line: usize,
        /// The line, trimmed.
        text: String,
    },
    /// Netlink `sock_diag` could not list a table, when it was the required source.
    #[error("cannot list the kernel socket table {table} through netlink sock_diag: {source}")]
    Netlink {
        /// The table's name: `tcp`, `tcp6`, `udp` or `udp6`.
        table: &'static str,
        /// What the kernel or the reply said.
        #[source]
        source: std::io::Error,
    },
    /// The list of processes, `/proc`, could not be read to find socket owners.
    #[error("cannot list processes in /proc to find socket owners: {source}")]
    Processes {
        /// What reading it said.
        #[source]
        source: std::io::Error,
    },
}

/// Whether a scan looks for the processes owning its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owners {
    Find,
    Skip,
}

/// Appends the wanted rows of every table to `rows`, from `source`, or when it is `None` from
/// netlink with `/proc` standing in for every table netlink fails to give.
fn read_rows(
    source: Option<Source>,
    wanted: &dyn Fn(u16) -> bool,
    rows: &mut Vec<procfs::Row>,
) -> Result<(), ScanError> {
    let required = source == Some(Source::Netlink);
    let mut dumper = match source {
        Some(Source::Procfs) => None,
        Some(Source::Netlink) => {
            Some(
                netlink::Dumper::open().map_err(|source| ScanError::Netlink {
                    table: procfs::TABLES[0].name,
                    source,
                })?,
            )
        }
        None => netlink::Dumper::open().ok(),
    };
    let mut buf = Vec::new();
    for table in &procfs::TABLES {
        if let Some(netlink) = dumper.as_mut() {
            let kept = rows.len();
            match netlink.dump(table, wanted, rows) {
                Ok(()) => continue,
                Err(source) if required => {
                    return Err(ScanError::Netlink {
                        table: table.name,
                        source,
                    });
                }
                Err(_) => {
                    // Whatever the failure (no sock_diag for this protocol, a refusal, a reply
                    // we do not understand), /proc answers for this table and the rest, and the
                    // part of the table already read is dropped.
                    rows.truncate(kept);
                    dumper = None;
                }
            }
        }
        if buf.capacity() == 0 {
            buf.reserve(64 * 1024);
        }
        procfs::read_table(table, &mut buf)?;
        procfs::parse_table(table, &buf, wanted, rows)?;
    }
    Ok(())
}

/// Reads the tables once, keeps wanted sockets, and names their users and, unless told to skip
/// it, their owners.
fn scan(
    source: Option<Source>,
    wanted: &dyn Fn(u16) -> bool,
    find_owners: Owners,
) -> Result<Snapshot, ScanError> {
    let mut rows = Vec::new();
    read_rows(source, wanted, &mut rows)?;
    // A table read while sockets come and go can list one twice: /proc resumes each read() by
    // position, and a netlink dump resumes each reply the same way. A socket is one inode.
    rows.sort_unstable_by_key(|row| (row.port, row.proto, row.family, row.address, row.inode));
    rows.dedup_by_key(|row| row.inode);
    if rows.is_empty() {
        return Ok(Snapshot::default());
    }

    let holders = match find_owners {
        Owners::Find => {
            let mut inodes: Vec<u64> = rows.iter().map(|row| row.inode).collect();
            inodes.sort_unstable();
            inodes.dedup();
            owners::socket_owners(&inodes)?
        }
        Owners::Skip => Vec::new(),
    };

    // One comm read per owning process; a process that exited since the walk owns nothing.
    let mut pids: Vec<u32> = holders.iter().map(|&(_, pid)| pid).collect();
    pids.sort_unstable();
    pids.dedup();
    let names: Vec<Option<String>> = pids.iter().map(|&pid| owners::process_name(pid)).collect();

    let mut uids: Vec<u32> = rows.iter().map(|row| row.uid).collect();
    uids.sort_unstable();
    uids.dedup();
    let users = owners::user_names(&uids);

    let sockets = rows
        .into_iter()
        .map(|row| {
            let first = holders.partition_point(|&(inode, _)| inode < row.inode);
            let owners = holders[first..]
                .iter()
                .take_while(|&&(inode, _)| inode == row.inode)
                .filter_map(|&(_, pid)| {
                    let index = pids.binary_search(&pid).ok()?;
                    let process = names.get(index)?.clone()?;
                    Some(Owner { pid, process })
                })
                .collect();
            let user = uids
                .binary_search(&row.uid)
                .ok()
                .and_then(|index| users.get(index).cloned())
                .unwrap_or_else(|| row.uid.to_string());
            Socket {
                proto: row.proto,
                family: row.family,
                address: row.address,
                port: row.port,
                state: match row.proto {
                    Proto::Tcp => "LISTEN",
                    Proto::Udp => "UNCONN",
                },
                inode: row.inode,
                uid: row.uid,
                user,
                owners,
            }
        })
        .collect();
    Ok(Snapshot::from_sockets(sockets))
}

/// What a bind attempt says about a port nobody visibly holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// Every bind succeeded: nothing holds the port.
    Free,
    /// A bind failed with "address in use": something holds it, seen or not.
    InUse,
    /// We cannot tell: binding was refused (a privileged port without privilege) or failed for
    /// another reason, and no attempt said "in use".
    Unknown,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Probe::Free => "free",
            Probe::InUse => "in use",
            Probe::Unknown => "unknown",
        })
    }
}

/// Asks the kernel whether `port` is free by binding it, and letting go at once: TCP and UDP, on
/// `0.0.0.0` and on `[::]`.
///
/// Any "address in use" makes it [`Probe::InUse`]. A refusal for privilege (`EACCES`, `EPERM`) or
/// another failure makes it [`Probe::Unknown`] unless some attempt said in use. A host without
/// IPv6 only skips the IPv6 attempts. TCP binds set `SO_REUSEADDR`, as servers do, so connections
/// lingering in `TIME_WAIT` do not count. Port 0 means "any port" to the kernel, so it is
/// [`Probe::Unknown`].
pub fn probe(port: u16) -> Probe {
    if port == 0 {
        return Probe::Unknown;
    }
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    let mut answer = Probe::Free;
    // One attempt at a time: our own probe sockets must not collide with each other.
    for (kind, addr) in [
        (SocketType::STREAM, v4),
        (SocketType::STREAM, v6),
        (SocketType::DGRAM, v4),
        (SocketType::DGRAM, v6),
    ] {
        match try_bind(kind, addr) {
            Attempt::Bound | Attempt::NoIpv6 => {}
            Attempt::InUse => return Probe::InUse,
            Attempt::CannotTell => answer = Probe::Unknown,
        }
    }
    answer
}

/// The outcome of one bind attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Bound,
    InUse,
    /// IPv6 is not available on this host: says nothing about the port.
    NoIpv6,
    CannotTell,
}

/// Binds a fresh socket of `kind` to `addr`, then closes it.
fn try_bind(kind: SocketType, addr: SocketAddr) -> Attempt {
    let ipv6 = addr.is_ipv6();
    let family = if ipv6 {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let no_ipv6 = |err: Errno| ipv6 && matches!(err, Errno::AFNOSUPPORT | Errno::ADDRNOTAVAIL);
    let socket = match rustix::net::socket_with(family, kind, SocketFlags::CLOEXEC, None) {
        Ok(socket) => socket,
        Err(err) if no_ipv6(err) => return Attempt::NoIpv6,
        Err(_) => return Attempt::CannotTell,
    };
    if kind == SocketType::STREAM
        && rustix::net::sockopt::set_socket_reuseaddr(&socket, true).is_err()
    {
        return Attempt::CannotTell;
    }
    match rustix::net::bind(&socket, &addr) {
        Ok(()) => Attempt::Bound,
        Err(Errno::ADDRINUSE) => Attempt::InUse,
        Err(err) if no_ipv6(err) => Attempt::NoIpv6,
        Err(_) => Attempt::CannotTell,
    }
}
