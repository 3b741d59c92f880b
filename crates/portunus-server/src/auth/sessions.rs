//! Browser sessions: a random session id in an HttpOnly, SameSite=Strict cookie (stored hashed)
//! and a CSRF token that every state-changing request made with the cookie must echo.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::auth::{Principal, Role, Via};
use crate::error::Result;
use crate::ids;

/// The cookie's name.
pub const COOKIE: &str = "portunus_session";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub const TTL_MS: i64 = 12 * 3_600_000;

/// A new session: the cookie value and the CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The cookie value (secret).
    pub id: String,
    /// The CSRF token.
    pub csrf: String,
    /// When it ends.
    pub expires_at: i64,
}

/// Starts a session for `user_id`, and drops that user's expired ones.
pub fn create(tx: &Transaction<'_>, user_id: &str, now: i64) -> Result<NewSession> {
    let session = NewSession {
        id: ids::new_secret("pss"),
        csrf: ids::new_secret("csrf"),
        expires_at: now + TTL_MS,
    };
    tx.execute(
        "DELETE FROM web_sessions WHERE user_id = ?1 AND expires_at <= ?2",
        params![user_id, now],
    )?;
    tx.execute(
        "INSERT INTO web_sessions (id_hash, user_id, csrf_token, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            ids::hash_secret(&session.id),
            user_id,
            session.csrf,
            now,
            session.expires_at
        ],
    )?;
    Ok(session)
}

/// The live session behind a cookie value, with its enabled user.
pub fn verify(conn: &Connection, cookie: &str, now: i64) -> Result<Option<Principal>> {
    let row = conn
        .prepare_cached(
            "SELECT s.csrf_token, u.id, u.username, u.role
               FROM web_sessions s JOIN users u ON u.id = s.user_id
              WHERE s.id_hash = ?1 AND s.expires_at > ?2 AND u.disabled = 0",
        )?
        .query_row(params![ids::hash_secret(cookie), now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .optional()?;
    let Some((csrf, user_id, username, role)) = row else {
        return Ok(None);
    };
    Ok(Some(Principal {
        user_id,
        username,
        role: role.parse::<Role>()?,
        via: Via::Session { csrf },
    }))
}

/// Deletes expired sessions (each user's are also dropped when they next log in).
pub fn prune_expired(tx: &Transaction<'_>, now: i64) -> Result<usize> {
    Ok(tx.execute("DELETE FROM web_sessions WHERE expires_at <= ?1", [now])?)
}

/// Ends the session behind a cookie value.
pub fn delete(tx: &Transaction<'_>, cookie: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM web_sessions WHERE id_hash = ?1",
        [ids::hash_secret(cookie)],
    )?;
    Ok(())
}

/// Constant-time comparison of a presented CSRF token with the session's.
pub fn csrf_matches(expected: &str, presented: Option<&str>) -> bool {
    let Some(presented) = presented else {
        return false;
    };
    let (a, b) = (expected.as_bytes(), presented.trim().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
