//! Audit retention: keeps the audit table within an age and a row count.
//!
//! The audit log grows with every request, so the server trims it periodically inside one write
//! transaction: first every row older than the age limit, then, if more rows remain than the
//! count limit, the oldest of them. "Oldest" is by `(at, seq)`, the order the API pages in, so
//! retention only ever removes a prefix of what a reader sees and never leaves holes. A limit of
//! zero means no limit of that kind.

use rusqlite::Transaction;

/// Milliseconds in a day.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Deletes rows older than `max_age_days` before `now_ms`, then the oldest rows beyond
/// `max_rows`; returns how many rows were deleted. `0` disables either limit.
pub fn apply(
    tx: &Transaction<'_>,
    now_ms: i64,
    max_age_days: u32,
    max_rows: u64,
) -> Result<u64, rusqlite::Error> {
    let mut deleted = 0;
    if max_age_days > 0 {
        let cutoff = now_ms.saturating_sub(i64::from(max_age_days).saturating_mul(DAY_MS));
        deleted += tx.execute("DELETE FROM audit WHERE at < ?1", [cutoff])? as u64;
    }
    if max_rows > 0 {
        let rows: i64 = tx.query_row("SELECT count(*) FROM audit", [], |row| row.get(0))?;
        let excess = u64::try_from(rows).unwrap_or(0).saturating_sub(max_rows);
        if excess > 0 {
            let excess = i64::try_from(excess).unwrap_or(i64::MAX);
            deleted += tx.execute(
                "DELETE FROM audit WHERE seq IN \
                 (SELECT seq FROM audit ORDER BY at, seq LIMIT ?1)",
                [excess],
            )? as u64;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::store::TOOL;

    const NOW: i64 = 1_777_593_600_000;

    /// A store with rows `(seq, at)`, times out of insertion order.
    fn store_with(dir: &std::path::Path, rows: &[(i64, i64)]) -> store::Store {
        let mut config = store::OpenConfig::for_path(&TOOL, dir.join("state.db"));
        config.allow_unsupported_fs = true;
        let store = store::Store::open(&TOOL, &config).unwrap();
        store
            .write(|tx| {
                for (seq, at) in rows {
                    tx.execute(
                        "INSERT INTO audit (seq, at, actor, action, resource, outcome) \
                         VALUES (?1, ?2, 'system', 'x', 'y', 'ok')",
                        (seq, at),
                    )?;
                }
                Ok::<_, store::Error>(())
            })
            .unwrap();
        store
    }

    fn seqs(store: &store::Store) -> Vec<i64> {
        store
            .read(|conn| {
                conn.prepare("SELECT seq FROM audit ORDER BY at, seq")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<i64>, _>>()
            })
            .unwrap()
    }

    fn run(store: &store::Store, days: u32, rows: u64) -> u64 {
        store
            .write(|tx| apply(tx, NOW, days, rows).map_err(store::Error::from))
            .unwrap()
    }

    #[test]
    fn rows_older_than_the_age_limit_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let rows = [
            (1, NOW - 10 * DAY_MS),
            (2, NOW - DAY_MS),
            (3, NOW - 3 * DAY_MS - 1),
            (4, NOW - 3 * DAY_MS),
            (5, NOW),
        ];
        let store = store_with(dir.path(), &rows);
        assert_eq!(run(&store, 0, 0), 0, "no limits, nothing deleted");
        assert_eq!(run(&store, 3, 0), 2);
        assert_eq!(seqs(&store), vec![4, 2, 5], "exactly 3 days old is kept");
        assert_eq!(run(&store, 3, 0), 0);
    }

    #[test]
    fn the_oldest_rows_beyond_the_count_limit_are_deleted_by_time_then_seq() {
        let dir = tempfile::tempdir().unwrap();
        // seq order differs from time order; seqs 2 and 4 share a time.
        let rows = [
            (1, NOW),
            (2, NOW - 50),
            (3, NOW - 100),
            (4, NOW - 50),
            (5, NOW - 10),
        ];
        let store = store_with(dir.path(), &rows);
        assert_eq!(run(&store, 0, 10), 0);
        assert_eq!(run(&store, 0, 3), 2);
        assert_eq!(
            seqs(&store),
            vec![4, 5, 1],
            "seq 3 (oldest) then seq 2 (same time, lower seq)"
        );
        assert_eq!(run(&store, 0, 3), 0);
    }

    #[test]
    fn both_limits_apply_age_first() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<(i64, i64)> = (1..=10).map(|i| (i, NOW - (10 - i) * DAY_MS)).collect();
        let store = store_with(dir.path(), &rows);
        // Age removes seqs 1 and 2 (9 and 8 days old; 7 days is kept), then the count 4 more.
        assert_eq!(run(&store, 7, 4), 6);
        assert_eq!(seqs(&store), vec![7, 8, 9, 10]);
    }
}
