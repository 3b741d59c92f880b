//! `/v1/clients`: superadmins create clients (each with a one-time enrollment URI), rename and
//! revoke them; users see the clients they hold grants on. Identity is always the id.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::api::{Body, Caller, created, mutate, ok, read};
use crate::app::Shared;
use crate::error::Result;
use crate::model::clients::{self, Client, Enrollment, NewClient};
use crate::model::settings;

fn ttl_ms(conn: &rusqlite::Connection) -> Result<i64> {
    Ok(i64::try_from(settings::get(conn, "enrollment.ttl_secs")?).unwrap_or(86_400) * 1000)
}

fn connected(app: &Shared, mut c: Client) -> Client {
    c.connected = app.hub.is_connected(&c.id);
    c
}

/// `GET /v1/clients`
pub async fn list(State(app): State<Shared>, Caller(caller): Caller) -> Result<Response> {
    let found = read(&app, &caller, "client.list", "clients", |conn, who| {
        clients::list(conn, who)
    })
    .await?;
    Ok(ok(found
        .into_iter()
        .map(|c| connected(&app, c))
        .collect::<Vec<_>>()))
}

/// `POST /v1/clients`: a new client and its enrollment URI (shown once).
pub async fn create(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Body(body): Body<NewClient>,
) -> Result<Response> {
    let (public, pin) = (app.public_control.clone(), app.pin.clone());
    let (client, enrollment) = mutate(
        &app,
        &caller,
        "client.create",
        "clients",
        |(c, e): &(Client, Enrollment)| {
            (
                format!("client:{}", c.id),
                json!({"name": c.name, "expires_at": crate::ids::rfc3339(e.expires_at)}),
            )
        },
        move |tx, who| {
            who.require_superadmin("create clients")?;
            let ttl = ttl_ms(tx)?;
            clients::create(tx, who, &body, ttl, &public, &pin)
        },
    )
    .await?;
    Ok(created(json!({"client": client, "enrollment": enrollment})))
}

/// `GET /v1/clients/{id}`
pub async fn show(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let resource = format!("client:{id}");
    let found = read(&app, &caller, "client.read", &resource, move |conn, who| {
        clients::get_visible(conn, who, &id)
    })
    .await?;
    Ok(ok(connected(&app, found)))
}

/// `PATCH /v1/clients/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    name: String,
}

/// `PATCH /v1/clients/{id}`: rename (cosmetic).
pub async fn rename(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(body): Body<Rename>,
) -> Result<Response> {
    let resource = format!("client:{id}");
    let client = mutate(
        &app,
        &caller,
        "client.rename",
        &resource,
        |c: &Client| (format!("client:{}", c.id), json!({"name": c.name})),
        move |tx, who| {
            who.require_superadmin("rename clients")?;
            clients::rename(tx, &id, &body.name)
        },
    )
    .await?;
    Ok(ok(connected(&app, client)))
}

/// `DELETE /v1/clients/{id}`: revoke; its session ends at once.
pub async fn revoke(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let resource = format!("client:{id}");
    let client = mutate(
        &app,
        &caller,
        "client.revoke",
        &resource,
        |c: &Client| (format!("client:{}", c.id), json!({})),
        move |tx, who| {
            who.require_superadmin("revoke clients")?;
            clients::revoke(tx, &id)
        },
    )
    .await?;
    app.hub.revoke(&client.id);
    Ok(ok(client))
}

/// `POST /v1/clients/{id}/enrollments` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollBody {
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// `POST /v1/clients/{id}/enrollments`: a fresh one-time code for an existing client.
pub async fn enroll(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response> {
    let ttl_secs = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<EnrollBody>(&bytes)
            .map_err(|e| {
                crate::error::Error::bad_request(
                    "invalid_body",
                    format!("the request body is not valid here: {e}"),
                )
            })?
            .ttl_secs
    };
    let resource = format!("client:{id}");
    let (public, pin) = (app.public_control.clone(), app.pin.clone());
    let enrollment = mutate(
        &app,
        &caller,
        "client.enroll_code",
        &resource,
        |e: &Enrollment| {
            (
                format!("client:{}", e.client_id),
                json!({"expires_at": crate::ids::rfc3339(e.expires_at)}),
            )
        },
        move |tx, who| {
            who.require_superadmin("create enrollment codes")?;
            let ttl = ttl_ms(tx)?;
            clients::enroll(tx, who, &id, ttl_secs, ttl, &public, &pin)
        },
    )
    .await?;
    Ok(created(enrollment))
}
