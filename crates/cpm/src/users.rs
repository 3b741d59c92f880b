//! The `users` table and our `user_keys` table: accounts and the SSH keys that identify them.
//!
//! A user may have several keys (the original allowed one, in `users.public_key`); every key is a
//! row of `user_keys` with a unique SHA256 fingerprint, so a key identifies exactly one user. The
//! documented `users.public_key` column keeps the user's first key, so the documented model and
//! SQL still see one. `users.email` is documented NOT NULL but the CLI's `--email` is optional: a
//! user without an email is stored with `''` and shown without one.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::error::{Error, Result, unique};
use crate::keys::PublicKeyInfo;
use crate::names::{self, Kind};
use store::timestamp;

/// A user, as the seed's model names its JSON fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Unique username.
    pub username: String,
    /// Email, `""` when none was given.
    pub email: String,
    /// The first SSH public key (the documented column); omitted when empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Creation time (RFC 3339 in JSON).
    #[serde(serialize_with = "timestamp::rfc3339::serialize")]
    pub created_at: String,
}

/// One of a user's SSH keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserKey {
    /// Row id.
    pub id: i64,
    /// The user.
    pub user_id: i64,
    /// A label, unique per user (the key's comment, or `key-N`).
    pub name: String,
    /// The OpenSSH public key line.
    pub public_key: String,
    /// `SHA256:…`
    pub fingerprint: String,
    /// When it was added.
    #[serde(serialize_with = "timestamp::rfc3339::serialize")]
    pub created_at: String,
}

/// Fields of a user that `update` may change (a whitelist, not column names).
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    /// New email (`Some("")` clears it).
    pub email: Option<String>,
    /// New username.
    pub username: Option<String>,
}

const COLUMNS: &str = "id, username, email, public_key, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        email: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
        public_key: r.get::<_, Option<String>>(3)?.filter(|k| !k.is_empty()),
        created_at: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
    })
}

/// Checks an email loosely: empty, or one `@` with text on both sides and no spaces.
pub fn check_email(email: &str) -> Result<String> {
    let email = email.trim();
    if email.is_empty() {
        return Ok(String::new());
    }
    match email.split_once('@') {
        Some((a, b))
            if !a.is_empty()
                && b.contains('.')
                && !email.contains(char::is_whitespace)
                && !b.contains('@') =>
        {
            Ok(email.to_string())
        }
        _ => Err(Error::Invalid(format!(
            "'{email}' is not an email address (e.g. alice@example.com)"
        ))),
    }
}

/// Creates a user with optional keys; returns it.
pub fn create(
    conn: &Connection,
    username: &str,
    email: &str,
    keys: &[PublicKeyInfo],
) -> Result<User> {
    let username = names::check(Kind::User, username)?;
    let email = check_email(email)?;
    conn.prepare_cached(
        "INSERT INTO users (username, email, public_key, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        username,
        email,
        keys.first().map(|k| k.openssh.clone()),
        timestamp::now()
    ])
    .map_err(|e| unique(e, || format!("user '{username}' exists; pick another name")))?;
    let id = conn.last_insert_rowid();
    for key in keys {
        add_key(conn, id, key, None)?;
    }
    get(conn, id)
}

/// The user with this id.
pub fn get(conn: &Connection, id: i64) -> Result<User> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no user with id {id}")))
}

/// The user with this username.
pub fn get_by_username(conn: &Connection, username: &str) -> Result<User> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE username = ?1"))?
        .query_row([username], from_row)
        .optional()?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no user '{username}'; see `cpm user list`, or add one with `cpm user add {username}`"
            ))
        })
}

/// Every user, by username.
pub fn list(conn: &Connection) -> Result<Vec<User>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM users ORDER BY username"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Applies an update; returns the user as it is now.
pub fn update(conn: &Connection, id: i64, u: &UserUpdate) -> Result<User> {
    let current = get(conn, id)?;
    let email = match &u.email {
        Some(e) => check_email(e)?,
        None => current.email.clone(),
    };
    let username = match &u.username {
        Some(n) => names::check(Kind::User, n)?,
        None => current.username.clone(),
    };
    conn.prepare_cached("UPDATE users SET username = ?2, email = ?3 WHERE id = ?1")?
        .execute(params![id, username, email])
        .map_err(|e| unique(e, || format!("user '{username}' exists")))?;
    get(conn, id)
}

/// Deletes a user; the documented cascades remove their memberships and grants, and ours their keys.
pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    let n = conn
        .prepare_cached("DELETE FROM users WHERE id = ?1")?
        .execute([id])?;
    if n == 0 {
        return Err(Error::NotFound(format!("no user with id {id}")));
    }
    Ok(())
}

/// Adds a key to a user. The fingerprint must be new to the whole server: a key names one user.
pub fn add_key(
    conn: &Connection,
    user_id: i64,
    key: &PublicKeyInfo,
    name: Option<&str>,
) -> Result<UserKey> {
    let count: i64 = conn.query_row(
        "SELECT count(*) FROM user_keys WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )?;
    let name = match name {
        Some(n) => names::check(Kind::Label, n)?,
        None => {
            // The key's comment, made into a name (`alice@laptop` → `alice-laptop`).
            let from_comment: String = key
                .comment
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            let base = names::check(Kind::Label, from_comment.trim_matches('-'))
                .unwrap_or_else(|_| format!("key-{}", count + 1));
            // Two keys with one comment (two laptops) get `name`, `name-2`, …
            let taken: Vec<String> = keys_of(conn, user_id)?
                .into_iter()
                .map(|k| k.name)
                .collect();
            let mut name = base.clone();
            let mut n = 1;
            while taken.contains(&name) {
                n += 1;
                name = format!("{base}-{n}");
            }
            name
        }
    };
    if let Some(owner) = key_owner(conn, &key.fingerprint)? {
        return Err(Error::Exists(format!(
            "key {} already belongs to user '{}'; a key can identify only one user",
            key.fingerprint, owner.username
        )));
    }
    conn.prepare_cached(
        "INSERT INTO user_keys (user_id, name, public_key, fingerprint, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        user_id,
        name,
        key.openssh,
        key.fingerprint,
        timestamp::now()
    ])
    .map_err(|e| {
        unique(e, || {
            format!("this user already has a key named '{name}'; pass another --key-name")
        })
    })?;
    let id = conn.last_insert_rowid();
    sync_documented_key(conn, user_id)?;
    keys_of(conn, user_id)?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(|| Error::NotFound("the key just added".into()))
}

/// Removes a user's key by name or fingerprint.
pub fn remove_key(conn: &Connection, user_id: i64, name_or_fingerprint: &str) -> Result<UserKey> {
    let key = keys_of(conn, user_id)?
        .into_iter()
        .find(|k| k.name == name_or_fingerprint || k.fingerprint == name_or_fingerprint)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "the user has no key '{name_or_fingerprint}' (name or SHA256 fingerprint)"
            ))
        })?;
    conn.prepare_cached("DELETE FROM user_keys WHERE id = ?1")?
        .execute([key.id])?;
    sync_documented_key(conn, user_id)?;
    Ok(key)
}

/// A user's keys, oldest first.
pub fn keys_of(conn: &Connection, user_id: i64) -> Result<Vec<UserKey>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, user_id, name, public_key, fingerprint, created_at FROM user_keys
         WHERE user_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok(UserKey {
            id: r.get(0)?,
            user_id: r.get(1)?,
            name: r.get(2)?,
            public_key: r.get(3)?,
            fingerprint: r.get(4)?,
            created_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The user a key fingerprint belongs to (how the SSH server identifies a connection).
pub fn key_owner(conn: &Connection, fingerprint: &str) -> Result<Option<User>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {} FROM users u JOIN user_keys k ON k.user_id = u.id WHERE k.fingerprint = ?1",
            COLUMNS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))?
        .query_row([fingerprint], from_row)
        .optional()?)
}

/// Keeps the documented `users.public_key` equal to the user's first key (or NULL).
fn sync_documented_key(conn: &Connection, user_id: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE users SET public_key =
            (SELECT public_key FROM user_keys WHERE user_id = ?1 ORDER BY id LIMIT 1)
         WHERE id = ?1",
    )?
    .execute([user_id])?;
    Ok(())
}

/// Brings keys from the documented `users.public_key` column into `user_keys`, for databases made
/// by the original cpm (run once, when the `user_keys` migration is applied). A key that does not
/// parse, or that another user already has, is left only in the old column.
pub fn backfill_keys(conn: &Connection) -> Result<usize> {
    let mut stmt = conn.prepare(
        "SELECT id, public_key FROM users
         WHERE public_key IS NOT NULL AND public_key != ''
           AND id NOT IN (SELECT user_id FROM user_keys)",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut added = 0;
    for (user_id, text) in rows {
        if let Ok(key) = crate::keys::parse_public_key(&text)
            && add_key(conn, user_id, &key, None).is_ok()
        {
            added += 1;
        }
    }
    Ok(added)
}

/// The user owning the key with this `user_keys.id` (OpenSSH mode names keys by id).
pub fn by_key_id(conn: &Connection, key_id: i64) -> Result<User> {
    let user_id: Option<i64> = conn
        .prepare_cached("SELECT user_id FROM user_keys WHERE id = ?1")?
        .query_row([key_id], |r| r.get(0))
        .optional()?;
    match user_id {
        Some(id) => get(conn, id),
        None => Err(Error::Denied(format!(
            "key {key_id} is not registered (any more); ask an administrator to run `cpm authorized-keys` again"
        ))),
    }
}

/// Every user key with its owner's username, for `cpm authorized-keys`.
pub fn all_keys(conn: &Connection) -> Result<Vec<(UserKey, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT k.id, k.user_id, k.name, k.public_key, k.fingerprint, k.created_at, u.username
         FROM user_keys k JOIN users u ON u.id = k.user_id ORDER BY u.username, k.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            UserKey {
                id: r.get(0)?,
                user_id: r.get(1)?,
                name: r.get(2)?,
                public_key: r.get(3)?,
                fingerprint: r.get(4)?,
                created_at: r.get(5)?,
            },
            r.get(6)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
