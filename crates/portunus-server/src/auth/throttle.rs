//! Login throttling: too many failures for one user name, or from one address, within a window
//! and further attempts are refused with 429 before any password is checked.

use rusqlite::{Connection, Transaction, params};

use crate::error::{Error, Kind, Result};

/// The limits (from settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures allowed per user name within the window.
    pub per_user: u32,
    /// Failures allowed per remote address within the window.
    pub per_remote: u32,
    /// The window, in milliseconds.
    pub window_ms: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            per_user: 5,
            per_remote: 20,
            window_ms: 15 * 60_000,
        }
    }
}

/// Refuses with 429 (and how long to wait) when either counter is at its limit.
pub fn check(
    conn: &Connection,
    limits: Limits,
    username: &str,
    remote: &str,
    now: i64,
) -> Result<()> {
    let since = now - limits.window_ms;
    let count = |sql: &str, key: &str| -> Result<(u32, Option<i64>)> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row(params![key, since], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, Option<i64>>(1)?))
            })?)
    };
    let (by_user, oldest_user) = count(
        "SELECT count(*), min(at) FROM login_attempts WHERE username = ?1 AND at > ?2 AND success = 0",
        username,
    )?;
    let (by_remote, oldest_remote) = count(
        "SELECT count(*), min(at) FROM login_attempts WHERE remote = ?1 AND at > ?2 AND success = 0",
        remote,
    )?;
    let blocked = [
        (by_user >= limits.per_user, oldest_user),
        (by_remote >= limits.per_remote, oldest_remote),
    ];
    if let Some(oldest) = blocked
        .iter()
        .filter(|(hit, _)| *hit)
        .filter_map(|(_, oldest)| *oldest)
        .max()
    {
        let wait_s = u64::try_from((oldest + limits.window_ms - now).max(1000) / 1000).unwrap_or(1);
        let mut e = Error::new(
            Kind::TooMany,
            "too_many_attempts",
            format!("too many failed logins; try again in {wait_s} s"),
        );
        e.retry_after = Some(wait_s);
        return Err(e);
    }
    Ok(())
}

/// Counts an attempt as a failure *before* its password is checked, so parallel guesses cannot
/// slip past the limit; [`succeeded`] turns it into a success. Also trims rows older than two
/// windows. Returns the attempt's row id.
pub fn begin(
    tx: &Transaction<'_>,
    limits: Limits,
    username: &str,
    remote: &str,
    now: i64,
) -> Result<i64> {
    tx.execute(
        "DELETE FROM login_attempts WHERE at <= ?1",
        [now - 2 * limits.window_ms],
    )?;
    tx.execute(
        "INSERT INTO login_attempts (username, remote, at, success) VALUES (?1, ?2, ?3, 0)",
        params![username, remote, now],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Marks the attempt successful and clears that user's failures.
pub fn succeeded(tx: &Transaction<'_>, attempt: i64, username: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM login_attempts WHERE username = ?1 AND success = 0 AND id <> ?2",
        params![username, attempt],
    )?;
    tx.execute(
        "UPDATE login_attempts SET success = 1 WHERE id = ?1",
        [attempt],
    )?;
    Ok(())
}
