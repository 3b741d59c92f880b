//! The `configurations` table: every export written and every import applied, kept as JSON.
//!
//! The seed describes it as "stored exported/imported configurations"; keeping each document
//! (with its version and checksum) gives a record of what moved in and out and lets an old export be
//! recovered from the database itself.

use rusqlite::{Connection, params};

use crate::error::Result;
use crate::timestamp;

/// One row to store.
#[derive(Debug, Clone)]
pub struct Configuration<'a> {
    /// A name: the file name of an export, `import: <file>` for an import.
    pub name: &'a str,
    /// Free text.
    pub description: Option<&'a str>,
    /// The JSON document.
    pub data: &'a str,
    /// The format version of `data`.
    pub version: &'a str,
    /// The user who made it.
    pub created_by: &'a str,
    /// `sha256:…` of the reservations, when the document carries one.
    pub checksum: Option<&'a str>,
}

/// Appends a configuration, stamped now.
pub fn save(conn: &Connection, c: &Configuration<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO configurations (name, description, data, version, createdAt, createdBy, checksum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        c.name,
        c.description,
        c.data,
        c.version,
        timestamp::now(),
        c.created_by,
        c.checksum,
    ])?;
    Ok(())
}
