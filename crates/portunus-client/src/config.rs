//! The `portunus-standalone` configuration file: rules in TOML, checked like the server checks.
//!
//! Standalone mode has no control plane to refuse a bad rule, so the file is validated here with
//! the same shared checks (`portunus_core::rule`) plus the ones the server does against its
//! database (duplicate ids, overlapping listen ports on a shared transport). A typo should not
//! surface as one error per reload, so every problem is collected and reported at once, each
//! named by rule number and id.
//!
//! ```toml
//! [[rule]]
//! id = "web"               # optional; default rule-<number>, counting from 1
//! protocol = "tcp"         # tcp (default) | udp | tcp+udp
//! listen = "8080"          # or "8000-8010", or 8080
//! listen_addr = "0.0.0.0"  # optional (default 0.0.0.0)
//! targets = ["10.0.0.5:80", { host = "b.internal", port = 80, priority = 1, proxy_protocol = "v2" }]
//! bandwidth_bps = 1000000  # optional caps: bandwidth_bps, new_conn_per_sec, max_connections
//! ```

use std::collections::HashMap;
use std::fmt::Display;
use std::net::IpAddr;
use std::path::Path;

use portunus_core::rule::{PortRange, Protocol, ProxyProtocol, Target, check_targets};
use portunus_core::wire::{Caps, RuleSpec};
use toml::{Table, Value};

/// The owner every standalone rule gets (per-owner accounting has one owner here).
pub const STANDALONE_OWNER: &str = "standalone";
/// The listen address when none is given.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0";

/// The keys a `[[rule]]` table may have.
const RULE_KEYS: [&str; 8] = [
    "id",
    "protocol",
    "listen",
    "listen_addr",
    "targets",
    "bandwidth_bps",
    "new_conn_per_sec",
    "max_connections",
];
/// The keys a target table may have.
const TARGET_KEYS: [&str; 4] = ["host", "port", "priority", "proxy_protocol"];

/// Reads and checks a configuration file; every error found, or the rules.
pub fn load(path: &Path) -> Result<Vec<RuleSpec>, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    parse(&text)
}

/// Checks a configuration; every error found, or the rules.
pub fn parse(text: &str) -> Result<Vec<RuleSpec>, Vec<String>> {
    let table: Table = toml::from_str(text).map_err(|e| vec![e.to_string().trim().to_string()])?;
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    // Every rule's id, valid rule or not, so a duplicate is reported alongside other errors.
    let mut ids: Vec<(usize, String)> = Vec::new();
    for (key, value) in &table {
        if key != "rule" {
            errors.push(format!(
                "unknown top-level key '{key}' (rules are [[rule]] tables)"
            ));
            continue;
        }
        let Value::Array(items) = value else {
            errors.push("'rule' must be written as [[rule]] tables".into());
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let number = i + 1;
            let Value::Table(t) = item else {
                errors.push(format!("rule {number}: must be a [[rule]] table"));
                continue;
            };
            match t.get("id") {
                Some(Value::String(id)) => ids.push((number, id.clone())),
                Some(_) => {}
                None => ids.push((number, format!("rule-{number}"))),
            }
            match rule(number, t) {
                Ok(spec) => rules.push((number, spec)),
                Err(mut e) => errors.append(&mut e),
            }
        }
    }
    check_ids(&ids, &mut errors);
    check_overlaps(&rules, &mut errors);
    if errors.is_empty() {
        Ok(rules.into_iter().map(|(_, r)| r).collect())
    } else {
        Err(errors)
    }
}

/// How a rule is named in errors: `rule 2 (web)`.
fn label(number: usize, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("rule {number} ({id})"),
        None => format!("rule {number}"),
    }
}

fn type_name(v: &Value) -> &'static str {
    v.type_str()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// One rule, or its errors.
fn rule(number: usize, t: &Table) -> Result<RuleSpec, Vec<String>> {
    let id_value = t.get("id");
    let explicit_id = id_value.and_then(Value::as_str);
    let who = label(number, explicit_id);
    let mut errors = Vec::new();
    let mut err = |field: &str, msg: &dyn Display| errors.push(format!("{who}: {field}: {msg}"));

    for key in t.keys() {
        if !RULE_KEYS.contains(&key.as_str()) {
            err(
                key,
                &format!("unknown key (expected one of {})", RULE_KEYS.join(", ")),
            );
        }
    }
    let id = match id_value {
        None => format!("rule-{number}"),
        Some(Value::String(id)) if valid_id(id) => id.clone(),
        Some(Value::String(_)) => {
            err("id", &"use 1 to 64 letters, digits, '-', '_' or '.'");
            String::new()
        }
        Some(other) => {
            err(
                "id",
                &format!("expected a string, not {}", type_name(other)),
            );
            String::new()
        }
    };
    let protocol = match t.get("protocol") {
        None => Some(Protocol::Tcp),
        Some(Value::String(p)) => p.parse::<Protocol>().map_err(|e| err("protocol", &e)).ok(),
        Some(other) => {
            err(
                "protocol",
                &format!("expected a string, not {}", type_name(other)),
            );
            None
        }
    };
    let listen = match t.get("listen") {
        None => {
            err(
                "listen",
                &"missing (e.g. listen = \"8080\" or \"8000-8010\")",
            );
            None
        }
        Some(Value::String(s)) => s.parse::<PortRange>().map_err(|e| err("listen", &e)).ok(),
        Some(Value::Integer(p)) => PortRange::new(*p, *p).map_err(|e| err("listen", &e)).ok(),
        Some(other) => {
            err(
                "listen",
                &format!("expected a string or number, not {}", type_name(other)),
            );
            None
        }
    };
    let listen_addr = match t.get("listen_addr") {
        None => Some(DEFAULT_LISTEN_ADDR.to_string()),
        Some(Value::String(a)) if a.trim().parse::<IpAddr>().is_ok() => Some(a.trim().to_string()),
        Some(Value::String(a)) => {
            err(
                "listen_addr",
                &format!("'{a}' is not an IP address (e.g. 0.0.0.0 or ::)"),
            );
            None
        }
        Some(other) => {
            err(
                "listen_addr",
                &format!("expected a string, not {}", type_name(other)),
            );
            None
        }
    };
    let targets = match t.get("targets") {
        None => {
            err("targets", &"missing (e.g. targets = [\"10.0.0.5:80\"])");
            None
        }
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (j, item) in items.iter().enumerate() {
                match target(item) {
                    Ok(t) => out.push(t),
                    Err(e) => {
                        ok = false;
                        err(&format!("targets[{}]", j + 1), &e);
                    }
                }
            }
            if ok {
                match check_targets(&out) {
                    Ok(()) => Some(out),
                    Err(e) => {
                        err("targets", &e);
                        None
                    }
                }
            } else {
                None
            }
        }
        Some(other) => {
            err(
                "targets",
                &format!("expected an array, not {}", type_name(other)),
            );
            None
        }
    };
    if let (Some(listen), Some(targets)) = (listen, &targets) {
        for t in targets {
            if u32::from(t.port) + listen.len() - 1 > 65_535 {
                err(
                    "targets",
                    &format!(
                        "{}:{} cannot take {} ports: the range would pass 65535",
                        t.host,
                        t.port,
                        listen.len()
                    ),
                );
            }
        }
    }
    let mut cap = |key: &str, max: u64| -> Option<u64> {
        match t.get(key) {
            None => None,
            Some(Value::Integer(n)) if *n >= 1 && u64::try_from(*n).is_ok_and(|n| n <= max) => {
                u64::try_from(*n).ok()
            }
            Some(Value::Integer(_)) => {
                err(
                    key,
                    &format!("must be between 1 and {max} (leave it out for no cap)"),
                );
                None
            }
            Some(other) => {
                err(
                    key,
                    &format!("expected a whole number, not {}", type_name(other)),
                );
                None
            }
        }
    };
    let caps = Caps {
        bandwidth_bps: cap("bandwidth_bps", i64::MAX as u64),
        new_conn_per_sec: cap("new_conn_per_sec", u64::from(u32::MAX))
            .and_then(|n| u32::try_from(n).ok()),
        max_connections: cap("max_connections", u64::from(u32::MAX))
            .and_then(|n| u32::try_from(n).ok()),
    };
    match (protocol, listen, listen_addr, targets) {
        (Some(protocol), Some(listen), Some(listen_addr), Some(targets)) if errors.is_empty() => {
            Ok(RuleSpec {
                id,
                owner_id: STANDALONE_OWNER.to_string(),
                protocol,
                listen_addr,
                listen,
                targets,
                caps,
                owner_caps: Caps::default(),
            })
        }
        _ => Err(errors),
    }
}

/// Splits `host:port` (IPv6 in brackets).
fn host_port(text: &str) -> Result<(String, i64), String> {
    let bad = || format!("'{text}' is not host:port (an IPv6 host in brackets: [::1]:80)");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':').ok_or_else(bad)?)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        if host.contains(':') {
            return Err(bad());
        }
        (host, port)
    };
    let port = port.trim().parse::<i64>().map_err(|_| bad())?;
    Ok((host.trim().to_string(), port))
}

fn port_of(n: i64) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {n} is out of range (1-65535)"))
}

/// One target: `"host:port"` or `{ host, port, priority, proxy_protocol }`.
fn target(v: &Value) -> Result<Target, String> {
    let target = match v {
        Value::String(s) => {
            let (host, port) = host_port(s)?;
            Target {
                host,
                port: port_of(port)?,
                priority: 0,
                proxy_protocol: ProxyProtocol::None,
            }
        }
        Value::Table(t) => {
            if let Some(key) = t.keys().find(|k| !TARGET_KEYS.contains(&k.as_str())) {
                return Err(format!(
                    "unknown key '{key}' (expected one of {})",
                    TARGET_KEYS.join(", ")
                ));
            }
            let host = match t.get("host") {
                Some(Value::String(h)) => h.trim().to_string(),
                Some(other) => {
                    return Err(format!("host: expected a string, not {}", type_name(other)));
                }
                None => return Err("host is missing".into()),
            };
            let port = match t.get("port") {
                Some(Value::Integer(p)) => port_of(*p)?,
                Some(other) => {
                    return Err(format!("port: expected a number, not {}", type_name(other)));
                }
                None => return Err("port is missing".into()),
            };
            let priority = match t.get("priority") {
                None => 0,
                Some(Value::Integer(p)) => {
                    u8::try_from(*p).map_err(|_| format!("priority {p} is out of range (0-255)"))?
                }
                Some(other) => {
                    return Err(format!(
                        "priority: expected a number, not {}",
                        type_name(other)
                    ));
                }
            };
            let proxy_protocol = match t.get("proxy_protocol") {
                None => ProxyProtocol::None,
                Some(Value::String(p)) => p.parse().map_err(|e| format!("{e}"))?,
                Some(other) => {
                    return Err(format!(
                        "proxy_protocol: expected a string, not {}",
                        type_name(other)
                    ));
                }
            };
            Target {
                host,
                port,
                priority,
                proxy_protocol,
            }
        }
        other => {
            return Err(format!(
                "expected \"host:port\" or a table, not {}",
                type_name(other)
            ));
        }
    };
    target.check().map_err(|e| e.to_string())?;
    Ok(target)
}

/// Whether two listen addresses can compete for a port: the same address, or a wildcard that
/// covers the other (`::` is dual-stack and covers IPv4 too).
fn addresses_collide(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (a.parse::<IpAddr>(), b.parse::<IpAddr>()) else {
        return true;
    };
    let covers = |w: IpAddr, o: IpAddr| w.is_unspecified() && (w.is_ipv6() || o.is_ipv4());
    a == b || covers(a, b) || covers(b, a)
}

/// Reports ids used by more than one rule.
fn check_ids(ids: &[(usize, String)], errors: &mut Vec<String>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (number, id) in ids {
        match seen.get(id.as_str()) {
            Some(first) => errors.push(format!(
                "{}: id: '{id}' is also the id of rule {first}; ids must be unique",
                label(*number, Some(id))
            )),
            None => {
                seen.insert(id, *number);
            }
        }
    }
}

/// Reports rules whose listen ports overlap on a shared transport and address.
fn check_overlaps(rules: &[(usize, RuleSpec)], errors: &mut Vec<String>) {
    for (i, (na, a)) in rules.iter().enumerate() {
        for (nb, b) in rules.iter().skip(i + 1) {
            if a.protocol.shares_transport(b.protocol)
                && a.listen.overlaps(b.listen)
                && addresses_collide(&a.listen_addr, &b.listen_addr)
            {
                errors.push(format!(
                    "{}: listen: ports {}/{} on {} overlap {} ({}/{} on {})",
                    label(*nb, Some(&b.id)),
                    b.listen,
                    b.protocol,
                    b.listen_addr,
                    label(*na, Some(&a.id)),
                    a.listen,
                    a.protocol,
                    a.listen_addr
                ));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let rules = parse(
            r#"
            [[rule]]
            id = "web"
            protocol = "tcp"
            listen = "8080"
            listen_addr = "0.0.0.0"
            targets = ["10.0.0.5:80", { host = "b.internal", port = 80, priority = 1, proxy_protocol = "v2" }]
            bandwidth_bps = 1000000

            [[rule]]
            protocol = "tcp+udp"
            listen = 5300
            targets = ["[::1]:53"]
            max_connections = 10
            new_conn_per_sec = 5
            "#,
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        let web = &rules[0];
        assert_eq!(web.id, "web");
        assert_eq!(web.owner_id, STANDALONE_OWNER);
        assert_eq!(web.listen, PortRange::new(8080, 8080).unwrap());
        assert_eq!(web.targets[1].host, "b.internal");
        assert_eq!(web.targets[1].priority, 1);
        assert_eq!(web.targets[1].proxy_protocol, ProxyProtocol::V2);
        assert_eq!(web.caps.bandwidth_bps, Some(1_000_000));
        let dns = &rules[1];
        assert_eq!(dns.id, "rule-2");
        assert_eq!(dns.protocol, Protocol::Both);
        assert_eq!(dns.listen_addr, DEFAULT_LISTEN_ADDR);
        assert_eq!(dns.targets[0].host, "::1");
        assert_eq!(dns.caps.max_connections, Some(10));
        assert_eq!(dns.caps.new_conn_per_sec, Some(5));
        assert_eq!(parse("").unwrap(), []);
    }

    #[test]
    fn every_error_is_reported_with_its_rule() {
        let errors = parse(
            r#"
            [[rule]]
            id = "a"
            listen = "9000-8000"
            protocol = "sctp"
            targets = []
            colour = "red"

            [[rule]]
            id = "b"
            listen = "70000"
            listen_addr = "localhost"
            targets = ["nohostport", { host = "x", port = 0 }, { host = "-bad", port = 1 }]
            bandwidth_bps = 0

            [[rule]]
            listen = "8000-9024"
            targets = ["h:1"]
            "#,
        )
        .unwrap_err();
        let all = errors.join("\n");
        for needle in [
            "rule 1 (a): listen: port range 9000-8000 is reversed",
            "rule 1 (a): protocol: unknown protocol 'sctp'",
            "rule 1 (a): targets: a rule needs 1 to 8 targets, not 0",
            "rule 1 (a): colour: unknown key",
            "rule 2 (b): listen: port 70000 is out of range",
            "rule 2 (b): listen_addr: 'localhost' is not an IP address",
            "rule 2 (b): targets[1]: 'nohostport' is not host:port",
            "rule 2 (b): targets[2]: port 0 is out of range",
            "rule 2 (b): targets[3]: '-bad' is not a host name",
            "rule 2 (b): bandwidth_bps: must be between 1",
            "rule 3: listen: port range 8000-9024 has 1025 ports",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
        assert_eq!(errors.len(), 11, "{all}");
    }

    #[test]
    fn duplicate_ids_and_overlaps_are_refused() {
        let errors = parse(
            r#"
            [[rule]]
            id = "x"
            listen = "8000-8010"
            targets = ["h:1"]
            [[rule]]
            id = "x"
            listen = "8010"
            protocol = "tcp+udp"
            targets = ["h:1"]
            [[rule]]
            listen = "8005"
            protocol = "udp"
            targets = ["h:1"]
            [[rule]]
            listen = "8005"
            listen_addr = "127.0.0.2"
            protocol = "udp"
            targets = ["h:1"]
            [[rule]]
            listen = "65535"
            targets = ["h:1"]
            "#,
        )
        .unwrap_err();
        let all = errors.join("\n");
        assert!(
            all.contains("rule 2 (x): id: 'x' is also the id of rule 1"),
            "{all}"
        );
        assert!(
            all.contains("rule 2 (x): listen: ports 8010/tcp+udp on 0.0.0.0 overlap rule 1 (x)"),
            "{all}"
        );
        // udp 8005 on 0.0.0.0 does not compete with tcp 8000-8010, but with 127.0.0.2 it does.
        assert!(
            all.contains("rule 4 (rule-4): listen: ports 8005/udp on 127.0.0.2 overlap rule 3"),
            "{all}"
        );
        assert_eq!(errors.len(), 3, "{all}");
    }

    #[test]
    fn addresses_collide_only_when_they_can_share_a_socket() {
        assert!(addresses_collide("0.0.0.0", "127.0.0.1"));
        assert!(addresses_collide("::", "127.0.0.1"));
        assert!(addresses_collide("::1", "::"));
        assert!(!addresses_collide("0.0.0.0", "::1"));
        assert!(!addresses_collide("127.0.0.1", "127.0.0.2"));
    }

    #[test]
    fn syntax_errors_and_stray_keys_are_reported() {
        let errors = parse("[[rule]\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("line 1"), "{errors:?}");
        let errors = parse("rules = 1\nrule = 2\n").unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        let errors =
            parse("[[rule]]\nlisten = \"1\"\ntargets = [{ host = \"h\", port = 1, weight = 2 }]\n")
                .unwrap_err();
        assert!(errors[0].contains("unknown key 'weight'"), "{errors:?}");
    }
}
