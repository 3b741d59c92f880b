//! `GET /v1/audit`: the envelope `{entries, next_cursor?, count}` when `since`, `until` or
//! `cursor` is given; otherwise the plain array of the latest entries, as older callers expect.
//! Superadmins see every row; users see the rows they are the actor of. The handler first waits
//! for the audit writer to store everything recorded before the request, so callers read their
//! own writes.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::api::{Caller, Params, ok, read};
use crate::app::Shared;
use crate::audit::query::{self, Cursor, Query};
use crate::error::{Error, Result};

/// The query string.
#[derive(Debug, Deserialize)]
pub struct AuditParams {
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

fn time(name: &'static str, text: Option<&str>) -> Result<Option<i64>> {
    text.map(|t| {
        crate::cli::parse_rfc3339(t)
            .map_err(|m| Error::bad_request("invalid_time", format!("{name}: {m}")))
    })
    .transpose()
}

/// `GET /v1/audit?since=&until=&cursor=&limit=`
pub async fn list(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Params(p): Params<AuditParams>,
) -> Result<Response> {
    let limit = query::parse_limit(p.limit.as_deref())?;
    let envelope = p.since.is_some() || p.until.is_some() || p.cursor.is_some();
    let q = Query {
        since: time("since", p.since.as_deref())?,
        until: time("until", p.until.as_deref())?,
        cursor: p.cursor.as_deref().map(Cursor::decode).transpose()?,
        limit,
        actor: (!caller.is_superadmin()).then(|| caller.user_id.clone()),
    };
    app.audit.flush().await;
    if envelope {
        let (entries, next) = read(&app, &caller, "audit.read", "audit", move |conn, _| {
            query::page(conn, &q)
        })
        .await?;
        let mut body = json!({"entries": entries, "count": entries.len()});
        if let Some(next) = next {
            body["next_cursor"] = json!(next.encode());
        }
        Ok(ok(body))
    } else {
        let actor = q.actor.clone();
        let entries = read(&app, &caller, "audit.read", "audit", move |conn, _| {
            query::latest(conn, limit, actor.as_deref())
        })
        .await?;
        Ok(ok(entries))
    }
}
