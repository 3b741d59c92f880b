//! The `organizations` and `org_members` tables: groups that own repositories, and who belongs.
//!
//! Roles are `owner` (full control, including deleting the organization), `admin` (manages members
//! and repositories) and `member` (reads the organization's repositories). Deleting an organization
//! cascades to its repositories' rows and memberships, as documented; the caller moves the
//! directories (see [`crate::disk`]).

use std::fmt;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::error::{Error, Result, unique};
use crate::names::{self, Kind};
use store::timestamp;

/// An organization, with the counts `org list` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Organization {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Description, `""` when none.
    pub description: String,
    /// Creation time.
    #[serde(serialize_with = "timestamp::rfc3339::serialize")]
    pub created_at: String,
    /// How many members it has.
    pub member_count: i64,
    /// How many repositories it owns.
    pub repo_count: i64,
}

/// A role in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Full control, including deleting the organization.
    Owner,
    /// Manages members and repositories.
    Admin,
    /// Reads the organization's repositories.
    Member,
}

impl Role {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(Error::Invalid(format!(
                "unknown role '{other}' (expected owner, admin or member)"
            ))),
        }
    }
}

/// One row of the documented "organization members with roles" query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrgMember {
    /// The user's id.
    pub id: i64,
    /// Username.
    pub username: String,
    /// Email.
    pub email: String,
    /// Role in the organization.
    pub role: String,
    /// When they joined.
    #[serde(serialize_with = "timestamp::rfc3339::serialize")]
    pub joined_at: String,
}

/// How `org list` sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Sort {
    /// By name.
    #[default]
    Name,
    /// Oldest first.
    Created,
    /// Most members first.
    Members,
    /// Most repositories first.
    Repos,
}

/// Fields `update` may change.
#[derive(Debug, Clone, Default)]
pub struct OrgUpdate {
    /// New description.
    pub description: Option<String>,
}

const SELECT: &str = "SELECT o.id, o.name, o.description, o.created_at,
        (SELECT count(*) FROM org_members m WHERE m.org_id = o.id),
        (SELECT count(*) FROM repositories r WHERE r.org_id = o.id)
     FROM organizations o";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Organization> {
    Ok(Organization {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
        created_at: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        member_count: r.get(4)?,
        repo_count: r.get(5)?,
    })
}

/// Creates an organization.
pub fn create(conn: &Connection, name: &str, description: &str) -> Result<Organization> {
    let name = names::check(Kind::Org, name)?;
    conn.prepare_cached(
        "INSERT INTO organizations (name, description, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![name, description.trim(), timestamp::now()])
    .map_err(|e| unique(e, || format!("organization '{name}' exists")))?;
    get(conn, conn.last_insert_rowid())
}

/// The organization with this id.
pub fn get(conn: &Connection, id: i64) -> Result<Organization> {
    conn.prepare_cached(&format!("{SELECT} WHERE o.id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no organization with id {id}")))
}

/// The organization with this name.
pub fn get_by_name(conn: &Connection, name: &str) -> Result<Organization> {
    conn.prepare_cached(&format!("{SELECT} WHERE o.name = ?1"))?
        .query_row([name], from_row)
        .optional()?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no organization '{name}'; see `cpm org list`, or create it with `cpm org create {name}`"
            ))
        })
}

/// Every organization, sorted.
pub fn list(conn: &Connection, sort: Sort) -> Result<Vec<Organization>> {
    let order = match sort {
        Sort::Name => "o.name",
        Sort::Created => "o.created_at, o.id",
        Sort::Members => "5 DESC, o.name",
        Sort::Repos => "6 DESC, o.name",
    };
    let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY {order}"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Applies an update.
pub fn update(conn: &Connection, id: i64, u: &OrgUpdate) -> Result<Organization> {
    if let Some(d) = &u.description {
        conn.prepare_cached("UPDATE organizations SET description = ?2 WHERE id = ?1")?
            .execute(params![id, d.trim()])?;
    }
    get(conn, id)
}

/// Deletes an organization; its repositories, grants on them and memberships go with it.
pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    let n = conn
        .prepare_cached("DELETE FROM organizations WHERE id = ?1")?
        .execute([id])?;
    if n == 0 {
        return Err(Error::NotFound(format!("no organization with id {id}")));
    }
    Ok(())
}

/// Adds a member, or changes the role of an existing one. Returns the previous role, if any.
pub fn add_member(
    conn: &Connection,
    org_id: i64,
    user_id: i64,
    role: Role,
) -> Result<Option<Role>> {
    let previous = member_role(conn, org_id, user_id)?;
    if previous == Some(Role::Owner) && role != Role::Owner {
        refuse_last_owner(conn, org_id)?;
    }
    conn.prepare_cached(
        "INSERT INTO org_members (org_id, user_id, role, joined_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
    )?
    .execute(params![org_id, user_id, role.as_str(), timestamp::now()])?;
    Ok(previous)
}

/// Removes a member. Refuses to remove the last owner, which would leave nobody able to delete
/// the organization or manage it.
pub fn remove_member(conn: &Connection, org_id: i64, user_id: i64) -> Result<Role> {
    let role = member_role(conn, org_id, user_id)?
        .ok_or_else(|| Error::NotFound("that user is not a member of the organization".into()))?;
    if role == Role::Owner {
        refuse_last_owner(conn, org_id)?;
    }
    conn.prepare_cached("DELETE FROM org_members WHERE org_id = ?1 AND user_id = ?2")?
        .execute([org_id, user_id])?;
    Ok(role)
}

/// Refuses to take away the organization's only owner, which would leave nobody able to manage
/// or delete it.
fn refuse_last_owner(conn: &Connection, org_id: i64) -> Result<()> {
    let owners: i64 = conn.query_row(
        "SELECT count(*) FROM org_members WHERE org_id = ?1 AND role = 'owner'",
        [org_id],
        |r| r.get(0),
    )?;
    if owners == 1 {
        return Err(Error::Invalid(
            "that is the organization's last owner; make someone else owner first (`cpm org member add ORG USER --role owner`)".into(),
        ));
    }
    Ok(())
}

/// A user's role in an organization.
pub fn member_role(conn: &Connection, org_id: i64, user_id: i64) -> Result<Option<Role>> {
    let role: Option<String> = conn
        .prepare_cached("SELECT role FROM org_members WHERE org_id = ?1 AND user_id = ?2")?
        .query_row([org_id, user_id], |r| r.get(0))
        .optional()?;
    role.map(|r| r.parse()).transpose()
}

/// The documented query: an organization's members with roles, ordered by role then username.
pub fn members(conn: &Connection, org_id: i64) -> Result<Vec<OrgMember>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.id, u.username, u.email, om.role, om.joined_at
         FROM users u
         JOIN org_members om ON u.id = om.user_id
         WHERE om.org_id = ?
         ORDER BY om.role, u.username",
    )?;
    let rows = stmt.query_map([org_id], |r| {
        Ok(OrgMember {
            id: r.get(0)?,
            username: r.get(1)?,
            email: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            role: r.get(3)?,
            joined_at: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
