//! The rules of the domain, as functions over a SQLite transaction: who exists, who may open
//! which ports on which client, which rules each client should run, and the limits on them.
//!
//! Every function that reads or changes something a tenant owns takes the caller's
//! [`Principal`](crate::auth::Principal) and refuses what the caller may not see or do, so the
//! HTTP layer cannot forget a check.

pub mod caps;
pub mod clients;
pub mod grants;
pub mod quotas;
pub mod rules;
pub mod settings;
pub mod users;

use crate::error::{Error, Result};

/// Refuses a display name or label that is too long or has control characters.
pub fn check_label(field: &'static str, value: &str) -> Result<()> {
    if value.len() > 200 {
        return Err(Error::bad_request(
            "invalid_name",
            format!("{field} is longer than 200 bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "invalid_name",
            format!("{field} contains control characters"),
        ));
    }
    Ok(())
}
