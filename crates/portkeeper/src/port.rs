//! Port numbers as a type: 1 to 65535, checked once where they enter the program.
//!
//! Everything past the command line and the import parser takes a [`Port`], so a port 0 or 70000
//! can never reach the database or a socket call. Ranges (`3000-3999`) and lists used by `request
//! --avoid` parse here too, with messages that say which part was wrong.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A TCP/UDP port number, 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub struct Port(u16);

impl Port {
    /// The lowest port, 1.
    pub const MIN: Port = Port(1);
    /// The highest port, 65535.
    pub const MAX: Port = Port(u16::MAX);

    /// A port from a number, if it is 1 to 65535.
    pub fn new(number: i64) -> Option<Port> {
        u16::try_from(number).ok().filter(|n| *n != 0).map(Port)
    }

    /// A port from a constant; a zero is a compile-time error where used in a `const`.
    pub const fn new_const(number: u16) -> Port {
        assert!(number != 0, "port 0 is not a port");
        Port(number)
    }

    /// The number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl From<Port> for u16 {
    fn from(port: Port) -> u16 {
        port.0
    }
}

impl TryFrom<i64> for Port {
    type Error = String;
    fn try_from(number: i64) -> Result<Port, String> {
        Port::new(number).ok_or_else(|| format!("port {number} is out of range (1-65535)"))
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Port {
    type Err = String;
    fn from_str(s: &str) -> Result<Port, String> {
        let s = s.trim();
        let number: i64 = s
            .parse()
            .map_err(|_| format!("'{s}' is not a port number (expected 1-65535)"))?;
        Port::try_from(number)
    }
}

impl rusqlite::ToSql for Port {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(i64::from(self.0).into())
    }
}

/// An inclusive range of ports, written `3000-3999` (or one port, `3000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port of the range.
    pub start: Port,
    /// Last port of the range (inclusive).
    pub end: Port,
}

impl PortRange {
    /// A range, if `start <= end`.
    pub fn new(start: Port, end: Port) -> Result<PortRange, String> {
        if start > end {
            return Err(format!(
                "range start {start} is above its end {end}; write the lower port first"
            ));
        }
        Ok(PortRange { start, end })
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: Port) -> bool {
        self.start <= port && port <= self.end
    }

    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.end.0 - self.start.0) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every port of the range, in order.
    pub fn iter(&self) -> impl Iterator<Item = Port> + use<> {
        (self.start.0..=self.end.0).map(Port)
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<PortRange, String> {
        match s.split_once('-') {
            Some((a, b)) => PortRange::new(a.parse()?, b.parse()?),
            None => {
                let port: Port = s.parse()?;
                Ok(PortRange {
                    start: port,
                    end: port,
                })
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_outside_1_to_65535_are_refused_with_the_range_in_the_message() {
        assert!("0".parse::<Port>().unwrap_err().contains("1-65535"));
        assert!("70000".parse::<Port>().unwrap_err().contains("70000"));
        assert!("-1".parse::<Port>().is_err());
        assert!("http".parse::<Port>().unwrap_err().contains("not a port"));
        assert_eq!("65535".parse::<Port>().unwrap().get(), 65535);
    }

    #[test]
    fn ranges_parse_single_ports_and_refuse_reversed_bounds() {
        let r: PortRange = "3000-3002".parse().unwrap();
        assert_eq!(
            r.iter().map(Port::get).collect::<Vec<_>>(),
            [3000, 3001, 3002]
        );
        assert_eq!("8080".parse::<PortRange>().unwrap().len(), 1);
        assert!(
            "4000-3000"
                .parse::<PortRange>()
                .unwrap_err()
                .contains("above")
        );
    }

    #[test]
    fn json_ports_are_checked_too() {
        assert!(serde_json::from_str::<Port>("0").is_err());
        assert_eq!(serde_json::from_str::<Port>("3000").unwrap().get(), 3000);
    }
}
