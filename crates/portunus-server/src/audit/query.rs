//! Reading the audit log back for `GET /v1/audit`: keyset pages and the legacy "latest N" list.
//!
//! Pages are ordered by `(at, seq)` and continued with an opaque cursor holding the last row's
//! key, never with an offset: rows written between two requests neither shift a page nor repeat
//! one. Because the writer stores times clamped to be monotonic (see the writer module), a row
//! committed while a client pages always sorts after the rows it has already seen, so it is
//! picked up by a later page instead of being skipped. Both modes can be restricted to one actor
//! (the tenant filter), which the `audit_by_actor` index serves.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};
use serde::Serialize;

use crate::error::Error;

/// Rows per page when the request names no limit.
pub const DEFAULT_LIMIT: u32 = 100;

/// The most rows one page may hold.
pub const MAX_LIMIT: u32 = 1000;

/// One audit row as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Insertion order; unique.
    pub seq: i64,
    /// When it happened, RFC 3339 UTC with milliseconds.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub resource: String,
    /// `ok`, `denied` or `error`.
    pub outcome: String,
    /// The stored details object.
    pub details: serde_json::Value,
}

/// What a page request asks for.
#[derive(Debug, Default, Clone)]
pub struct Query {
    /// Only rows at or after this time (Unix ms, inclusive).
    pub since: Option<i64>,
    /// Only rows before this time (Unix ms, exclusive).
    pub until: Option<i64>,
    /// Continue after this row (from the previous page's `next_cursor`).
    pub cursor: Option<Cursor>,
    /// Rows per page; 0 means [`DEFAULT_LIMIT`], more than [`MAX_LIMIT`] means `MAX_LIMIT`.
    pub limit: u32,
    /// Only rows whose actor is exactly this (the tenant filter).
    pub actor: Option<String>,
}

/// Where a page ended: the `(at, seq)` key of its last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    at: i64,
    seq: i64,
}

/// The version tag inside an encoded cursor, so the format can change without misreading old ones.
const CURSOR_VERSION: &str = "v1";

impl Cursor {
    /// The key of the last row of a page.
    pub fn new(at: i64, seq: i64) -> Cursor {
        Cursor { at, seq }
    }

    /// The last row's time (Unix ms).
    pub fn at(&self) -> i64 {
        self.at
    }

    /// The last row's `seq`.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// The opaque form handed to clients: base64url (no padding) of `v1:{at}:{seq}`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{CURSOR_VERSION}:{}:{}", self.at, self.seq))
    }

    /// Reads a cursor a client passed back; anything else is 400 `invalid_cursor`.
    pub fn decode(s: &str) -> Result<Cursor, Error> {
        let invalid = || {
            Error::bad_request(
                "invalid_cursor",
                "the cursor is not one this server issued; pass back the next_cursor of the \
                 previous page unchanged, or leave cursor out to start from the beginning",
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(s.trim()).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let rest = text
            .strip_prefix(CURSOR_VERSION)
            .and_then(|rest| rest.strip_prefix(':'))
            .ok_or_else(invalid)?;
        let (at, seq) = rest.split_once(':').ok_or_else(invalid)?;
        let at = at.parse::<i64>().map_err(|_| invalid())?;
        let seq = seq.parse::<i64>().map_err(|_| invalid())?;
        Ok(Cursor { at, seq })
    }
}

/// Parses the `limit` query parameter: absent means [`DEFAULT_LIMIT`]; otherwise an integer in
/// `1..=MAX_LIMIT`, else 400 `invalid_limit`.
pub fn parse_limit(raw: Option<&str>) -> Result<u32, Error> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.trim().parse::<u32>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(Error::bad_request(
            "invalid_limit",
            format!("limit must be a whole number from 1 to {MAX_LIMIT}; got {raw:?}"),
        )),
    }
}

/// The page size actually used for a requested `limit`.
fn effective_limit(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    }
}

const COLUMNS: &str = "SELECT seq, at, actor, action, resource, outcome, details FROM audit";

/// One page in ascending `(at, seq)` order, and the cursor of the next page (`None` when this is
/// the last one).
pub fn page(conn: &Connection, q: &Query) -> Result<(Vec<Entry>, Option<Cursor>), Error> {
    let limit = effective_limit(q.limit);
    let (sql, args) = page_sql(q, limit);
    let mut rows = fetch(conn, &sql, args)?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|(key, _)| *key)
    } else {
        None
    };
    Ok((rows.into_iter().map(|(_, entry)| entry).collect(), next))
}

/// The statement and arguments of one page of `limit` rows (fetching one more).
fn page_sql(q: &Query, limit: u32) -> (String, Vec<Value>) {
    let mut sql = format!("{COLUMNS} WHERE 1");
    let mut args: Vec<Value> = Vec::new();
    let mut bind = |sql: &mut String, clause: &str, value: Value| {
        args.push(value);
        sql.push_str(&clause.replace('#', &format!("?{}", args.len())));
    };
    if let Some(actor) = &q.actor {
        bind(&mut sql, " AND actor = #", Value::Text(actor.clone()));
    }
    if let Some(since) = q.since {
        bind(&mut sql, " AND at >= #", Value::Integer(since));
    }
    if let Some(until) = q.until {
        bind(&mut sql, " AND at < #", Value::Integer(until));
    }
    if let Some(cursor) = q.cursor {
        // A row-value comparison, which SQLite turns into a range scan of the (at, seq) index.
        bind(&mut sql, " AND (at, seq) > (#", Value::Integer(cursor.at));
        bind(&mut sql, ", #)", Value::Integer(cursor.seq));
    }
    // One row more than asked for says whether there is a next page.
    bind(
        &mut sql,
        " ORDER BY at, seq LIMIT #",
        Value::Integer(i64::from(limit) + 1),
    );
    (sql, args)
}

/// The legacy plain-array mode: the `limit` most recent rows by `(at, seq)`, oldest first.
pub fn latest(conn: &Connection, limit: u32, actor: Option<&str>) -> Result<Vec<Entry>, Error> {
    let limit = Value::Integer(i64::from(effective_limit(limit)));
    let (sql, args) = match actor {
        Some(actor) => (
            format!("{COLUMNS} WHERE actor = ?1 ORDER BY at DESC, seq DESC LIMIT ?2"),
            vec![Value::Text(actor.to_owned()), limit],
        ),
        None => (
            format!("{COLUMNS} ORDER BY at DESC, seq DESC LIMIT ?1"),
            vec![limit],
        ),
    };
    let mut rows = fetch(conn, &sql, args)?;
    rows.reverse();
    Ok(rows.into_iter().map(|(_, entry)| entry).collect())
}

/// Runs a query over [`COLUMNS`], keeping each row's key next to it.
fn fetch(conn: &Connection, sql: &str, args: Vec<Value>) -> Result<Vec<(Cursor, Entry)>, Error> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(params_from_iter(args), |row| {
        let seq: i64 = row.get(0)?;
        let at: i64 = row.get(1)?;
        let details: String = row.get(6)?;
        let entry = Entry {
            seq,
            at: crate::ids::rfc3339(at),
            actor: row.get(2)?,
            action: row.get(3)?,
            resource: row.get(4)?,
            outcome: row.get(5)?,
            // The writer only stores serialized JSON; anything else is shown as the text it is.
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
        };
        Ok((Cursor { at, seq }, entry))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::Kind;
    use crate::store::TOOL;

    /// A migrated store with `rows` rows whose times are out of order and often repeated:
    /// `(seq, at, actor)`, seq 1 at 500, seq 2 at 100, seq 3 at 300, then a shuffle of 0..=600.
    fn store_with_rows(dir: &std::path::Path) -> (store::Store, Vec<(i64, i64, String)>) {
        let mut config = store::OpenConfig::for_path(&TOOL, dir.join("state.db"));
        config.allow_unsupported_fs = true;
        let store = store::Store::open(&TOOL, &config).unwrap();
        let actors = ["usr_a", "usr_b", "client:c"];
        let rows: Vec<(i64, i64, String)> = (1..=60_i64)
            .map(|seq| {
                let at = match seq {
                    1 => 500,
                    2 => 100,
                    3 => 300,
                    _ => (seq * 37 % 7) * 100,
                };
                (seq, at, actors[(seq % 3) as usize].to_owned())
            })
            .collect();
        store
            .write(|tx| {
                for (seq, at, actor) in &rows {
                    tx.execute(
                        "INSERT INTO audit (seq, at, actor, action, resource, outcome, details) \
                         VALUES (?1, ?2, ?3, 'rule.create', ?4, 'ok', ?5)",
                        (
                            seq,
                            at,
                            actor,
                            format!("rule:{seq}"),
                            format!(r#"{{"seq":{seq}}}"#),
                        ),
                    )?;
                }
                Ok::<_, store::Error>(())
            })
            .unwrap();
        (store, rows)
    }

    /// The seqs of `rows` that `keep` accepts, in (at, seq) order.
    fn expected(rows: &[(i64, i64, String)], keep: impl Fn(i64, &str) -> bool) -> Vec<i64> {
        let mut kept: Vec<(i64, i64)> = rows
            .iter()
            .filter(|(_, at, actor)| keep(*at, actor))
            .map(|(seq, at, _)| (*at, *seq))
            .collect();
        kept.sort_unstable();
        kept.into_iter().map(|(_, seq)| seq).collect()
    }

    /// Follows cursors (through their encoded form) to the end; checks every page but the last is
    /// full and the last has no cursor.
    fn all_pages(conn: &Connection, mut q: Query) -> Vec<i64> {
        let mut seqs = Vec::new();
        for _ in 0..1000 {
            let (entries, next) = page(conn, &q).unwrap();
            seqs.extend(entries.iter().map(|e| e.seq));
            match next {
                Some(cursor) => {
                    assert_eq!(entries.len(), q.limit as usize);
                    let last = entries.last().unwrap();
                    assert_eq!(cursor.seq(), last.seq);
                    assert_eq!(crate::ids::rfc3339(cursor.at()), last.at);
                    q.cursor = Some(Cursor::decode(&cursor.encode()).unwrap());
                }
                None => return seqs,
            }
        }
        panic!("paging did not end");
    }

    #[test]
    fn pages_of_any_size_return_every_row_once_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, rows) = store_with_rows(dir.path());
        let all = expected(&rows, |_, _| true);
        assert_eq!(all.len(), 60);
        assert_eq!(&all[..2], &[7, 14], "at 0 comes first, by seq");
        store
            .read(|conn| {
                for limit in [1, 2, 3, 7, 60, 61, 1000] {
                    let q = Query {
                        limit,
                        ..Query::default()
                    };
                    assert_eq!(all_pages(conn, q), all, "limit {limit}");
                }
                Ok::<_, Error>(())
            })
            .unwrap();
    }

    #[test]
    fn since_is_inclusive_and_until_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let (store, rows) = store_with_rows(dir.path());
        store
            .read(|conn| {
                for limit in [1, 2, 3, 7] {
                    let q = Query {
                        since: Some(100),
                        until: Some(500),
                        limit,
                        ..Query::default()
                    };
                    let want = expected(&rows, |at, _| (100..500).contains(&at));
                    assert!(
                        want.contains(&2) && !want.contains(&1),
                        "seq 2 at 100 in, seq 1 at 500 out"
                    );
                    assert_eq!(all_pages(conn, q), want, "limit {limit}");
                }
                let empty = Query {
                    since: Some(500),
                    until: Some(500),
                    limit: 10,
                    ..Query::default()
                };
                assert_eq!(page(conn, &empty)?.clone_shape(), (vec![], None));
                Ok::<_, Error>(())
            })
            .unwrap();
    }

    /// Lets `assert_eq!` compare a page by its seqs and cursor.
    trait Shape {
        fn clone_shape(&self) -> (Vec<i64>, Option<Cursor>);
    }

    impl Shape for (Vec<Entry>, Option<Cursor>) {
        fn clone_shape(&self) -> (Vec<i64>, Option<Cursor>) {
            (self.0.iter().map(|e| e.seq).collect(), self.1)
        }
    }

    #[test]
    fn the_actor_filter_keeps_only_that_actors_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (store, rows) = store_with_rows(dir.path());
        store
            .read(|conn| {
                for limit in [1, 2, 3, 7] {
                    let q = Query {
                        actor: Some("usr_b".to_owned()),
                        since: Some(200),
                        limit,
                        ..Query::default()
                    };
                    let want = expected(&rows, |at, actor| actor == "usr_b" && at >= 200);
                    assert!(!want.is_empty());
                    assert_eq!(all_pages(conn, q), want, "limit {limit}");
                }
                let nobody = Query {
                    actor: Some("usr_nobody".to_owned()),
                    limit: 5,
                    ..Query::default()
                };
                assert_eq!(page(conn, &nobody)?.clone_shape(), (vec![], None));
                Ok::<_, Error>(())
            })
            .unwrap();
    }

    #[test]
    fn entries_carry_rfc3339_times_and_parsed_details() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_rows(dir.path());
        let (entries, next) = store
            .read(|conn| {
                page(
                    conn,
                    &Query {
                        since: Some(500),
                        limit: 1,
                        ..Query::default()
                    },
                )
            })
            .unwrap();
        let first = &entries[0];
        assert_eq!(first.seq, 1);
        assert_eq!(first.at, "1970-01-01T00:00:00.500Z");
        assert_eq!(first.outcome, "ok");
        assert_eq!(first.details, serde_json::json!({ "seq": 1 }));
        assert_eq!(next, Some(Cursor::new(500, 1)));
        let json = serde_json::to_value(first).unwrap();
        assert_eq!(json["resource"], "rule:1");
    }

    #[test]
    fn latest_returns_the_newest_rows_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (store, rows) = store_with_rows(dir.path());
        store
            .read(|conn| {
                let all = expected(&rows, |_, _| true);
                let seqs = |entries: Vec<Entry>| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
                assert_eq!(seqs(latest(conn, 5, None)?), all[all.len() - 5..]);
                assert_eq!(seqs(latest(conn, 1000, None)?), all);
                let mine = expected(&rows, |_, actor| actor == "client:c");
                assert_eq!(
                    seqs(latest(conn, 3, Some("client:c"))?),
                    mine[mine.len() - 3..]
                );
                Ok::<_, Error>(())
            })
            .unwrap();
    }

    #[test]
    fn paging_reads_the_time_and_actor_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_rows(dir.path());
        let plan = |conn: &Connection, q: &Query| -> String {
            let (sql, args) = page_sql(q, 10);
            conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
                .join("; ")
        };
        let cursor = Some(Cursor::new(300, 3));
        store
            .read(|conn| {
                for q in [
                    Query::default(),
                    Query {
                        cursor,
                        since: Some(100),
                        until: Some(500),
                        ..Query::default()
                    },
                ] {
                    let plan = plan(conn, &q);
                    assert!(plan.contains("audit_by_time"), "{plan}");
                    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
                }
                for q in [
                    Query {
                        actor: Some("usr_a".to_owned()),
                        ..Query::default()
                    },
                    Query {
                        actor: Some("usr_a".to_owned()),
                        cursor,
                        since: Some(100),
                        ..Query::default()
                    },
                ] {
                    let plan = plan(conn, &q);
                    assert!(plan.contains("audit_by_actor"), "{plan}");
                    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
                }
                Ok::<_, Error>(())
            })
            .unwrap();
    }

    #[test]
    fn cursors_round_trip_and_anything_else_is_invalid_cursor() {
        let cursor = Cursor::new(1_777_593_600_250, 42);
        let encoded = cursor.encode();
        assert!(!encoded.contains('=') && !encoded.contains('+') && !encoded.contains('/'));
        assert_eq!(Cursor::decode(&encoded).unwrap(), cursor);
        assert_eq!(
            Cursor::decode(&Cursor::new(-5, 0).encode()).unwrap().at(),
            -5
        );
        let forged = URL_SAFE_NO_PAD.encode("v2:1:2");
        for bad in [
            "",
            "!!!",
            "djE6MTox=",
            &forged,
            &URL_SAFE_NO_PAD.encode("v1:1"),
            &URL_SAFE_NO_PAD.encode("v1:x:2"),
            &URL_SAFE_NO_PAD.encode("v1:1:2:3"),
        ] {
            let error = Cursor::decode(bad).unwrap_err();
            assert_eq!(
                (error.kind, error.code),
                (Kind::BadRequest, "invalid_cursor"),
                "{bad:?}"
            );
            assert!(error.message.contains("next_cursor"), "{}", error.message);
        }
    }

    #[test]
    fn limits_default_to_100_and_must_be_1_to_1000() {
        assert_eq!(parse_limit(None).unwrap(), 100);
        assert_eq!(parse_limit(Some("1")).unwrap(), 1);
        assert_eq!(parse_limit(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten", "", "2.5", "99999999999"] {
            let error = parse_limit(Some(bad)).unwrap_err();
            assert_eq!(
                (error.status(), error.code),
                (400, "invalid_limit"),
                "{bad:?}"
            );
            assert!(error.message.contains("1 to 1000"), "{}", error.message);
        }
        assert_eq!(effective_limit(0), DEFAULT_LIMIT);
        assert_eq!(effective_limit(5000), MAX_LIMIT);
    }
}
