//! Onboarding, password login and logout, `/v1/me`, and API tokens.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::api::{Body, Caller, audit_error, created, mutate, ok, read, remote};
use crate::app::Shared;
use crate::audit::{Event, Outcome};
use crate::auth::{Role, Via, password, sessions, setup as onboarding, throttle, tokens};
use crate::error::{Error, Result};
use crate::ids;
use crate::model::{settings, users};

/// `POST /v1/setup` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupBody {
    setup_token: String,
    username: String,
    password: String,
    #[serde(default)]
    display_name: String,
}

/// `POST /v1/setup`: the first superadmin, with a first API token.
pub async fn setup(
    State(app): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Body(body): Body<SetupBody>,
) -> Result<Response> {
    let result = app
        .db
        .write(move |tx| {
            onboarding::consume(tx, &body.setup_token)?;
            let user = users::create(
                tx,
                &users::NewUser {
                    username: body.username,
                    password: Some(body.password),
                    role: Some(Role::Superadmin),
                    display_name: body.display_name,
                },
            )?;
            let token = tokens::create(
                tx,
                &user.id,
                &tokens::NewToken {
                    name: "created at setup".into(),
                    scopes: None,
                    expires_in_days: None,
                },
            )?;
            Ok::<_, Error>((user, token))
        })
        .await;
    match result {
        Ok((user, token)) => {
            app.audit(Event::now(
                &user.id,
                "setup",
                format!("user:{}", user.id),
                Outcome::Ok,
                json!({"username": user.username, "remote": remote(Some(addr))}),
            ));
            Ok(created(
                json!({"user": user, "token": token.token, "token_id": token.info.id}),
            ))
        }
        Err(e) => {
            audit_error(&app, "anonymous", "setup", "setup", &e);
            Err(e)
        }
    }
}

/// `POST /v1/login` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
}

fn limits(conn: &rusqlite::Connection) -> Result<throttle::Limits> {
    Ok(throttle::Limits {
        per_user: u32::try_from(settings::get(conn, "login.max_failures")?).unwrap_or(5),
        per_remote: u32::try_from(settings::get(conn, "login.max_failures_per_address")?)
            .unwrap_or(20),
        window_ms: i64::try_from(settings::get(conn, "login.window_secs")?).unwrap_or(900) * 1000,
    })
}

/// `POST /v1/login`: a session cookie and its CSRF token.
pub async fn login(
    State(app): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Body(body): Body<LoginBody>,
) -> Result<Response> {
    let from = remote(Some(addr));
    let username = body.username.trim().to_string();
    let now = ids::now_ms();
    let (name, who) = (username.clone(), from.clone());
    let checked = app
        .db
        .write(move |tx| {
            let limits = limits(tx)?;
            throttle::check(tx, limits, &name, &who, now)?;
            let attempt = throttle::begin(tx, limits, &name, &who, now)?;
            Ok::<_, Error>((attempt, users::password_hash(tx, &name)?))
        })
        .await;
    let (attempt, found) = match checked {
        Ok(v) => v,
        Err(e) => {
            audit_error(&app, "anonymous", "login", &format!("user:{username}"), &e);
            return Err(e);
        }
    };
    let password_text = body.password;
    let stored = found
        .as_ref()
        .and_then(|(user, hash)| (!user.disabled).then(|| hash.clone()).flatten());
    let matches = tokio::task::spawn_blocking(move || match stored {
        Some(hash) => password::verify(&password_text, &hash),
        None => {
            // Same work for unknown users, so timing does not tell which names exist.
            let _ = password::verify(&password_text, password::decoy());
            false
        }
    })
    .await
    .unwrap_or(false);
    let user = found.map(|(user, _)| user).filter(|_| matches);
    let name = username.clone();
    let session = match &user {
        Some(user) => {
            let id = user.id.clone();
            Some(
                app.db
                    .write(move |tx| {
                        throttle::succeeded(tx, attempt, &name)?;
                        sessions::create(tx, &id, now)
                    })
                    .await?,
            )
        }
        None => None,
    };
    let (Some(user), Some(session)) = (user, session) else {
        app.metrics
            .login_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let e = tokens::unauthorized("wrong user name or password");
        audit_error(&app, "anonymous", "login", &format!("user:{username}"), &e);
        return Err(e);
    };
    app.audit(Event::now(
        &user.id,
        "login",
        format!("user:{}", user.id),
        Outcome::Ok,
        json!({"remote": from}),
    ));
    let secure = if app.api_tls { "; Secure" } else { "" };
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        sessions::COOKIE,
        session.id,
        sessions::TTL_MS / 1000
    );
    let mut response = ok(json!({
        "user": user,
        "csrf_token": session.csrf,
        "expires_at": ids::rfc3339(session.expires_at),
    }));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /v1/logout`: ends the cookie's session (a no-op for tokens).
pub async fn logout(
    State(app): State<Shared>,
    Caller(caller): Caller,
    headers: HeaderMap,
) -> Result<Response> {
    let cookie = crate::api::caller::session_cookie(&headers);
    if let Some(cookie) = cookie {
        app.db
            .write(move |tx| sessions::delete(tx, &cookie))
            .await?;
    }
    app.audit(Event::now(
        &caller.user_id,
        "logout",
        format!("user:{}", caller.user_id),
        Outcome::Ok,
        json!({}),
    ));
    let mut response = ok(json!({"logged_out": true}));
    let clear = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        sessions::COOKIE
    );
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /v1/me`: who am I, and (for sessions) the CSRF token.
pub async fn me(State(app): State<Shared>, Caller(caller): Caller) -> Result<Response> {
    let id = caller.user_id.clone();
    let user = read(&app, &caller, "user.read", "me", move |conn, _| {
        users::get(conn, &id)?.ok_or_else(|| Error::not_found("user"))
    })
    .await?;
    let (via, csrf) = match &caller.via {
        Via::Token { write, .. } => (if *write { "token" } else { "token (read-only)" }, None),
        Via::Session { csrf } => ("session", Some(csrf.clone())),
    };
    Ok(ok(json!({"user": user, "via": via, "csrf_token": csrf})))
}

/// `GET /v1/tokens`
pub async fn list_tokens(State(app): State<Shared>, Caller(caller): Caller) -> Result<Response> {
    Ok(ok(read(
        &app,
        &caller,
        "token.list",
        "tokens",
        tokens::list,
    )
    .await?))
}

/// `POST /v1/tokens`
pub async fn create_token(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Body(body): Body<tokens::NewToken>,
) -> Result<Response> {
    let made = mutate(
        &app,
        &caller,
        "token.create",
        "tokens",
        |t: &tokens::Created| {
            (
                format!("token:{}", t.info.id),
                json!({"name": t.info.name, "scopes": t.info.scopes}),
            )
        },
        move |tx, who| tokens::create(tx, &who.user_id, &body),
    )
    .await?;
    Ok(created(made))
}

/// `DELETE /v1/tokens/{id}`
pub async fn revoke_token(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let resource = format!("token:{id}");
    let revoked = mutate(
        &app,
        &caller,
        "token.revoke",
        &resource,
        |t: &tokens::TokenInfo| (format!("token:{}", t.id), json!({"user_id": t.user_id})),
        move |tx, who| tokens::revoke(tx, who, &id),
    )
    .await?;
    Ok(ok(revoked))
}
