//! Forwarding rules: which ports a client listens on, with which protocol, and where traffic goes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The most ports one rule may listen on.
pub const MAX_RANGE: u32 = 1024;
/// The most targets one rule may have (priority failover).
pub const MAX_TARGETS: usize = 8;

/// Why a rule (or part of one) is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A port outside 1–65535.
    #[error("port {0} is out of range (1-65535)")]
    Port(i64),
    /// A range whose start is after its end.
    #[error("port range {0}-{1} is reversed; write the lower port first")]
    Reversed(u16, u16),
    /// A range of more than [`MAX_RANGE`] ports.
    #[error("port range {0}-{1} has {2} ports; a rule may listen on at most 1024")]
    TooWide(u16, u16, u32),
    /// Text that is not a port or range.
    #[error("'{0}' is not a port or port range (e.g. 8080 or 8000-8010)")]
    Syntax(String),
    /// An unknown protocol.
    #[error("unknown protocol '{0}' (expected tcp, udp or tcp+udp)")]
    Protocol(String),
    /// An unknown PROXY protocol version.
    #[error("unknown PROXY protocol '{0}' (expected none, v1 or v2)")]
    ProxyProtocol(String),
    /// Too few or too many targets.
    #[error("a rule needs 1 to 8 targets, not {0}")]
    TargetCount(usize),
    /// A target host that is empty or not a host name or address.
    #[error("'{0}' is not a host name or IP address")]
    Host(String),
}

/// An inclusive range of ports, 1 to 1,024 ports wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RangeRepr", into = "RangeRepr")]
pub struct PortRange {
    start: u16,
    end: u16,
}

#[derive(Serialize, Deserialize)]
struct RangeRepr {
    start: i64,
    end: i64,
}

impl TryFrom<RangeRepr> for PortRange {
    type Error = RuleError;
    fn try_from(r: RangeRepr) -> Result<PortRange, RuleError> {
        PortRange::new(r.start, r.end)
    }
}

impl From<PortRange> for RangeRepr {
    fn from(r: PortRange) -> RangeRepr {
        RangeRepr {
            start: i64::from(r.start),
            end: i64::from(r.end),
        }
    }
}

fn port(n: i64) -> Result<u16, RuleError> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(RuleError::Port(n))
}

impl PortRange {
    /// A checked range.
    pub fn new(start: i64, end: i64) -> Result<PortRange, RuleError> {
        let (start, end) = (port(start)?, port(end)?);
        if start > end {
            return Err(RuleError::Reversed(start, end));
        }
        let len = u32::from(end - start) + 1;
        if len > MAX_RANGE {
            return Err(RuleError::TooWide(start, end, len));
        }
        Ok(PortRange { start, end })
    }

    /// First port.
    pub fn start(self) -> u16 {
        self.start
    }

    /// Last port (inclusive).
    pub fn end(self) -> u16 {
        self.end
    }

    /// How many ports.
    pub fn len(self) -> u32 {
        u32::from(self.end - self.start) + 1
    }

    /// Never: a range holds at least one port.
    pub fn is_empty(self) -> bool {
        false
    }

    /// Whether the two ranges share a port.
    pub fn overlaps(self, other: PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Whether `other` lies entirely inside this range.
    pub fn covers(self, other: PortRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl FromStr for PortRange {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<PortRange, RuleError> {
        let num = |t: &str| {
            t.trim()
                .parse::<i64>()
                .map_err(|_| RuleError::Syntax(s.to_string()))
        };
        match s.split_once('-') {
            Some((a, b)) => PortRange::new(num(a)?, num(b)?),
            None => {
                let p = num(s)?;
                PortRange::new(p, p)
            }
        }
    }
}

/// Which transport a rule forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP only.
    #[serde(rename = "tcp")]
    Tcp,
    /// UDP only.
    #[serde(rename = "udp")]
    Udp,
    /// TCP and UDP on the same ports.
    #[serde(rename = "tcp+udp")]
    Both,
}

impl Protocol {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Both => "tcp+udp",
        }
    }

    /// Whether two protocols would compete for the same socket (TCP with TCP, UDP with UDP).
    pub fn shares_transport(self, other: Protocol) -> bool {
        self == Protocol::Both || other == Protocol::Both || self == other
    }

    /// Whether this protocol is within `allowed` (a grant's protocols).
    pub fn within(self, allowed: Protocol) -> bool {
        allowed == Protocol::Both || self == allowed
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Protocol, RuleError> {
        match s.trim() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "tcp+udp" | "both" => Ok(Protocol::Both),
            other => Err(RuleError::Protocol(other.to_string())),
        }
    }
}

/// The PROXY protocol header sent to a target, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// No header.
    #[default]
    None,
    /// The text header (v1).
    V1,
    /// The binary header (v2).
    V2,
}

impl FromStr for ProxyProtocol {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<ProxyProtocol, RuleError> {
        match s.trim() {
            "none" | "" => Ok(ProxyProtocol::None),
            "v1" => Ok(ProxyProtocol::V1),
            "v2" => Ok(ProxyProtocol::V2),
            other => Err(RuleError::ProxyProtocol(other.to_string())),
        }
    }
}

/// Where forwarded traffic goes: a host (name or address) and a port, with a failover priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Lower is tried first; equal priorities share the load.
    #[serde(default)]
    pub priority: u8,
    /// PROXY protocol header to send.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
}

impl Target {
    /// Checks the host and port.
    pub fn check(&self) -> Result<(), RuleError> {
        let host = self.host.trim();
        let ok = !host.is_empty()
            && host.len() <= 253
            && !host.starts_with('-')
            && host.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_')
            });
        if !ok {
            return Err(RuleError::Host(self.host.clone()));
        }
        port(i64::from(self.port)).map(|_| ())
    }
}

/// Checks a rule's target list: 1 to 8 valid targets.
pub fn check_targets(targets: &[Target]) -> Result<(), RuleError> {
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return Err(RuleError::TargetCount(targets.len()));
    }
    targets.iter().try_for_each(Target::check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_for_bounds_order_and_width() {
        assert_eq!("8080".parse::<PortRange>().unwrap().len(), 1);
        assert_eq!("8000-9023".parse::<PortRange>().unwrap().len(), 1024);
        assert_eq!(
            "8000-9024".parse::<PortRange>(),
            Err(RuleError::TooWide(8000, 9024, 1025))
        );
        assert_eq!("0".parse::<PortRange>(), Err(RuleError::Port(0)));
        assert_eq!(
            "65000-70000".parse::<PortRange>(),
            Err(RuleError::Port(70000))
        );
        assert_eq!(
            "9000-8000".parse::<PortRange>(),
            Err(RuleError::Reversed(9000, 8000))
        );
        assert!(matches!(
            "eighty".parse::<PortRange>(),
            Err(RuleError::Syntax(_))
        ));
        assert!(serde_json::from_str::<PortRange>(r#"{"start":1,"end":70000}"#).is_err());
    }

    #[test]
    fn overlap_and_cover_are_inclusive() {
        let a: PortRange = "100-200".parse().unwrap();
        assert!(a.overlaps("200-300".parse().unwrap()));
        assert!(!a.overlaps("201-300".parse().unwrap()));
        assert!(a.covers("150-200".parse().unwrap()));
        assert!(!a.covers("150-201".parse().unwrap()));
    }

    #[test]
    fn protocols_share_transports_and_fit_grants() {
        assert!(Protocol::Tcp.shares_transport(Protocol::Both));
        assert!(!Protocol::Tcp.shares_transport(Protocol::Udp));
        assert!(Protocol::Udp.within(Protocol::Both));
        assert!(!Protocol::Both.within(Protocol::Tcp));
        assert_eq!("tcp+udp".parse::<Protocol>().unwrap(), Protocol::Both);
        assert!("sctp".parse::<Protocol>().is_err());
    }

    #[test]
    fn targets_need_one_to_eight_valid_entries() {
        let t = |host: &str, port| Target {
            host: host.into(),
            port,
            priority: 0,
            proxy_protocol: ProxyProtocol::None,
        };
        assert!(check_targets(&[t("10.0.0.1", 80)]).is_ok());
        assert!(check_targets(&[t("db.internal", 5432), t("[::1]", 5432)]).is_ok());
        assert_eq!(check_targets(&[]), Err(RuleError::TargetCount(0)));
        assert_eq!(
            check_targets(&vec![t("a", 1); 9]),
            Err(RuleError::TargetCount(9))
        );
        assert!(check_targets(&[t("-oProxyCommand", 22)]).is_err());
        assert!(check_targets(&[t("host", 0)]).is_err());
    }
}
