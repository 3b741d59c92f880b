//! Forwarding rules: desired state per client. Creating one checks, in one transaction, that the
//! rule is well formed, that its owner holds a grant covering its ports and protocol on that
//! client, that no other rule on the client listens on any of its ports with a competing
//! transport, and that its caps stay within the owner's; then it bumps the client's generation.

use std::net::IpAddr;

use portunus_core::{PortRange, Protocol, Target, check_targets};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::caps::{self, Caps};
use crate::model::{check_label, clients, grants, users};

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// Id.
    pub id: String,
    /// The client that listens.
    pub client_id: String,
    /// Owner (tenant).
    pub owner_id: String,
    /// Label.
    pub name: String,
    /// `tcp`, `udp` or `tcp+udp`.
    pub protocol: Protocol,
    /// Address the client binds (`0.0.0.0`, `::`, or a specific one).
    pub listen_addr: String,
    /// Listen ports.
    pub listen: PortRange,
    /// 1–8 targets, in priority order.
    pub targets: Vec<Target>,
    /// Per-rule caps.
    pub caps: Caps,
    /// Whether the client should run it.
    pub enabled: bool,
    /// `pending`, `active` or `failed`, as the client last reported.
    pub status: String,
    /// Why it failed, if it did.
    pub status_reason: Option<String>,
    /// Created.
    #[serde(with = "ids::serde_ms")]
    pub created_at: i64,
    /// Last changed.
    #[serde(with = "ids::serde_ms")]
    pub updated_at: i64,
}

/// What `POST /v1/rules` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// The client that listens.
    pub client_id: String,
    /// Label.
    #[serde(default)]
    pub name: String,
    /// `tcp` (default), `udp` or `tcp+udp`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Address to bind (default `0.0.0.0`).
    #[serde(default)]
    pub listen_addr: Option<String>,
    /// `8080` or `8000-8010`.
    pub listen: String,
    /// Where traffic goes.
    pub targets: Vec<Target>,
    /// Optional caps.
    #[serde(default)]
    pub caps: caps::CapsInput,
    /// Owner (id or user name); superadmins only, default the caller.
    #[serde(default)]
    pub owner: Option<String>,
}

fn invalid(e: portunus_core::RuleError) -> Error {
    Error::bad_request("invalid_rule", e.to_string())
}

/// Creates a rule for the caller (or, for a superadmin, for `owner`).
pub fn create(tx: &Transaction<'_>, caller: &Principal, new: &NewRule) -> Result<Rule> {
    check_label("name", &new.name)?;
    let protocol: Protocol = new
        .protocol
        .as_deref()
        .unwrap_or("tcp")
        .parse()
        .map_err(invalid)?;
    let listen: PortRange = new.listen.parse().map_err(invalid)?;
    let listen_addr = new.listen_addr.as_deref().unwrap_or("0.0.0.0").trim();
    if listen_addr.parse::<IpAddr>().is_err() {
        return Err(Error::bad_request(
            "invalid_rule",
            format!("listen_addr '{listen_addr}' is not an IP address (e.g. 0.0.0.0 or ::)"),
        ));
    }
    check_targets(&new.targets).map_err(invalid)?;
    for t in &new.targets {
        if u32::from(t.port) + listen.len() - 1 > 65_535 {
            return Err(Error::bad_request(
                "invalid_rule",
                format!(
                    "target {}:{} cannot take {} ports: the range would pass 65535",
                    t.host,
                    t.port,
                    listen.len()
                ),
            ));
        }
    }
    let rule_caps = Caps::from(new.caps);
    caps::check(&rule_caps)?;

    let owner = match &new.owner {
        Some(key) if !caller.is_superadmin() => {
            let other = users::resolve(tx, key)?;
            if other.id != caller.user_id {
                return Err(Error::forbidden(
                    "only a superadmin may push rules owned by another user",
                ));
            }
            other
        }
        Some(key) => users::resolve(tx, key)?,
        None => users::get(tx, &caller.user_id)?
            .ok_or_else(|| Error::not_found(format!("user {}", caller.user_id)))?,
    };
    let client = clients::get(tx, &new.client_id)?
        .ok_or_else(|| Error::not_found(format!("client {}", new.client_id)))?;
    if !clients::visible_to(tx, caller, &client.id)? {
        return Err(Error::forbidden("you hold no grant on this client"));
    }
    if client.revoked_at.is_some() {
        return Err(Error::conflict(
            "client_revoked",
            format!("client {} is revoked", client.id),
        ));
    }
    if owner.role != crate::auth::Role::Superadmin {
        let held = grants::of(tx, &owner.id, &client.id)?;
        if !grants::allows(&held, listen.start(), listen.end(), protocol) {
            return Err(Error::new(
                crate::error::Kind::Forbidden,
                "grant_required",
                format!(
                    "{} holds no grant for {} {} on client {}; ask a superadmin for one",
                    owner.username, protocol, listen, client.id
                ),
            ));
        }
    }
    if let Some(clash) = overlapping(tx, &client.id, listen, protocol)? {
        return Err(Error::conflict(
            "port_conflict",
            format!(
                "ports {listen}/{protocol} overlap rule {} ({}/{}) on this client",
                clash.0, clash.1, clash.2
            ),
        ));
    }
    caps::check_within(&rule_caps, &caps::of_owner(tx, &owner.id)?)?;

    let now = ids::now_ms();
    let id = ids::new_id("rul");
    tx.execute(
        "INSERT INTO rules (id, client_id, owner_id, name, protocol, listen_addr, listen_start, listen_end,
                            bandwidth_bps, new_conn_per_sec, max_connections, enabled, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?12, ?12)",
        params![
            id,
            client.id,
            owner.id,
            new.name.trim(),
            protocol.as_str(),
            listen_addr,
            listen.start(),
            listen.end(),
            rule_caps.bandwidth_bps.map(|b| b as i64),
            rule_caps.new_conn_per_sec,
            rule_caps.max_connections,
            now
        ],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO rule_targets (rule_id, position, host, port, priority, proxy_protocol)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (position, t) in new.targets.iter().enumerate() {
        let proxy = match t.proxy_protocol {
            portunus_core::ProxyProtocol::None => "none",
            portunus_core::ProxyProtocol::V1 => "v1",
            portunus_core::ProxyProtocol::V2 => "v2",
        };
        insert.execute(params![
            id,
            position as i64,
            t.host.trim(),
            t.port,
            t.priority,
            proxy
        ])?;
    }
    clients::bump_generation(tx, &client.id)?;
    get(tx, &id)?.ok_or_else(|| Error::not_found(format!("rule {id}")))
}

/// The first rule on `client_id` whose listen ports overlap `listen` with a competing transport.
fn overlapping(
    conn: &Connection,
    client_id: &str,
    listen: PortRange,
    protocol: Protocol,
) -> Result<Option<(String, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, listen_start, listen_end, protocol FROM rules
          WHERE client_id = ?1 AND listen_start <= ?3 AND listen_end >= ?2",
    )?;
    let rows = stmt
        .query_map(params![client_id, listen.start(), listen.end()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (id, start, end, other) in rows {
        let other_protocol: Protocol = other.parse().unwrap_or(Protocol::Both);
        if other_protocol.shares_transport(protocol) {
            let range = if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            };
            return Ok(Some((id, range, other)));
        }
    }
    Ok(None)
}

const SELECT: &str =
    "SELECT id, client_id, owner_id, name, protocol, listen_addr, listen_start, listen_end,
       bandwidth_bps, new_conn_per_sec, max_connections, enabled, status, status_reason,
       created_at, updated_at FROM rules";

fn rule(r: &rusqlite::Row<'_>) -> rusqlite::Result<Rule> {
    let protocol: String = r.get(4)?;
    let (start, end): (i64, i64) = (r.get(6)?, r.get(7)?);
    let conversion = |e: portunus_core::RuleError| {
        rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Integer, Box::new(e))
    };
    Ok(Rule {
        id: r.get(0)?,
        client_id: r.get(1)?,
        owner_id: r.get(2)?,
        name: r.get(3)?,
        protocol: protocol.parse().map_err(conversion)?,
        listen_addr: r.get(5)?,
        listen: PortRange::new(start, end).map_err(conversion)?,
        targets: Vec::new(),
        caps: Caps {
            bandwidth_bps: r.get::<_, Option<i64>>(8)?.map(|v| v.max(0) as u64),
            new_conn_per_sec: r.get(9)?,
            max_connections: r.get(10)?,
        },
        enabled: r.get(11)?,
        status: r.get(12)?,
        status_reason: r.get(13)?,
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
    })
}

fn with_targets(conn: &Connection, mut rule: Rule) -> Result<Rule> {
    let mut stmt = conn.prepare_cached(
        "SELECT host, port, priority, proxy_protocol FROM rule_targets WHERE rule_id = ?1 ORDER BY position",
    )?;
    rule.targets = stmt
        .query_map([&rule.id], |r| {
            let proxy: String = r.get(3)?;
            Ok(Target {
                host: r.get(0)?,
                port: r.get(1)?,
                priority: r.get(2)?,
                proxy_protocol: proxy.parse().unwrap_or_default(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rule)
}

/// A rule by id, without checks.
pub fn get(conn: &Connection, id: &str) -> Result<Option<Rule>> {
    match conn
        .query_row(&format!("{SELECT} WHERE id = ?1"), [id], rule)
        .optional()?
    {
        Some(found) => Ok(Some(with_targets(conn, found)?)),
        None => Ok(None),
    }
}

/// A rule the caller owns (or any, for a superadmin): 404 when missing, 403 when not theirs.
pub fn get_visible(conn: &Connection, caller: &Principal, id: &str) -> Result<Rule> {
    let found = get(conn, id)?.ok_or_else(|| Error::not_found(format!("rule {id}")))?;
    if !caller.may_touch(&found.owner_id) {
        return Err(Error::forbidden("this rule belongs to another user"));
    }
    Ok(found)
}

/// The rules the caller may see, optionally on one client.
pub fn list(conn: &Connection, caller: &Principal, client_id: Option<&str>) -> Result<Vec<Rule>> {
    if let Some(client) = client_id {
        if clients::get(conn, client)?.is_none() {
            return Err(Error::not_found(format!("client {client}")));
        }
        if !clients::visible_to(conn, caller, client)? {
            return Err(Error::forbidden("you hold no grant on this client"));
        }
    }
    let mut stmt = conn.prepare(&format!(
        "{SELECT} WHERE (?1 OR owner_id = ?2) AND (?3 IS NULL OR client_id = ?3)
         ORDER BY client_id, listen_start, id"
    ))?;
    let rows = stmt
        .query_map(
            params![caller.is_superadmin(), caller.user_id, client_id],
            rule,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(|r| with_targets(conn, r)).collect()
}

/// Deletes a rule the caller owns (or any, for a superadmin).
pub fn delete(tx: &Transaction<'_>, caller: &Principal, id: &str) -> Result<Rule> {
    let found = get_visible(tx, caller, id)?;
    tx.execute("DELETE FROM rules WHERE id = ?1", [id])?;
    clients::bump_generation(tx, &found.client_id)?;
    Ok(found)
}

/// A client's enabled rules in listen-port order: what it should run.
pub fn enabled_on(conn: &Connection, client_id: &str) -> Result<Vec<Rule>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE client_id = ?1 AND enabled = 1 ORDER BY listen_start, id"
    ))?;
    let rows = stmt
        .query_map([client_id], rule)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(|r| with_targets(conn, r)).collect()
}

impl Rule {
    /// The rule as the control protocol sends it, with its owner's caps.
    pub fn into_spec(self, owner_caps: Caps) -> portunus_core::wire::RuleSpec {
        portunus_core::wire::RuleSpec {
            id: self.id,
            owner_id: self.owner_id,
            protocol: self.protocol,
            listen_addr: self.listen_addr,
            listen: self.listen,
            targets: self.targets,
            caps: self.caps,
            owner_caps,
        }
    }
}

/// The clients on which `owner_id` has rules.
pub fn clients_of_owner(conn: &Connection, owner_id: &str) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT DISTINCT client_id FROM rules WHERE owner_id = ?1")?;
    let rows = stmt
        .query_map([owner_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(rows)
}

/// How many rules exist (for metrics).
pub fn count(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT count(*) FROM rules", [], |r| r.get(0))?)
}
