//! Monthly traffic quotas per (user, client) and the 1-minute / 1-hour usage history that the
//! clients report (part 2 of the fleet feeds `traffic_samples_*`; this module reads them and
//! keeps the quota rows).

use rusqlite::{Connection, Transaction, params};
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

#[cfg(test)]
mod tests {
    #[test]
    fn periods_are_utc_months() {
        assert_eq!(super::period_of(1_777_593_600_000), "2026-05");
    }
}
