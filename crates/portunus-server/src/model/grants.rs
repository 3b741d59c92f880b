//! Grants: which listen ports, with which protocols, a user may open on a client. Every rule
//! push is checked against them, and revoking one removes the rules it no longer allows.

use portunus_core::Protocol;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::ids;

/// A grant as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    /// Id.
    pub id: String,
    /// Grantee.
    pub user_id: String,
    /// On which client.
    pub client_id: String,
    /// First port.
    pub port_start: u16,
    /// Last port (inclusive).
    pub port_end: u16,
    /// `tcp`, `udp` or `tcp+udp`.
    pub protocols: Protocol,
    /// Created.
    #[serde(with = "ids::serde_ms")]
    pub created_at: i64,
}

/// What `POST /v1/grants` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// Grantee (id or user name).
    pub user: String,
    /// Client id.
    pub client_id: String,
    /// `8000-8100` or `8080`.
    pub ports: String,
    /// `tcp`, `udp` or `tcp+udp` (default).
    #[serde(default)]
    pub protocols: Option<String>,
}

/// Parses a grant's port span, which (unlike a rule's) may be wider than 1,024 ports.
pub fn parse_span(text: &str) -> Result<(u16, u16)> {
    let bad = || {
        Error::bad_request(
            "invalid_ports",
            format!("'{text}' is not a port or port range within 1-65535 (e.g. 8080 or 8000-8100)"),
        )
    };
    let num = |t: &str| {
        t.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(bad)
    };
    let (start, end) = match text.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let p = num(text)?;
            (p, p)
        }
    };
    if start > end {
        return Err(Error::bad_request(
            "invalid_ports",
            format!("port range {start}-{end} is reversed; write the lower port first"),
        ));
    }
    Ok((start, end))
}

fn grant(r: &rusqlite::Row<'_>) -> rusqlite::Result<Grant> {
    let protocols: String = r.get(5)?;
    Ok(Grant {
        id: r.get(0)?,
        user_id: r.get(1)?,
        client_id: r.get(2)?,
        port_start: r.get(3)?,
        port_end: r.get(4)?,
        protocols: protocols.parse().unwrap_or(Protocol::Tcp),
        created_at: r.get(6)?,
    })
}

const COLUMNS: &str =
    "id, user_id, client_id, port_start, port_end, protocols, created_at FROM grants";

/// Creates a grant (superadmin only; checked by the caller).
pub fn create(tx: &Transaction<'_>, new: &NewGrant) -> Result<Grant> {
    let user = crate::model::users::resolve(tx, &new.user)?;
    let client = crate::model::clients::get(tx, &new.client_id)?
        .ok_or_else(|| Error::not_found(format!("client {}", new.client_id)))?;
    if client.revoked_at.is_some() {
        return Err(Error::conflict(
            "client_revoked",
            format!("client {} is revoked", client.id),
        ));
    }
    let (port_start, port_end) = parse_span(&new.ports)?;
    let protocols: Protocol = new
        .protocols
        .as_deref()
        .unwrap_or("tcp+udp")
        .parse()
        .map_err(|e: portunus_core::RuleError| {
            Error::bad_request("invalid_protocol", e.to_string())
        })?;
    let created = Grant {
        id: ids::new_id("grt"),
        user_id: user.id,
        client_id: client.id,
        port_start,
        port_end,
        protocols,
        created_at: ids::now_ms(),
    };
    tx.execute(
        "INSERT INTO grants (id, user_id, client_id, port_start, port_end, protocols, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            created.id,
            created.user_id,
            created.client_id,
            created.port_start,
            created.port_end,
            created.protocols.as_str(),
            created.created_at
        ],
    )?;
    Ok(created)
}

/// Grants the caller may see (their own; a superadmin's filter is optional).
pub fn list(
    conn: &Connection,
    caller: &Principal,
    user_id: Option<&str>,
    client_id: Option<&str>,
) -> Result<Vec<Grant>> {
    let user_filter = if caller.is_superadmin() {
        user_id.map(str::to_string)
    } else {
        if user_id.is_some_and(|u| u != caller.user_id && u != caller.username) {
            return Err(Error::forbidden("you may only list your own grants"));
        }
        Some(caller.user_id.clone())
    };
    let user_filter = match user_filter {
        Some(key) => Some(crate::model::users::resolve(conn, &key)?.id),
        None => None,
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR client_id = ?2)
         ORDER BY client_id, port_start, id"
    ))?;
    let rows = stmt
        .query_map(params![user_filter, client_id], grant)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The grants of one user on one client.
pub fn of(conn: &Connection, user_id: &str, client_id: &str) -> Result<Vec<Grant>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} WHERE user_id = ?1 AND client_id = ?2"
    ))?;
    let rows = stmt
        .query_map(params![user_id, client_id], grant)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Whether one of `grants` allows listening on `start..=end` with `protocol`.
pub fn allows(grants: &[Grant], start: u16, end: u16, protocol: Protocol) -> bool {
    grants
        .iter()
        .any(|g| g.port_start <= start && end <= g.port_end && protocol.within(g.protocols))
}

/// Revokes a grant and deletes the grantee's rules on that client that no remaining grant
/// allows. Returns the grant and the ids of the removed rules.
pub fn revoke(tx: &Transaction<'_>, id: &str) -> Result<(Grant, Vec<String>)> {
    let found = tx
        .query_row(&format!("SELECT {COLUMNS} WHERE id = ?1"), [id], grant)
        .optional()?
        .ok_or_else(|| Error::not_found(format!("grant {id}")))?;
    tx.execute("DELETE FROM grants WHERE id = ?1", [id])?;
    let remaining = of(tx, &found.user_id, &found.client_id)?;
    let mut stmt = tx.prepare(
        "SELECT id, listen_start, listen_end, protocol FROM rules WHERE owner_id = ?1 AND client_id = ?2",
    )?;
    let rules = stmt
        .query_map(params![found.user_id, found.client_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u16>(1)?,
                r.get::<_, u16>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut removed = Vec::new();
    for (rule_id, start, end, protocol) in rules {
        let protocol: Protocol = protocol.parse().unwrap_or(Protocol::Both);
        if !allows(&remaining, start, end, protocol) {
            tx.execute("DELETE FROM rules WHERE id = ?1", [&rule_id])?;
            removed.push(rule_id);
        }
    }
    if !removed.is_empty() {
        crate::model::clients::bump_generation(tx, &found.client_id)?;
    }
    Ok((found, removed))
}
