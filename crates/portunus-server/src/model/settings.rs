//! Server settings stored in the `settings` table: a fixed set of known keys, each with a
//! default and a check, so a typo or a nonsense value is refused rather than silently kept.

use std::collections::BTreeMap;

use rusqlite::{Connection, Transaction, params};
use serde_json::Value;

use crate::error::{Error, Result};

/// A known setting.
#[derive(Debug)]
pub struct Setting {
    /// Key.
    pub key: &'static str,
    /// Default value.
    pub default: u64,
    /// Smallest accepted.
    pub min: u64,
    /// Largest accepted.
    pub max: u64,
    /// What it does.
    pub help: &'static str,
}

/// Every setting.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "audit.retention_days",
        default: 90,
        min: 0,
        max: 36_500,
        help: "delete audit rows older than this many days (0: keep forever)",
    },
    Setting {
        key: "audit.max_rows",
        default: 1_000_000,
        min: 0,
        max: 1_000_000_000,
        help: "keep at most this many audit rows (0: no limit)",
    },
    Setting {
        key: "login.max_failures",
        default: 5,
        min: 1,
        max: 1000,
        help: "failed logins per user name within the window before 429",
    },
    Setting {
        key: "login.max_failures_per_address",
        default: 20,
        min: 1,
        max: 100_000,
        help: "failed logins per remote address within the window before 429",
    },
    Setting {
        key: "login.window_secs",
        default: 900,
        min: 10,
        max: 86_400,
        help: "the login-throttling window",
    },
    Setting {
        key: "enrollment.ttl_secs",
        default: 86_400,
        min: 60,
        max: 2_592_000,
        help: "how long an enrollment code stays valid",
    },
];

/// The known setting for `key`.
pub fn known(key: &str) -> Result<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key).ok_or_else(|| {
        let keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        Error::bad_request(
            "unknown_setting",
            format!(
                "unknown setting '{key}'; known settings: {}",
                keys.join(", ")
            ),
        )
    })
}

/// One setting's current value (its default when unset or unreadable).
pub fn get(conn: &Connection, key: &str) -> Result<u64> {
    let setting = known(key)?;
    let stored: Option<String> = conn
        .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .ok();
    Ok(stored
        .and_then(|v| v.parse().ok())
        .filter(|v| (setting.min..=setting.max).contains(v))
        .unwrap_or(setting.default))
}

/// Every setting with its current value.
pub fn all(conn: &Connection) -> Result<BTreeMap<String, u64>> {
    SETTINGS
        .iter()
        .map(|s| Ok((s.key.to_string(), get(conn, s.key)?)))
        .collect()
}

/// Applies a JSON object of changes, all or nothing.
pub fn update(
    tx: &Transaction<'_>,
    changes: &serde_json::Map<String, Value>,
) -> Result<BTreeMap<String, u64>> {
    for (key, value) in changes {
        let setting = known(key)?;
        let n = value
            .as_u64()
            .filter(|v| (setting.min..=setting.max).contains(v))
            .ok_or_else(|| {
                Error::bad_request(
                    "invalid_setting",
                    format!(
                        "{key} must be a whole number from {} to {} ({})",
                        setting.min, setting.max, setting.help
                    ),
                )
            })?;
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, n.to_string()],
        )?;
    }
    all(tx)
}
