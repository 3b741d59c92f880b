//! The `servers` table: other machines repositories are replicated to; `is_neighbor` marks peer
//! cpm servers. Part 2 adds pinging, syncing and discovery; here they are registered and listed.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::error::{Error, Result, unique};
use crate::names::{self, Kind};
use store::timestamp;

/// A server, as the seed's model names its JSON fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Server {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Hostname or IP address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// A peer cpm server.
    pub is_neighbor: bool,
    /// The key used to reach it; omitted when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_key_id: Option<i64>,
    /// Creation time.
    #[serde(serialize_with = "timestamp::rfc3339::serialize")]
    pub created_at: String,
}

/// A server to register.
#[derive(Debug, Clone)]
pub struct NewServer {
    /// Name.
    pub name: String,
    /// Hostname or IP address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// Peer cpm server.
    pub is_neighbor: bool,
    /// Key id.
    pub ssh_key_id: Option<i64>,
}

const SELECT: &str =
    "SELECT id, name, host, port, is_neighbor, ssh_key_id, created_at FROM servers";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Server> {
    Ok(Server {
        id: r.get(0)?,
        name: r.get(1)?,
        host: r.get(2)?,
        port: u16::try_from(r.get::<_, i64>(3)?).unwrap_or(22),
        is_neighbor: r.get(4)?,
        ssh_key_id: r.get(5)?,
        created_at: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
    })
}

/// Checks a host name or address: no spaces, no option-like leading dash, no `user@`.
pub fn check_host(host: &str) -> Result<String> {
    let host = host.trim();
    let ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if ok {
        Ok(host.to_string())
    } else {
        Err(Error::Invalid(format!(
            "'{host}' is not a host name or IP address"
        )))
    }
}

/// Registers a server.
pub fn create(conn: &Connection, s: &NewServer) -> Result<Server> {
    let name = names::check(Kind::Label, &s.name)?;
    let host = check_host(&s.host)?;
    if s.port == 0 {
        return Err(Error::Invalid("port 0 is not a port".into()));
    }
    conn.prepare_cached(
        "INSERT INTO servers (name, host, port, is_neighbor, ssh_key_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        name,
        host,
        s.port,
        s.is_neighbor,
        s.ssh_key_id,
        timestamp::now()
    ])
    .map_err(|e| unique(e, || format!("a server named '{name}' exists")))?;
    get_by_name(conn, &name)
}

/// The server with this name.
pub fn get_by_name(conn: &Connection, name: &str) -> Result<Server> {
    conn.prepare_cached(&format!("{SELECT} WHERE name = ?1"))?
        .query_row([name], from_row)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no server '{name}'; see `cpm server list`")))
}

/// Servers, all or only neighbors, by name.
pub fn list(conn: &Connection, neighbors_only: bool) -> Result<Vec<Server>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE (?1 = 0 OR is_neighbor = 1) ORDER BY name"
    ))?;
    let rows = stmt.query_map([neighbors_only], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Sets or clears the neighbor flag.
pub fn set_neighbor(conn: &Connection, id: i64, neighbor: bool) -> Result<()> {
    conn.prepare_cached("UPDATE servers SET is_neighbor = ?2 WHERE id = ?1")?
        .execute(params![id, neighbor])?;
    Ok(())
}

/// Removes a server (and its replication status).
pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM servers WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}
