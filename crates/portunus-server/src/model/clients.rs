//! Clients (edge nodes): identified by an immutable id; the name is a label only. A client is
//! created together with a one-time enrollment code, which the client redeems over the control
//! listener for its own token.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::check_label;

/// How long an enrollment code stays valid unless settings say otherwise.
pub const DEFAULT_ENROLLMENT_TTL_MS: i64 = 24 * 3_600_000;

/// A client as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Client {
    /// Immutable identity.
    pub id: String,
    /// Cosmetic label.
    pub name: String,
    /// The generation of its desired state (bumped by every rule change).
    pub generation: i64,
    /// The generation the client last reported running.
    pub applied_generation: i64,
    /// Whether a live control session exists (filled in by the API).
    pub connected: bool,
    /// `pending` (never enrolled), `enrolled` or `revoked`.
    pub state: String,
    /// Created.
    #[serde(with = "ids::serde_ms")]
    pub created_at: i64,
    /// Last contact.
    #[serde(with = "ids::serde_ms::option")]
    pub last_seen_at: Option<i64>,
    /// Revoked.
    #[serde(with = "ids::serde_ms::option")]
    pub revoked_at: Option<i64>,
}

/// What `POST /v1/clients` and re-enrollment take.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// Label.
    #[serde(default)]
    pub name: String,
    /// Code lifetime in seconds (default from settings, at most 30 days).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// A one-time enrollment code, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct Enrollment {
    /// The client it enrolls.
    pub client_id: String,
    /// `portunus://host:port/enroll?pin=sha256:…&code=…`
    pub uri: String,
    /// The code alone.
    pub code: String,
    /// Expiry.
    #[serde(with = "ids::serde_ms")]
    pub expires_at: i64,
}

const SELECT: &str = "SELECT c.id, c.name, c.generation, c.applied_generation, c.created_at,
       c.last_seen_at, c.revoked_at,
       EXISTS (SELECT 1 FROM credentials k WHERE k.client_id = c.id AND k.status = 'active')
  FROM clients c";

fn client(r: &rusqlite::Row<'_>) -> rusqlite::Result<Client> {
    let revoked_at: Option<i64> = r.get(6)?;
    let enrolled: bool = r.get(7)?;
    Ok(Client {
        id: r.get(0)?,
        name: r.get(1)?,
        generation: r.get(2)?,
        applied_generation: r.get(3)?,
        connected: false,
        state: if revoked_at.is_some() {
            "revoked"
        } else if enrolled {
            "enrolled"
        } else {
            "pending"
        }
        .into(),
        created_at: r.get(4)?,
        last_seen_at: r.get(5)?,
        revoked_at,
    })
}

/// A client by id, whoever may see it.
pub fn get(conn: &Connection, id: &str) -> Result<Option<Client>> {
    Ok(conn
        .query_row(&format!("{SELECT} WHERE c.id = ?1"), [id], client)
        .optional()?)
}

/// Whether the caller may see the client: superadmins all, users those they hold a grant on.
pub fn visible_to(conn: &Connection, caller: &Principal, client_id: &str) -> Result<bool> {
    if caller.is_superadmin() {
        return Ok(true);
    }
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM grants WHERE user_id = ?1 AND client_id = ?2)",
        params![caller.user_id, client_id],
        |r| r.get(0),
    )?)
}

/// A client the caller may see: 404 when it does not exist, 403 when it is not theirs.
pub fn get_visible(conn: &Connection, caller: &Principal, id: &str) -> Result<Client> {
    let found = get(conn, id)?.ok_or_else(|| Error::not_found(format!("client {id}")))?;
    if !visible_to(conn, caller, id)? {
        return Err(Error::forbidden("you hold no grant on this client"));
    }
    Ok(found)
}

/// The clients the caller may see.
pub fn list(conn: &Connection, caller: &Principal) -> Result<Vec<Client>> {
    let mut stmt = conn.prepare(&format!(
        "{SELECT} WHERE ?1 OR c.id IN (SELECT client_id FROM grants WHERE user_id = ?2)
         ORDER BY c.created_at, c.id"
    ))?;
    let rows = stmt
        .query_map(params![caller.is_superadmin(), caller.user_id], client)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Creates a client and its first enrollment code.
pub fn create(
    tx: &Transaction<'_>,
    caller: &Principal,
    new: &NewClient,
    default_ttl_ms: i64,
    public_control: &str,
    pin: &str,
) -> Result<(Client, Enrollment)> {
    check_label("name", &new.name)?;
    let id = ids::new_id("cli");
    let now = ids::now_ms();
    tx.execute(
        "INSERT INTO clients (id, name, owner_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, new.name.trim(), caller.user_id, now],
    )?;
    let enrollment = enroll(
        tx,
        caller,
        &id,
        new.ttl_secs,
        default_ttl_ms,
        public_control,
        pin,
    )?;
    let created = get(tx, &id)?.ok_or_else(|| Error::not_found(format!("client {id}")))?;
    Ok((created, enrollment))
}

/// A new one-time enrollment code for an existing, unrevoked client (e.g. to re-install it).
pub fn enroll(
    tx: &Transaction<'_>,
    caller: &Principal,
    client_id: &str,
    ttl_secs: Option<u64>,
    default_ttl_ms: i64,
    public_control: &str,
    pin: &str,
) -> Result<Enrollment> {
    let found =
        get(tx, client_id)?.ok_or_else(|| Error::not_found(format!("client {client_id}")))?;
    if found.revoked_at.is_some() {
        return Err(Error::conflict(
            "client_revoked",
            format!("client {client_id} is revoked; create a new client instead"),
        ));
    }
    let ttl_ms = match ttl_secs {
        None => default_ttl_ms,
        Some(s) if (60..=30 * 86_400).contains(&s) => i64::try_from(s).unwrap_or(i64::MAX) * 1000,
        Some(s) => {
            return Err(Error::bad_request(
                "invalid_ttl",
                format!("ttl_secs {s} must be between 60 and 2592000 (30 days)"),
            ));
        }
    };
    let code = ids::new_secret("pen");
    let now = ids::now_ms();
    tx.execute(
        "INSERT INTO client_enrollments (code_hash, client_id, created_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            ids::hash_secret(&code),
            client_id,
            caller.user_id,
            now,
            now + ttl_ms
        ],
    )?;
    Ok(Enrollment {
        client_id: client_id.to_string(),
        uri: format!("portunus://{public_control}/enroll?pin={pin}&code={code}"),
        code,
        expires_at: now + ttl_ms,
    })
}

/// Renames a client (the name is cosmetic).
pub fn rename(tx: &Transaction<'_>, id: &str, name: &str) -> Result<Client> {
    check_label("name", name)?;
    let n = tx.execute(
        "UPDATE clients SET name = ?2 WHERE id = ?1",
        params![id, name.trim()],
    )?;
    if n == 0 {
        return Err(Error::not_found(format!("client {id}")));
    }
    get(tx, id)?.ok_or_else(|| Error::not_found(format!("client {id}")))
}

/// Revokes a client: its credentials and unused enrollment codes stop working. Its rules and
/// grants stay (for the record) until the client is deleted.
pub fn revoke(tx: &Transaction<'_>, id: &str) -> Result<Client> {
    let found = get(tx, id)?.ok_or_else(|| Error::not_found(format!("client {id}")))?;
    if found.revoked_at.is_some() {
        return Ok(found);
    }
    let now = ids::now_ms();
    tx.execute(
        "UPDATE clients SET revoked_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    tx.execute(
        "UPDATE credentials SET status = 'revoked' WHERE client_id = ?1",
        [id],
    )?;
    tx.execute(
        "DELETE FROM client_enrollments WHERE client_id = ?1 AND used_at IS NULL",
        [id],
    )?;
    get(tx, id)?.ok_or_else(|| Error::not_found(format!("client {id}")))
}

/// Marks the client's desired state as changed.
pub fn bump_generation(tx: &Transaction<'_>, id: &str) -> Result<()> {
    tx.execute(
        "UPDATE clients SET generation = generation + 1 WHERE id = ?1",
        [id],
    )?;
    Ok(())
}
