//! The authenticated caller and the two roles.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The two roles: superadmins manage everything; users manage their own rules within grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Superadmin,
    /// Their own rules, within their grants.
    User,
}

impl Role {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Superadmin => "superadmin",
            Role::User => "user",
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
            "superadmin" => Ok(Role::Superadmin),
            "user" => Ok(Role::User),
            other => Err(Error::bad_request(
                "invalid_role",
                format!("unknown role '{other}' (expected superadmin or user)"),
            )),
        }
    }
}

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An API token; `write` is false for read-only tokens.
    Token {
        /// The credential id.
        id: String,
        /// Whether the token may change anything.
        write: bool,
    },
    /// A browser session with its CSRF token.
    Session {
        /// The CSRF token the session must echo on state-changing requests.
        csrf: String,
    },
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's id (the audit actor).
    pub user_id: String,
    /// Their login name.
    pub username: String,
    /// Their role.
    pub role: Role,
    /// How they authenticated.
    pub via: Via,
}

impl Principal {
    /// Whether this is a superadmin.
    pub fn is_superadmin(&self) -> bool {
        self.role == Role::Superadmin
    }

    /// Refuses unless a superadmin.
    pub fn require_superadmin(&self, what: &str) -> Result<()> {
        if self.is_superadmin() {
            Ok(())
        } else {
            Err(Error::forbidden(format!("only a superadmin may {what}")))
        }
    }

    /// Refuses a change through a read-only token.
    pub fn require_write(&self) -> Result<()> {
        match self.via {
            Via::Token { write: false, .. } => Err(Error::new(
                crate::error::Kind::Forbidden,
                "insufficient_scope",
                "this API token is read-only; create one with the write scope",
            )),
            _ => Ok(()),
        }
    }

    /// Whether the caller may act on something owned by `owner_id`.
    pub fn may_touch(&self, owner_id: &str) -> bool {
        self.is_superadmin() || self.user_id == owner_id
    }
}
