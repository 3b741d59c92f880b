//! Users: login name, display name, role, disabled flag and an Argon2id password hash.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::auth::{Principal, Role, password};
use crate::error::{Error, Result};
use crate::ids;
use crate::model::check_label;

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Immutable id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Free text.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Disabled users cannot log in and their tokens stop working.
    pub disabled: bool,
    /// Created.
    #[serde(with = "ids::serde_ms")]
    pub created_at: i64,
}

/// What `POST /v1/users` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name: 1–64 of `a-z 0-9 . _ -`, starting with a letter or digit.
    pub username: String,
    /// Optional password (users without one log in only with tokens).
    #[serde(default)]
    pub password: Option<String>,
    /// `user` (default) or `superadmin`.
    #[serde(default)]
    pub role: Option<Role>,
    /// Free text.
    #[serde(default)]
    pub display_name: String,
}

/// What `PATCH /v1/users/{id}` takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// New role (superadmin only).
    pub role: Option<Role>,
    /// New password.
    pub password: Option<String>,
}

/// Refuses a user name that is not short, lowercase and plain.
pub fn check_username(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(
            "invalid_username",
            format!(
                "'{name}' is not a valid user name: use 1-64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
            ),
        ))
    }
}

const COLUMNS: &str = "id, username, display_name, role, disabled, created_at FROM users";

fn user(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(3)?;
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        display_name: r.get(2)?,
        role: if role == "superadmin" {
            Role::Superadmin
        } else {
            Role::User
        },
        disabled: r.get(4)?,
        created_at: r.get(5)?,
    })
}

/// Creates a user (the caller is checked by the API: superadmin only, or setup).
pub fn create(tx: &Transaction<'_>, new: &NewUser) -> Result<User> {
    let username = new.username.trim();
    check_username(username)?;
    check_label("display_name", &new.display_name)?;
    let hash = match &new.password {
        Some(p) => {
            password::check_strength(p)?;
            Some(password::hash(p)?)
        }
        None => None,
    };
    if find_by_name(tx, username)?.is_some() {
        return Err(Error::conflict(
            "user_exists",
            format!("a user named '{username}' already exists"),
        ));
    }
    let created = User {
        id: ids::new_id("usr"),
        username: username.to_string(),
        display_name: new.display_name.trim().to_string(),
        role: new.role.unwrap_or(Role::User),
        disabled: false,
        created_at: ids::now_ms(),
    };
    tx.execute(
        "INSERT INTO users (id, username, display_name, role, disabled, password_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
        params![
            created.id,
            created.username,
            created.display_name,
            created.role.as_str(),
            hash,
            created.created_at
        ],
    )?;
    Ok(created)
}

/// A user by id.
pub fn get(conn: &Connection, id: &str) -> Result<Option<User>> {
    Ok(conn
        .query_row(&format!("SELECT {COLUMNS} WHERE id = ?1"), [id], user)
        .optional()?)
}

/// A user by login name.
pub fn find_by_name(conn: &Connection, username: &str) -> Result<Option<User>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} WHERE username = ?1"),
            [username],
            user,
        )
        .optional()?)
}

/// A user by id or login name (the CLI accepts either).
pub fn resolve(conn: &Connection, key: &str) -> Result<User> {
    if let Some(u) = get(conn, key)? {
        return Ok(u);
    }
    find_by_name(conn, key)?.ok_or_else(|| Error::not_found(format!("user {key}")))
}

/// The caller may see themself; a superadmin anyone.
pub fn get_visible(conn: &Connection, caller: &Principal, key: &str) -> Result<User> {
    let found = resolve(conn, key)?;
    if !caller.may_touch(&found.id) {
        return Err(Error::forbidden("you may only see your own user"));
    }
    Ok(found)
}

/// Everyone (superadmin) or just the caller.
pub fn list(conn: &Connection, caller: &Principal) -> Result<Vec<User>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} WHERE (?1 OR id = ?2) ORDER BY username"
    ))?;
    let rows = stmt
        .query_map(params![caller.is_superadmin(), caller.user_id], user)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The number of enabled superadmins.
fn active_superadmins(tx: &Transaction<'_>) -> Result<i64> {
    Ok(tx.query_row(
        "SELECT count(*) FROM users WHERE role = 'superadmin' AND disabled = 0",
        [],
        |r| r.get(0),
    )?)
}

/// Changes a user. Users may change their own display name and password; everything else, and
/// other users, needs a superadmin. The last enabled superadmin cannot be demoted or disabled.
pub fn update(
    tx: &Transaction<'_>,
    caller: &Principal,
    key: &str,
    patch: &UserPatch,
) -> Result<User> {
    let found = resolve(tx, key)?;
    if !caller.is_superadmin() {
        if caller.user_id != found.id {
            return Err(Error::forbidden("you may only change your own user"));
        }
        if patch.role.is_some() || patch.disabled.is_some() {
            return Err(Error::forbidden(
                "only a superadmin may change roles or disable users",
            ));
        }
    }
    let losing_admin = found.role == Role::Superadmin
        && !found.disabled
        && (patch.role == Some(Role::User) || patch.disabled == Some(true));
    if losing_admin && active_superadmins(tx)? <= 1 {
        return Err(Error::conflict(
            "last_superadmin",
            "this is the last enabled superadmin; promote another user first",
        ));
    }
    if let Some(name) = &patch.display_name {
        check_label("display_name", name)?;
        tx.execute(
            "UPDATE users SET display_name = ?2 WHERE id = ?1",
            params![found.id, name.trim()],
        )?;
    }
    if let Some(disabled) = patch.disabled {
        tx.execute(
            "UPDATE users SET disabled = ?2 WHERE id = ?1",
            params![found.id, disabled],
        )?;
        if disabled {
            tx.execute("DELETE FROM web_sessions WHERE user_id = ?1", [&found.id])?;
        }
    }
    if let Some(role) = patch.role {
        tx.execute(
            "UPDATE users SET role = ?2 WHERE id = ?1",
            params![found.id, role.as_str()],
        )?;
    }
    if let Some(p) = &patch.password {
        password::check_strength(p)?;
        tx.execute(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            params![found.id, password::hash(p)?],
        )?;
        tx.execute("DELETE FROM web_sessions WHERE user_id = ?1", [&found.id])?;
    }
    get(tx, &found.id)?.ok_or_else(|| Error::not_found(format!("user {key}")))
}

/// Deletes a user with their tokens, sessions, grants and rules. Returns the affected client ids
/// (whose desired state changed). The last enabled superadmin cannot be deleted.
pub fn delete(tx: &Transaction<'_>, key: &str) -> Result<(User, Vec<String>)> {
    let found = resolve(tx, key)?;
    if found.role == Role::Superadmin && !found.disabled && active_superadmins(tx)? <= 1 {
        return Err(Error::conflict(
            "last_superadmin",
            "this is the last enabled superadmin; promote another user first",
        ));
    }
    let clients = crate::model::rules::clients_of_owner(tx, &found.id)?;
    tx.execute("DELETE FROM users WHERE id = ?1", [&found.id])?;
    for client in &clients {
        crate::model::clients::bump_generation(tx, client)?;
    }
    Ok((found, clients))
}

/// The user and password hash behind a login name, for password login.
pub fn password_hash(conn: &Connection, username: &str) -> Result<Option<(User, Option<String>)>> {
    Ok(conn
        .query_row(
            "SELECT id, username, display_name, role, disabled, created_at, password_hash
               FROM users WHERE username = ?1",
            [username],
            |r| Ok((user(r)?, r.get::<_, Option<String>>(6)?)),
        )
        .optional()?)
}
