//! The first-run setup token: while no superadmin exists, `serve` creates a one-time token
//! (stored hashed) and prints it; `POST /v1/setup` with it creates the first superadmin.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::{Error, Result};
use crate::ids;

/// Whether any superadmin exists.
pub fn has_superadmin(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'superadmin')",
        [],
        |r| r.get(0),
    )?)
}

/// A fresh setup token when the server has no superadmin yet (replacing any earlier unused
/// token, whose plain text is gone); `None` once set up.
pub fn issue_if_needed(tx: &Transaction<'_>) -> Result<Option<String>> {
    if has_superadmin(tx)? {
        return Ok(None);
    }
    let token = ids::new_secret("pst");
    tx.execute(
        "INSERT INTO onboarding_setup (id, token_hash, created_at, consumed_at) VALUES (1, ?1, ?2, NULL)
         ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash,
             created_at = excluded.created_at, consumed_at = NULL",
        params![ids::hash_secret(&token), ids::now_ms()],
    )?;
    Ok(Some(token))
}

/// Consumes the setup token; refuses a wrong one, or any once a superadmin exists.
pub fn consume(tx: &Transaction<'_>, token: &str) -> Result<()> {
    if has_superadmin(tx)? {
        return Err(Error::conflict(
            "already_set_up",
            "this server already has a superadmin; log in instead",
        ));
    }
    let stored: Option<(Vec<u8>, Option<i64>)> = tx
        .query_row(
            "SELECT token_hash, consumed_at FROM onboarding_setup WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match stored {
        Some((hash, None)) if hash == ids::hash_secret(token) => {
            tx.execute(
                "UPDATE onboarding_setup SET consumed_at = ?1 WHERE id = 1",
                [ids::now_ms()],
            )?;
            Ok(())
        }
        _ => Err(Error::new(
            crate::error::Kind::Unauthorized,
            "invalid_setup_token",
            "the setup token is wrong; use the one the server printed at its latest start",
        )),
    }
}
