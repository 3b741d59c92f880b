//! Finding and checking peer cpm servers: `neighbors ping` and `neighbors discover`.
//!
//! A peer is recognised by what it says, never by an open port alone: its SSH banner
//! (`SSH-2.0-cpm_<version>`) and then an `info` reply (`{"server":"cpm-server",…}`) over SSH with
//! our key. Discovery only reports: it shows each candidate's host key fingerprint and the
//! `cpm neighbors add` line to register it, and adds nothing itself. SSH runs through OpenSSH's
//! client (`CPM_SSH` names another), with the same host-key pinning as replication.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dispatch::INFO_BANNER;
use crate::error::{Error, Result};

/// The banner prefix of a cpm server.
pub const CPM_BANNER: &str = "SSH-2.0-cpm_";

/// Connects and reads the SSH banner. Returns the banner and how long it took.
pub fn banner(addr: SocketAddr, timeout: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    let mut line = String::new();
    let mut reader = BufReader::new(stream);
    // Servers may send other lines before the identification string (RFC 4253 4.2).
    for _ in 0..8 {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line.starts_with("SSH-") {
            return Some((line.trim().to_string(), started.elapsed()));
        }
    }
    None
}

/// What an `info` call returned.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// Whether the reply was a cpm server's.
    pub cpm: bool,
    /// The reply, or the error.
    pub reply: String,
    /// Round trip, including the SSH handshake.
    pub millis: u128,
}

/// Runs `info` on `host:port` over SSH with `key` (none: the call fails at authentication,
/// but the host key is still learnt into `known_hosts`).
pub fn info(
    host: &str,
    port: u16,
    key: Option<&Path>,
    known_hosts: &Path,
    timeout: Duration,
) -> Info {
    let program = std::env::var("CPM_SSH")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "ssh".into());
    let mut cmd = Command::new(program);
    if let Some(key) = key {
        cmd.arg("-i").arg(key).args(["-o", "IdentitiesOnly=yes"]);
    } else {
        cmd.args(["-o", "PubkeyAuthentication=no"]);
    }
    cmd.args([
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        "HashKnownHosts=no",
    ])
    .arg("-o")
    .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
    .arg("-o")
    .arg(format!("ConnectTimeout={}", timeout.as_secs().max(1)))
    .arg("-p")
    .arg(port.to_string())
    .arg(format!("git@{host}"))
    .arg("info");
    let started = Instant::now();
    let out = cmd.output();
    let millis = started.elapsed().as_millis();
    match out {
        Ok(out) if out.status.success() => {
            let reply = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let cpm = serde_json::from_str::<serde_json::Value>(&reply)
                .is_ok_and(|v| v["server"] == INFO_BANNER);
            Info { cpm, reply, millis }
        }
        Ok(out) => Info {
            cpm: false,
            reply: String::from_utf8_lossy(&out.stderr)
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("ssh failed")
                .trim()
                .to_string(),
            millis,
        },
        Err(e) => Info {
            cpm: false,
            reply: format!("cannot run ssh ({e})"),
            millis,
        },
    }
}

/// The host key fingerprint(s) a `known_hosts` file holds for `host:port`.
pub fn pinned_fingerprint(known_hosts: &Path, host: &str, port: u16) -> Option<String> {
    let text = std::fs::read_to_string(known_hosts).ok()?;
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let hosts = parts.next()?;
        if !hosts.split(',').any(|h| h == name) {
            return None;
        }
        let key = parts.take(2).collect::<Vec<_>>().join(" ");
        crate::keys::fingerprint_of(&key).ok()
    })
}

/// The IPv4 addresses of `cidr` (`192.168.1.0/24`), at most a /16. Network and broadcast
/// addresses are skipped for prefixes shorter than /31.
pub fn hosts(cidr: &str) -> Result<Vec<Ipv4Addr>> {
    let (addr, prefix) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let addr: Ipv4Addr = addr.parse().map_err(|_| {
        Error::Invalid(format!(
            "'{cidr}' is not an IPv4 network (e.g. 192.168.1.0/24)"
        ))
    })?;
    let prefix: u32 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| Error::Invalid(format!("'{cidr}' has a bad prefix length (0-32)")))?;
    if prefix < 16 {
        return Err(Error::Invalid(format!(
            "{cidr} is {} addresses; scan at most a /16 at a time",
            1u64 << (32 - prefix)
        )));
    }
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    let network = u32::from(addr) & mask;
    let size = 1u32 << (32 - prefix);
    let range: Vec<Ipv4Addr> = if prefix >= 31 {
        (0..size).map(|i| Ipv4Addr::from(network + i)).collect()
    } else {
        (1..size - 1).map(|i| Ipv4Addr::from(network + i)).collect()
    };
    Ok(range)
}

/// A host that answered with an SSH banner.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// Address.
    pub host: IpAddr,
    /// Port.
    pub port: u16,
    /// Its SSH banner.
    pub banner: String,
    /// Whether the banner is a cpm server's.
    pub cpm_banner: bool,
    /// Whether an `info` reply confirmed it (needs a key the peer knows).
    pub confirmed: bool,
    /// Its host key fingerprint.
    pub host_key: Option<String>,
    /// The `info` reply or why there was none.
    pub info: String,
}

/// Scans `hosts` on `port` (64 at a time) and identifies cpm peers among them.
pub fn discover(
    hosts: &[Ipv4Addr],
    port: u16,
    key: Option<&Path>,
    timeout: Duration,
) -> Result<Vec<Found>> {
    let mut answering: Vec<(IpAddr, String)> = Vec::new();
    for chunk in hosts.chunks(64) {
        let found: Vec<Option<(IpAddr, String)>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|ip| {
                    s.spawn(move || {
                        let addr = SocketAddr::new(IpAddr::V4(*ip), port);
                        banner(addr, timeout).map(|(b, _)| (IpAddr::V4(*ip), b))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().ok().flatten())
                .collect()
        });
        answering.extend(found.into_iter().flatten());
    }
    let scratch = tempfile_known_hosts()?;
    let mut out = Vec::new();
    for (host, banner) in answering {
        let cpm_banner = banner.starts_with(CPM_BANNER);
        let (confirmed, info_text, host_key) = if cpm_banner {
            let i = info(&host.to_string(), port, key, &scratch, timeout);
            (
                i.cpm,
                i.reply,
                pinned_fingerprint(&scratch, &host.to_string(), port),
            )
        } else {
            (
                false,
                "not a cpm server (its banner says otherwise)".into(),
                None,
            )
        };
        out.push(Found {
            host,
            port,
            banner,
            cpm_banner,
            confirmed,
            host_key,
            info: info_text,
        });
    }
    let _ = std::fs::remove_file(&scratch);
    Ok(out)
}

fn tempfile_known_hosts() -> Result<std::path::PathBuf> {
    let path =
        std::env::temp_dir().join(format!("cpm-discover-{}-known_hosts", std::process::id()));
    std::fs::write(&path, "").map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_expand_to_their_hosts_and_huge_ones_are_refused() {
        assert_eq!(
            hosts("10.0.0.0/30").unwrap(),
            [
                "10.0.0.1".parse::<Ipv4Addr>().unwrap(),
                "10.0.0.2".parse().unwrap()
            ]
        );
        assert_eq!(hosts("127.0.0.1/32").unwrap().len(), 1);
        assert_eq!(hosts("192.168.1.77/24").unwrap().len(), 254);
        assert!(hosts("10.0.0.0/8").is_err());
        assert!(hosts("not-an-ip/24").is_err());
        assert!(hosts("10.0.0.0/40").is_err());
    }
}
