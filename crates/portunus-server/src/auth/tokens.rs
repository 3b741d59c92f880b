//! API tokens: created for a user, shown once, stored as a blake3 hash, found by that hash.
//!
//! A token is `ptk_` plus 256 random bits. Tokens may expire and may be read-only (scope `read`)
//! or read-write (`read,write`). Verification is one probe of the UNIQUE index on `token_hash`
//! joined with the user, so a disabled user's tokens stop working at once.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::auth::{Principal, Role, Via};
use crate::error::{Error, Kind, Result};
use crate::ids;

/// The longest lifetime a token may be given.
pub const MAX_TTL_DAYS: u32 = 3650;

/// A token as listed (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    /// Credential id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Label.
    pub name: String,
    /// `read` or `read,write`.
    pub scopes: String,
    /// `active` or `revoked`.
    pub status: String,
    /// Created.
    #[serde(with = "ids::serde_ms")]
    pub created_at: i64,
    /// Expires, if ever.
    #[serde(with = "ids::serde_ms::option")]
    pub expires_at: Option<i64>,
    /// Last used (to the minute).
    #[serde(with = "ids::serde_ms::option")]
    pub last_used_at: Option<i64>,
}

/// What `POST /v1/tokens` takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Label.
    #[serde(default)]
    pub name: String,
    /// `read` or `read,write` (default).
    #[serde(default)]
    pub scopes: Option<String>,
    /// Lifetime in days; none means no expiry.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A freshly created token: the only time the secret is shown.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    /// The listing.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret.
    pub token: String,
}

fn normalise_scopes(raw: Option<&str>) -> Result<&'static str> {
    match raw.map(str::trim) {
        None | Some("read,write") | Some("write") | Some("read write") => Ok("read,write"),
        Some("read") => Ok("read"),
        Some(other) => Err(Error::bad_request(
            "invalid_scopes",
            format!("unknown scopes '{other}' (expected read or read,write)"),
        )),
    }
}

/// Creates an API token for `user_id`.
pub fn create(tx: &Transaction<'_>, user_id: &str, new: &NewToken) -> Result<Created> {
    let scopes = normalise_scopes(new.scopes.as_deref())?;
    let now = ids::now_ms();
    let expires_at = match new.expires_in_days {
        Some(0) | None => None,
        Some(d) if d > MAX_TTL_DAYS => {
            return Err(Error::bad_request(
                "invalid_expiry",
                format!("expires_in_days may be at most {MAX_TTL_DAYS}"),
            ));
        }
        Some(d) => Some(now + i64::from(d) * 86_400_000),
    };
    let name = new.name.trim();
    if name.len() > 200 {
        return Err(Error::bad_request(
            "invalid_name",
            "the token name is longer than 200 bytes",
        ));
    }
    let token = ids::new_secret("ptk");
    let id = ids::new_id("tok");
    tx.execute(
        "INSERT INTO credentials (id, kind, user_id, token_hash, name, scopes, status, created_at, expires_at)
         VALUES (?1, 'api', ?2, ?3, ?4, ?5, 'active', ?6, ?7)",
        params![id, user_id, ids::hash_secret(&token), name, scopes, now, expires_at],
    )?;
    Ok(Created {
        info: TokenInfo {
            id,
            user_id: user_id.to_string(),
            name: name.to_string(),
            scopes: scopes.to_string(),
            status: "active".into(),
            created_at: now,
            expires_at,
            last_used_at: None,
        },
        token,
    })
}

/// What a verified token says about its caller, and whether `last_used_at` is stale.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The caller.
    pub principal: Principal,
    /// True when `last_used_at` is more than a minute old (worth one write).
    pub touch: bool,
}

/// Finds the active, unexpired API token and its enabled user. `None` for anything else.
pub fn verify(conn: &Connection, token: &str, now: i64) -> Result<Option<Verified>> {
    let row = conn
        .prepare_cached(
            "SELECT c.id, c.scopes, c.last_used_at, u.id, u.username, u.role
               FROM credentials c JOIN users u ON u.id = c.user_id
              WHERE c.token_hash = ?1 AND c.kind = 'api' AND c.status = 'active'
                AND (c.expires_at IS NULL OR c.expires_at > ?2) AND u.disabled = 0",
        )?
        .query_row(params![ids::hash_secret(token), now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .optional()?;
    let Some((id, scopes, last_used, user_id, username, role)) = row else {
        return Ok(None);
    };
    let role: Role = role.parse()?;
    Ok(Some(Verified {
        principal: Principal {
            user_id,
            username,
            role,
            via: Via::Token {
                id,
                write: scopes.split(',').any(|s| s == "write"),
            },
        },
        touch: last_used.is_none_or(|at| now - at > 60_000),
    }))
}

/// Records that a token was used.
pub fn touch(tx: &Transaction<'_>, credential_id: &str, now: i64) -> Result<()> {
    tx.execute(
        "UPDATE credentials SET last_used_at = ?2 WHERE id = ?1",
        params![credential_id, now],
    )?;
    Ok(())
}

fn info(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        scopes: r.get(3)?,
        status: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        last_used_at: r.get(7)?,
    })
}

const COLUMNS: &str =
    "id, user_id, name, scopes, status, created_at, expires_at, last_used_at FROM credentials";

/// The caller's API tokens (a superadmin sees everyone's).
pub fn list(conn: &Connection, caller: &Principal) -> Result<Vec<TokenInfo>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} WHERE kind = 'api' AND (?1 OR user_id = ?2) ORDER BY created_at, id"
    ))?;
    let rows = stmt
        .query_map(params![caller.is_superadmin(), caller.user_id], info)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Revokes one API token; users may revoke only their own.
pub fn revoke(tx: &Transaction<'_>, caller: &Principal, id: &str) -> Result<TokenInfo> {
    let found = tx
        .query_row(
            &format!("SELECT {COLUMNS} WHERE id = ?1 AND kind = 'api'"),
            [id],
            info,
        )
        .optional()?
        .ok_or_else(|| Error::not_found(format!("token {id}")))?;
    if !caller.may_touch(&found.user_id) {
        return Err(Error::forbidden("this token belongs to another user"));
    }
    tx.execute(
        "UPDATE credentials SET status = 'revoked' WHERE id = ?1",
        [id],
    )?;
    Ok(TokenInfo {
        status: "revoked".into(),
        ..found
    })
}

/// 401 for a missing or bad credential.
pub fn unauthorized(message: &str) -> Error {
    Error::new(Kind::Unauthorized, "unauthorized", message)
}
