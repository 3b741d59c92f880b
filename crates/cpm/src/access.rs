//! Who may do what: one function turns a user's org role and direct grant into an access level.
//!
//! The effective level on a repository is the strongest of the user's direct grant (`read`,
//! `write`, `admin` in `repo_access`) and what their role in the owning organization implies
//! (`owner` and `admin` → `admin`; `member` → `read`). Fetching needs `read`, pushing `write`,
//! managing the repository `admin`. Every decision carries a reason a person can read, which `cpm
//! access check` prints and the SSH server (part 2) logs.

use std::fmt;
use std::str::FromStr;

use rusqlite::Connection;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::orgs::{self, Role};
use crate::repos::{self, Repository};
use crate::users::User;

/// An access level, weakest first (so `max` is "strongest").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fetch and clone.
    Read,
    /// Also push.
    Write,
    /// Also manage the repository.
    Admin,
}

impl Level {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Write => "write",
            Level::Admin => "admin",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = Error;
    fn from_str(s: &str) -> Result<Level> {
        match s {
            "read" => Ok(Level::Read),
            "write" => Ok(Level::Write),
            "admin" => Ok(Level::Admin),
            other => Err(Error::Invalid(format!(
                "unknown access level '{other}' (expected read, write or admin)"
            ))),
        }
    }
}

/// What an org role implies on the organization's repositories.
pub fn implied_by(role: Role) -> Level {
    match role {
        Role::Owner | Role::Admin => Level::Admin,
        Role::Member => Level::Read,
    }
}

/// A decision: the level (none = no access) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The effective level, or `None` for no access.
    pub level: Option<Level>,
    /// Why, in words.
    pub reason: String,
    /// The user's role in the owning organization.
    pub org_role: Option<Role>,
    /// The user's direct grant.
    pub direct: Option<Level>,
}

impl Decision {
    /// Whether the decision allows at least `needed`.
    pub fn allows(&self, needed: Level) -> bool {
        self.level.is_some_and(|l| l >= needed)
    }
}

/// The pure rule: combine a role and a direct grant on `org/repo`.
pub fn decide(org: &str, repo: &str, role: Option<Role>, direct: Option<Level>) -> Decision {
    let from_role = role.map(implied_by);
    let level = from_role.max(direct);
    let reason = match (role, direct) {
        (None, None) => {
            format!("no access: not a member of '{org}' and no grant on '{org}/{repo}'")
        }
        (Some(r), None) => format!("{} via role '{r}' in '{org}'", implied_by(r)),
        (None, Some(d)) => format!("{d} via a direct grant on '{org}/{repo}'"),
        (Some(r), Some(d)) => {
            let implied = implied_by(r);
            if d > implied {
                format!(
                    "{d} via a direct grant on '{org}/{repo}' (role '{r}' in '{org}' gives only {implied})"
                )
            } else if d == implied {
                format!("{d} via role '{r}' in '{org}' and a direct grant")
            } else {
                format!("{implied} via role '{r}' in '{org}' (the direct grant gives only {d})")
            }
        }
    };
    Decision {
        level,
        reason,
        org_role: role,
        direct,
    }
}

/// The effective access of `user` on `repo`, from the database.
pub fn check(conn: &Connection, user: &User, repo: &Repository) -> Result<Decision> {
    let role = orgs::member_role(conn, repo.org_id, user.id)?;
    let direct = repos::direct_level(conn, repo.id, user.id)?;
    Ok(decide(&repo.org, &repo.name, role, direct))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Option<Role>; 4] = [
        None,
        Some(Role::Member),
        Some(Role::Admin),
        Some(Role::Owner),
    ];
    const GRANTS: [Option<Level>; 4] = [
        None,
        Some(Level::Read),
        Some(Level::Write),
        Some(Level::Admin),
    ];

    #[test]
    fn every_role_and_grant_combination_gives_the_strongest_of_the_two() {
        for role in ROLES {
            for direct in GRANTS {
                let d = decide("acme", "web", role, direct);
                let expected = match (role, direct) {
                    (None, g) => g,
                    (Some(Role::Member), None) => Some(Level::Read),
                    (Some(Role::Member), Some(g)) => Some(g.max(Level::Read)),
                    (Some(Role::Admin | Role::Owner), _) => Some(Level::Admin),
                };
                assert_eq!(d.level, expected, "{role:?} {direct:?}");
                assert!(!d.reason.is_empty());
                // Reads need read, pushes need write, management needs admin.
                assert_eq!(d.allows(Level::Read), expected.is_some());
                assert_eq!(d.allows(Level::Write), expected >= Some(Level::Write));
                assert_eq!(d.allows(Level::Admin), expected == Some(Level::Admin));
            }
        }
    }

    #[test]
    fn reasons_name_where_the_level_comes_from() {
        assert!(
            decide("acme", "web", None, None)
                .reason
                .starts_with("no access")
        );
        assert!(
            decide("acme", "web", Some(Role::Member), None)
                .reason
                .contains("role 'member'")
        );
        let d = decide("acme", "web", Some(Role::Member), Some(Level::Write));
        assert_eq!(d.level, Some(Level::Write));
        assert!(
            d.reason.contains("direct grant") && d.reason.contains("gives only read"),
            "{}",
            d.reason
        );
        let d = decide("acme", "web", Some(Role::Owner), Some(Level::Read));
        assert!(
            d.reason.contains("role 'owner'") && d.reason.contains("gives only read"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn levels_parse_and_refuse_unknown_ones() {
        assert_eq!("write".parse::<Level>().unwrap(), Level::Write);
        assert!("root".parse::<Level>().is_err());
        assert!(Level::Admin > Level::Write && Level::Write > Level::Read);
    }
}
