//! The `Caller` extractor: authenticates a request by bearer token or session cookie, enforces
//! CSRF on cookie-authenticated changes, and audits every refusal.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};

use crate::api::audit_error;
use crate::app::Shared;
use crate::auth::{Principal, Via, sessions, tokens};
use crate::error::{Error, Kind, Result};
use crate::ids;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The session cookie of a request, if any.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == sessions::COOKIE)
        .map(|(_, value)| value.to_string())
}

async fn authenticate(app: &Shared, parts: &Parts) -> Result<Principal> {
    let now = ids::now_ms();
    if let Some(token) = bearer(parts) {
        let token = token.to_string();
        let verified = app
            .db
            .read(move |conn| tokens::verify(conn, &token, now))
            .await?
            .ok_or_else(|| tokens::unauthorized("the API token is unknown, revoked or expired"))?;
        if let (true, Via::Token { id, .. }) = (verified.touch, &verified.principal.via) {
            let id = id.clone();
            // Best effort and off the request path: a busy store only delays the timestamp.
            let app = app.clone();
            tokio::spawn(async move {
                let _ = app.db.write(move |tx| tokens::touch(tx, &id, now)).await;
            });
        }
        return Ok(verified.principal);
    }
    if let Some(cookie) = session_cookie(&parts.headers) {
        let principal = app
            .db
            .read(move |conn| sessions::verify(conn, &cookie, now))
            .await?
            .ok_or_else(|| tokens::unauthorized("the session has expired; log in again"))?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if let Via::Session { csrf } = &principal.via {
            let presented = parts
                .headers
                .get(sessions::CSRF_HEADER)
                .and_then(|v| v.to_str().ok());
            if !safe && !sessions::csrf_matches(csrf, presented) {
                let e = Error::new(
                    Kind::Forbidden,
                    "csrf_failed",
                    "missing or wrong X-CSRF-Token header; send the csrf_token from /v1/login or /v1/me",
                );
                // The cookie did identify the user: the refusal is theirs to see.
                audit_error(app, &principal.user_id, "auth", parts.uri.path(), &e);
                return Err(e);
            }
        }
        return Ok(principal);
    }
    Err(tokens::unauthorized(
        "authentication required: send Authorization: Bearer <token> or log in",
    ))
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Caller> {
        match authenticate(app, parts).await {
            Ok(principal) => Ok(Caller(principal)),
            Err(e) => {
                if e.code != "csrf_failed" {
                    audit_error(app, "anonymous", "auth", parts.uri.path(), &e);
                }
                Err(e)
            }
        }
    }
}
