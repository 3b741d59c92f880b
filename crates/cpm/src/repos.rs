//! The `repositories` and `repo_access` tables: repositories owned by organizations, and direct
//! grants of `read`, `write` or `admin` on them.
//!
//! These functions keep the rows; [`crate::disk`] keeps the directories, and the commands do both
//! inside one transaction so disk and database never disagree.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::access::Level;
use crate::error::{Error, Result, unique};
use store::timestamp;

/// A repository, as the seed's model names its JSON fields (plus the organization's name).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repository {
    /// Row id.
    pub id: i64,
    /// Name, unique within the organization.
    pub name: String,
    /// Owning organization.
    pub org_id: i64,
    /// The organization's name (not a column; joined for display).
    pub org: String,
    /// Absolute path of the bare repository.
    pub path: String,
    /// Description, `""` when none.
    pub description: String,
    /// Creation time.
    #[serde(serialize_with = "timestamp::rfc3339::serialize")]
    pub created_at: String,
}

impl Repository {
    /// `org/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.org, self.name)
    }
}

/// Fields `update` may change.
#[derive(Debug, Clone, Default)]
pub struct RepoUpdate {
    /// New description.
    pub description: Option<String>,
}

/// A direct grant, with names for display.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grant {
    /// Row id.
    pub id: i64,
    /// Repository id.
    pub repo_id: i64,
    /// `org/name`.
    pub repository: String,
    /// User id.
    pub user_id: i64,
    /// Username.
    pub username: String,
    /// `read`, `write` or `admin`.
    pub access_level: Level,
}

const SELECT: &str = "SELECT r.id, r.name, r.org_id, o.name, r.path, r.description, r.created_at
     FROM repositories r JOIN organizations o ON o.id = r.org_id";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Repository> {
    Ok(Repository {
        id: r.get(0)?,
        name: r.get(1)?,
        org_id: r.get(2)?,
        org: r.get(3)?,
        path: r.get(4)?,
        description: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
        created_at: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
    })
}

/// Inserts a repository row (the caller has created, or is about to move in, the directory).
pub fn create(
    conn: &Connection,
    org_id: i64,
    name: &str,
    path: &str,
    description: &str,
) -> Result<Repository> {
    conn.prepare_cached(
        "INSERT INTO repositories (name, org_id, path, description, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        name,
        org_id,
        path,
        description.trim(),
        timestamp::now()
    ])
    .map_err(|e| {
        unique(e, || {
            format!("the organization already has a repository '{name}'")
        })
    })?;
    get(conn, conn.last_insert_rowid())
}

/// The repository with this id.
pub fn get(conn: &Connection, id: i64) -> Result<Repository> {
    conn.prepare_cached(&format!("{SELECT} WHERE r.id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no repository with id {id}")))
}

/// The repository `name` of organization `org_id`.
pub fn get_by_name(conn: &Connection, name: &str, org_id: i64) -> Result<Repository> {
    conn.prepare_cached(&format!("{SELECT} WHERE r.name = ?1 AND r.org_id = ?2"))?
        .query_row(params![name, org_id], from_row)
        .optional()?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no repository '{name}' in that organization; see `cpm repo list`"
            ))
        })
}

/// The repository `org/name`.
pub fn find(conn: &Connection, org: &str, name: &str) -> Result<Repository> {
    conn.prepare_cached(&format!("{SELECT} WHERE o.name = ?1 AND r.name = ?2"))?
        .query_row([org, name], from_row)
        .optional()?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no repository '{org}/{name}'; see `cpm repo list --org {org}`"
            ))
        })
}

/// Every repository, by organization and name.
pub fn list(conn: &Connection) -> Result<Vec<Repository>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY o.name, r.name"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// An organization's repositories, by name.
pub fn list_by_org(conn: &Connection, org_id: i64) -> Result<Vec<Repository>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE r.org_id = ?1 ORDER BY r.name"))?;
    let rows = stmt.query_map([org_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The documented query: repositories a user can reach through org membership or direct access.
pub fn user_repositories(conn: &Connection, user_id: i64) -> Result<Vec<Repository>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT r.*
         FROM repositories r
         LEFT JOIN org_members om ON r.org_id = om.org_id
         LEFT JOIN repo_access ra ON r.id = ra.repo_id
         WHERE om.user_id = ? OR ra.user_id = ?",
    )?;
    let ids = stmt
        .query_map([user_id, user_id], |r| r.get::<_, i64>("id"))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut repos = ids
        .into_iter()
        .map(|id| get(conn, id))
        .collect::<Result<Vec<_>>>()?;
    repos.sort_by(|a, b| (&a.org, &a.name).cmp(&(&b.org, &b.name)));
    Ok(repos)
}

/// Applies an update.
pub fn update(conn: &Connection, id: i64, u: &RepoUpdate) -> Result<Repository> {
    if let Some(d) = &u.description {
        conn.prepare_cached("UPDATE repositories SET description = ?2 WHERE id = ?1")?
            .execute(params![id, d.trim()])?;
    }
    get(conn, id)
}

/// Renames a repository row and records its new path.
pub fn rename(conn: &Connection, id: i64, new_name: &str, new_path: &str) -> Result<Repository> {
    conn.prepare_cached("UPDATE repositories SET name = ?2, path = ?3 WHERE id = ?1")?
        .execute(params![id, new_name, new_path])
        .map_err(|e| {
            unique(e, || {
                format!("the organization already has a repository '{new_name}'")
            })
        })?;
    get(conn, id)
}

/// Deletes a repository row; its grants go with it.
pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    let n = conn
        .prepare_cached("DELETE FROM repositories WHERE id = ?1")?
        .execute([id])?;
    if n == 0 {
        return Err(Error::NotFound(format!("no repository with id {id}")));
    }
    Ok(())
}

/// Grants (or changes) a user's direct access. Returns the previous level, if any.
pub fn grant(conn: &Connection, repo_id: i64, user_id: i64, level: Level) -> Result<Option<Level>> {
    let previous = direct_level(conn, repo_id, user_id)?;
    conn.prepare_cached(
        "INSERT INTO repo_access (repo_id, user_id, access_level) VALUES (?1, ?2, ?3)
         ON CONFLICT (repo_id, user_id) DO UPDATE SET access_level = excluded.access_level",
    )?
    .execute(params![repo_id, user_id, level.as_str()])?;
    Ok(previous)
}

/// Removes a user's direct access. Returns the level removed.
pub fn revoke(conn: &Connection, repo_id: i64, user_id: i64) -> Result<Level> {
    let level = direct_level(conn, repo_id, user_id)?.ok_or_else(|| {
        Error::NotFound("that user has no direct access to the repository".into())
    })?;
    conn.prepare_cached("DELETE FROM repo_access WHERE repo_id = ?1 AND user_id = ?2")?
        .execute([repo_id, user_id])?;
    Ok(level)
}

/// A user's direct grant on a repository.
pub fn direct_level(conn: &Connection, repo_id: i64, user_id: i64) -> Result<Option<Level>> {
    let level: Option<String> = conn
        .prepare_cached("SELECT access_level FROM repo_access WHERE repo_id = ?1 AND user_id = ?2")?
        .query_row([repo_id, user_id], |r| r.get(0))
        .optional()?;
    level.map(|l| l.parse()).transpose()
}

/// Direct grants, on one repository or of one user (or all), by repository then username.
pub fn grants(conn: &Connection, repo_id: Option<i64>, user_id: Option<i64>) -> Result<Vec<Grant>> {
    let mut stmt = conn.prepare_cached(
        "SELECT ra.id, ra.repo_id, o.name || '/' || r.name, ra.user_id, u.username, ra.access_level
         FROM repo_access ra
         JOIN repositories r ON r.id = ra.repo_id
         JOIN organizations o ON o.id = r.org_id
         JOIN users u ON u.id = ra.user_id
         WHERE (?1 IS NULL OR ra.repo_id = ?1) AND (?2 IS NULL OR ra.user_id = ?2)
         ORDER BY o.name, r.name, u.username",
    )?;
    let rows = stmt.query_map(params![repo_id, user_id], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, repo_id, repository, user_id, username, level) = row?;
        out.push(Grant {
            id,
            repo_id,
            repository,
            user_id,
            username,
            access_level: level.parse()?,
        });
    }
    Ok(out)
}
