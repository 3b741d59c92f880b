//! Monthly traffic quotas per (user, client) and the 1-minute / 1-hour usage history that the
//! clients report (part 2 of the fleet feeds `traffic_samples_*`; this module reads them and
//! keeps the quota rows).

use portunus_core::wire::UsageSample;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::{clients, users};

/// A quota with its usage in the current month.
#[derive(Debug, Clone, Serialize)]
pub struct Quota {
    /// User.
    pub user_id: String,
    /// Client.
    pub client_id: String,
    /// Allowance per calendar month (UTC); `None` is unlimited.
    pub monthly_bytes: Option<u64>,
    /// The month `used_bytes` counts, `YYYY-MM`.
    pub period: String,
    /// Bytes used this month.
    pub used_bytes: u64,
    /// Whether traffic is cut off.
    pub exhausted: bool,
}

/// What `PUT /v1/quotas` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetQuota {
    /// User id or name.
    pub user: String,
    /// Client id.
    pub client_id: String,
    /// Allowance; `null` for unlimited.
    pub monthly_bytes: Option<u64>,
}

/// One usage sample.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Start of the minute or hour.
    #[serde(with = "ids::serde_ms")]
    pub at: i64,
    /// Bytes from clients to targets.
    pub bytes_in: u64,
    /// Bytes from targets to clients.
    pub bytes_out: u64,
}

/// The month containing `ms`, as `YYYY-MM`.
pub fn period_of(ms: i64) -> String {
    ids::rfc3339(ms).get(..7).unwrap_or("1970-01").to_string()
}

/// Sets or replaces a quota (superadmin; checked by the caller).
pub fn set(tx: &Transaction<'_>, q: &SetQuota) -> Result<Quota> {
    let user = users::resolve(tx, &q.user)?;
    if clients::get(tx, &q.client_id)?.is_none() {
        return Err(Error::not_found(format!("client {}", q.client_id)));
    }
    let limit = q
        .monthly_bytes
        .map(|b| {
            i64::try_from(b)
                .map_err(|_| Error::bad_request("invalid_quota", "monthly_bytes is too large"))
        })
        .transpose()?;
    let period = period_of(ids::now_ms());
    tx.execute(
        "INSERT INTO traffic_quotas (user_id, client_id, monthly_bytes, period, used_bytes)
         VALUES (?1, ?2, ?3, ?4, 0)
         ON CONFLICT (user_id, client_id) DO UPDATE SET monthly_bytes = excluded.monthly_bytes",
        params![user.id, q.client_id, limit, period],
    )?;
    // Whether the owner's rules run on the client may have changed either way.
    crate::model::clients::bump_generation(tx, &q.client_id)?;
    if !is_exhausted(tx, &user.id, &q.client_id, &period)? {
        tx.execute(
            "UPDATE rules SET status = 'pending', status_reason = NULL
              WHERE owner_id = ?1 AND client_id = ?2 AND status_reason = 'monthly traffic quota exhausted'",
            params![user.id, q.client_id],
        )?;
    }
    list(tx, None, Some(&user.id), Some(&q.client_id))?
        .pop()
        .ok_or_else(|| Error::not_found("quota"))
}

/// Quotas visible to the caller (`None` caller: all), with this month's usage.
pub fn list(
    conn: &Connection,
    caller: Option<&Principal>,
    user_id: Option<&str>,
    client_id: Option<&str>,
) -> Result<Vec<Quota>> {
    let own = caller
        .filter(|c| !c.is_superadmin())
        .map(|c| c.user_id.clone());
    if let (Some(own), Some(asked)) = (&own, user_id)
        && own != asked
    {
        return Err(Error::forbidden("you may only see your own quotas"));
    }
    let user_filter = own.or_else(|| user_id.map(str::to_string));
    let current = period_of(ids::now_ms());
    let mut stmt = conn.prepare(
        "SELECT user_id, client_id, monthly_bytes, period, used_bytes FROM traffic_quotas
          WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR client_id = ?2)
          ORDER BY user_id, client_id",
    )?;
    let rows = stmt
        .query_map(params![user_filter, client_id], |r| {
            let limit: Option<i64> = r.get(2)?;
            let period: String = r.get(3)?;
            let used: i64 = if period == current { r.get(4)? } else { 0 };
            let used = used.max(0) as u64;
            let limit = limit.map(|l| l.max(0) as u64);
            Ok(Quota {
                user_id: r.get(0)?,
                client_id: r.get(1)?,
                monthly_bytes: limit,
                period: current.clone(),
                used_bytes: used,
                exhausted: limit.is_some_and(|l| used >= l),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Usage history of one (user, client) pair: `resolution` is `1m` or `1h`.
pub fn samples(
    conn: &Connection,
    caller: &Principal,
    user_id: &str,
    client_id: &str,
    resolution: &str,
    since: i64,
) -> Result<Vec<Sample>> {
    if !caller.may_touch(user_id) {
        return Err(Error::forbidden("you may only see your own usage"));
    }
    let table = match resolution {
        "1m" => "traffic_samples_1m",
        "1h" => "traffic_samples_1h",
        other => {
            return Err(Error::bad_request(
                "invalid_resolution",
                format!("resolution '{other}' must be 1m or 1h"),
            ));
        }
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT at, bytes_in, bytes_out FROM {table}
          WHERE user_id = ?1 AND client_id = ?2 AND at >= ?3 ORDER BY at LIMIT 10000"
    ))?;
    let rows = stmt
        .query_map(params![user_id, client_id, since], |r| {
            Ok(Sample {
                at: r.get(0)?,
                bytes_in: r.get::<_, i64>(1)?.max(0) as u64,
                bytes_out: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Adds a client's usage report to the 1-minute and 1-hour history and to each owner's monthly
/// quota on that client. Returns the owners whose quota this report exhausted; their rules on the
/// client leave its desired state (the caller bumps the generation) and are marked failed.
/// Samples of owners that no longer exist are ignored.
pub fn record_usage(
    tx: &Transaction<'_>,
    client_id: &str,
    samples: &[UsageSample],
) -> Result<Vec<String>> {
    let mut exhausted = Vec::new();
    for s in samples {
        let owner_exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)",
            [&s.owner_id],
            |r| r.get(0),
        )?;
        if !owner_exists || s.minute < 0 {
            continue;
        }
        let minute = s.minute - s.minute.rem_euclid(60_000);
        let hour = s.minute - s.minute.rem_euclid(3_600_000);
        let (bytes_in, bytes_out) = (clamp(s.bytes_in), clamp(s.bytes_out));
        for (table, at) in [("traffic_samples_1m", minute), ("traffic_samples_1h", hour)] {
            tx.prepare_cached(&format!(
                "INSERT INTO {table} (user_id, client_id, at, bytes_in, bytes_out) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user_id, client_id, at) DO UPDATE SET
                     bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out"
            ))?
            .execute(params![s.owner_id, client_id, at, bytes_in, bytes_out])?;
        }
        let period = period_of(s.minute);
        let before = is_exhausted(tx, &s.owner_id, client_id, &period)?;
        tx.prepare_cached(
            "INSERT INTO traffic_quotas (user_id, client_id, monthly_bytes, period, used_bytes)
             VALUES (?1, ?2, NULL, ?3, ?4)
             ON CONFLICT (user_id, client_id) DO UPDATE SET
                 used_bytes = CASE WHEN period = excluded.period THEN used_bytes + excluded.used_bytes
                                   WHEN period < excluded.period THEN excluded.used_bytes
                                   ELSE used_bytes END,
                 period = max(period, excluded.period)",
        )?
        .execute(params![s.owner_id, client_id, period, bytes_in.saturating_add(bytes_out)])?;
        if !before
            && is_exhausted(tx, &s.owner_id, client_id, &period)?
            && !exhausted.contains(&s.owner_id)
        {
            tx.execute(
                "UPDATE rules SET status = 'failed', status_reason = 'monthly traffic quota exhausted'
                  WHERE owner_id = ?1 AND client_id = ?2",
                params![s.owner_id, client_id],
            )?;
            exhausted.push(s.owner_id.clone());
        }
    }
    Ok(exhausted)
}

fn clamp(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// Whether the owner's quota on the client is used up in `period` (`YYYY-MM`).
pub fn is_exhausted(
    conn: &Connection,
    owner_id: &str,
    client_id: &str,
    period: &str,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT monthly_bytes IS NOT NULL AND period = ?3 AND used_bytes >= monthly_bytes
               FROM traffic_quotas WHERE user_id = ?1 AND client_id = ?2",
        )?
        .query_row(params![owner_id, client_id, period], |r| {
            r.get::<_, bool>(0)
        })
        .optional()?
        .unwrap_or(false))
}

/// Starts a new month for quotas still counting an earlier one; returns the clients whose
/// exhausted owners may forward again (their generation is bumped).
pub fn roll_over(tx: &Transaction<'_>, now: i64) -> Result<Vec<String>> {
    let period = period_of(now);
    let mut stmt = tx.prepare(
        "SELECT DISTINCT client_id FROM traffic_quotas
          WHERE period < ?1 AND monthly_bytes IS NOT NULL AND used_bytes >= monthly_bytes",
    )?;
    let clients = stmt
        .query_map([&period], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.execute(
        "UPDATE traffic_quotas SET period = ?1, used_bytes = 0 WHERE period < ?1",
        [&period],
    )?;
    for client in &clients {
        crate::model::clients::bump_generation(tx, client)?;
    }
    Ok(clients)
}

/// Deletes 1-minute samples older than two days and 1-hour samples older than 400 days.
pub fn prune_samples(tx: &Transaction<'_>, now: i64) -> Result<usize> {
    let minutes = tx.execute(
        "DELETE FROM traffic_samples_1m WHERE at < ?1",
        [now - 2 * 86_400_000],
    )?;
    let hours = tx.execute(
        "DELETE FROM traffic_samples_1h WHERE at < ?1",
        [now - 400 * 86_400_000],
    )?;
    Ok(minutes + hours)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_months() {
        assert_eq!(period_of(1_777_593_600_000), "2026-05");
    }

    fn sample(owner: &str, minute: i64, bytes: u64) -> UsageSample {
        UsageSample {
            owner_id: owner.into(),
            minute,
            bytes_in: bytes / 2,
            bytes_out: bytes - bytes / 2,
        }
    }

    #[test]
    fn usage_fills_history_and_exhausts_the_quota_once_and_removes_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            store::OpenConfig::for_path(&crate::store::TOOL, dir.path().join("state.db"));
        config.allow_unsupported_fs = true;
        let db = store::Store::open(&crate::store::TOOL, &config).unwrap();
        let now = crate::ids::now_ms();
        let minute = now - now.rem_euclid(60_000);
        db.write(|tx| {
            tx.execute_batch(
                "INSERT INTO users (id, username, role, created_at) VALUES ('usr_a', 'alice', 'user', 0);
                 INSERT INTO clients (id, created_at) VALUES ('cli_1', 0);
                 INSERT INTO rules (id, client_id, owner_id, protocol, listen_start, listen_end, created_at, updated_at)
                     VALUES ('rul_1', 'cli_1', 'usr_a', 'tcp', 8080, 8080, 0, 0);
                 INSERT INTO rule_targets (rule_id, position, host, port) VALUES ('rul_1', 0, '127.0.0.1', 80);",
            )?;
            tx.execute(
                "INSERT INTO traffic_quotas (user_id, client_id, monthly_bytes, period, used_bytes) VALUES ('usr_a', 'cli_1', 1000, ?1, 0)",
                [period_of(now)],
            )?;
            // Two reports in one minute add up; a deleted owner's sample is ignored.
            assert!(record_usage(tx, "cli_1", &[sample("usr_a", minute + 5, 300), sample("usr_gone", minute, 9)])?.is_empty());
            assert!(record_usage(tx, "cli_1", &[sample("usr_a", minute + 7, 300)])?.is_empty());
            let (_, rules) = crate::control::desired_state(tx, "cli_1")?;
            assert_eq!(rules.len(), 1);
            assert_eq!(record_usage(tx, "cli_1", &[sample("usr_a", minute, 400)])?, vec!["usr_a".to_string()]);
            assert!(record_usage(tx, "cli_1", &[sample("usr_a", minute, 1)])?.is_empty(), "reported once");
            let (_, rules) = crate::control::desired_state(tx, "cli_1")?;
            assert!(rules.is_empty(), "an exhausted owner's rules leave the desired state");
            let status: String = tx.query_row("SELECT status_reason FROM rules WHERE id = 'rul_1'", [], |r| r.get(0))?;
            assert_eq!(status, "monthly traffic quota exhausted");
            let (bytes_in, bytes_out): (i64, i64) = tx.query_row(
                "SELECT bytes_in, bytes_out FROM traffic_samples_1m WHERE user_id = 'usr_a' AND at = ?1",
                [minute],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            assert_eq!(bytes_in + bytes_out, 1001);
            let hourly: i64 = tx.query_row("SELECT count(*) FROM traffic_samples_1h", [], |r| r.get(0))?;
            assert_eq!(hourly, 1);
            // Raising the quota brings the rule back.
            set(tx, &SetQuota { user: "alice".into(), client_id: "cli_1".into(), monthly_bytes: Some(10_000) })?;
            let (_, rules) = crate::control::desired_state(tx, "cli_1")?;
            assert_eq!(rules.len(), 1);
            // A new month starts from zero.
            tx.execute("UPDATE traffic_quotas SET period = '2000-01', used_bytes = 20000", [])?;
            roll_over(tx, now)?;
            let used: i64 = tx.query_row("SELECT used_bytes FROM traffic_quotas", [], |r| r.get(0))?;
            assert_eq!(used, 0);
            Ok::<_, Error>(())
        })
        .unwrap();
    }
}
