//! The `ssh_keys` table: cpm's own key pairs, used to push to other servers.
//!
//! The private key lives in a file (`~/.cpm/keys/<name>`, 0600) and the row records its path and
//! public half. Deleting a key's row nulls `servers.ssh_key_id` (the documented `ON DELETE SET
//! NULL`); the key files are removed only when asked.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::error::{Error, Result, unique};
use store::timestamp;

/// A key pair, as the seed's model names its JSON fields, plus its fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SshKey {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// The OpenSSH public key line.
    pub public_key: String,
    /// Where the private key file is.
    pub private_key_path: String,
    /// Creation time.
    #[serde(serialize_with = "timestamp::rfc3339::serialize")]
    pub created_at: String,
    /// `SHA256:…` (computed, not stored).
    pub fingerprint: String,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<SshKey> {
    let public_key: String = r.get(2)?;
    Ok(SshKey {
        id: r.get(0)?,
        name: r.get(1)?,
        fingerprint: crate::keys::fingerprint_of(&public_key).unwrap_or_default(),
        public_key,
        private_key_path: r.get(3)?,
        created_at: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
    })
}

const SELECT: &str = "SELECT id, name, public_key, private_key_path, created_at FROM ssh_keys";

/// Records a generated key pair.
pub fn create(
    conn: &Connection,
    name: &str,
    public_key: &str,
    private_key_path: &str,
) -> Result<SshKey> {
    conn.prepare_cached(
        "INSERT INTO ssh_keys (name, public_key, private_key_path, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![name, public_key, private_key_path, timestamp::now()])
    .map_err(|e| unique(e, || format!("a key named '{name}' exists")))?;
    get_by_name(conn, name)
}

/// The key with this name.
pub fn get_by_name(conn: &Connection, name: &str) -> Result<SshKey> {
    conn.prepare_cached(&format!("{SELECT} WHERE name = ?1"))?
        .query_row([name], from_row)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no key '{name}'; see `cpm key list`")))
}

/// The key with this id.
pub fn get(conn: &Connection, id: i64) -> Result<SshKey> {
    conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no key with id {id}")))
}

/// Every key, by name.
pub fn list(conn: &Connection) -> Result<Vec<SshKey>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY name"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes a key's row; servers using it keep no key (`ON DELETE SET NULL`).
pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM ssh_keys WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}
