//! Per-owner caps (`rate_limit_owner`): bandwidth, new connections per second and concurrent
//! connections across all of a user's rules. A rule's own caps may not exceed its owner's.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::{Error, Result};
use crate::ids;

/// A cap envelope; `None` means no cap of that kind. The same type travels to clients.
pub use portunus_core::wire::Caps;

/// Caps as the API takes them: the same fields, but a misspelt one is an error rather than a
/// silently missing cap (the wire type accepts unknown fields so versions can differ).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapsInput {
    /// Bytes per second.
    #[serde(default)]
    pub bandwidth_bps: Option<u64>,
    /// New connections per second.
    #[serde(default)]
    pub new_conn_per_sec: Option<u32>,
    /// Concurrent connections.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

impl From<CapsInput> for Caps {
    fn from(c: CapsInput) -> Caps {
        Caps {
            bandwidth_bps: c.bandwidth_bps,
            new_conn_per_sec: c.new_conn_per_sec,
            max_connections: c.max_connections,
        }
    }
}

/// Refuses zero (a cap of zero would forward nothing; leave it unset instead) and values SQLite
/// cannot hold.
pub fn check(caps: &Caps) -> Result<()> {
    let bad = |field: &str| {
        Err(Error::bad_request(
            "invalid_caps",
            format!("{field} must be at least 1 (leave it out for no cap)"),
        ))
    };
    if caps.bandwidth_bps == Some(0)
        || caps
            .bandwidth_bps
            .is_some_and(|b| i64::try_from(b).is_err())
    {
        return bad("bandwidth_bps");
    }
    if caps.new_conn_per_sec == Some(0) {
        return bad("new_conn_per_sec");
    }
    if caps.max_connections == Some(0) {
        return bad("max_connections");
    }
    Ok(())
}

/// Refuses a rule cap above the owner's cap of the same kind.
pub fn check_within(caps: &Caps, owner: &Caps) -> Result<()> {
    fn within<T: PartialOrd + Copy + std::fmt::Display>(
        field: &str,
        rule: Option<T>,
        owner: Option<T>,
    ) -> Result<()> {
        match (rule, owner) {
            (Some(r), Some(o)) if r > o => Err(Error::bad_request(
                "cap_exceeds_owner",
                format!("{field} {r} is above the owner's cap of {o}"),
            )),
            _ => Ok(()),
        }
    }
    within("bandwidth_bps", caps.bandwidth_bps, owner.bandwidth_bps)?;
    within(
        "new_conn_per_sec",
        caps.new_conn_per_sec,
        owner.new_conn_per_sec,
    )?;
    within(
        "max_connections",
        caps.max_connections,
        owner.max_connections,
    )
}

/// The owner's caps (all `None` when none are set).
pub fn of_owner(conn: &Connection, owner_id: &str) -> Result<Caps> {
    Ok(conn
        .query_row(
            "SELECT bandwidth_bps, new_conn_per_sec, max_connections FROM rate_limit_owner WHERE owner_id = ?1",
            [owner_id],
            |r| {
                Ok(Caps {
                    bandwidth_bps: r.get::<_, Option<i64>>(0)?.map(|v| v.max(0) as u64),
                    new_conn_per_sec: r.get(1)?,
                    max_connections: r.get(2)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

/// Sets (or, with all fields `None`, clears) a user's caps.
pub fn set_owner(tx: &Transaction<'_>, owner_id: &str, caps: &Caps) -> Result<Caps> {
    check(caps)?;
    if *caps == Caps::default() {
        tx.execute(
            "DELETE FROM rate_limit_owner WHERE owner_id = ?1",
            [owner_id],
        )?;
    } else {
        tx.execute(
            "INSERT INTO rate_limit_owner (owner_id, bandwidth_bps, new_conn_per_sec, max_connections, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (owner_id) DO UPDATE SET bandwidth_bps = excluded.bandwidth_bps,
                 new_conn_per_sec = excluded.new_conn_per_sec,
                 max_connections = excluded.max_connections, updated_at = excluded.updated_at",
            params![
                owner_id,
                caps.bandwidth_bps.map(|b| b as i64),
                caps.new_conn_per_sec,
                caps.max_connections,
                ids::now_ms()
            ],
        )?;
    }
    Ok(*caps)
}
