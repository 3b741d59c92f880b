//! `/v1/users`: superadmins manage users; everyone may see and change their own.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::json;

use crate::api::{Body, Caller, created, mutate, ok, read};
use crate::app::Shared;
use crate::error::Result;
use crate::model::users::{self, NewUser, User, UserPatch};

/// `GET /v1/users`
pub async fn list(State(app): State<Shared>, Caller(caller): Caller) -> Result<Response> {
    Ok(ok(
        read(&app, &caller, "user.list", "users", users::list).await?
    ))
}

/// `POST /v1/users`
pub async fn create(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Body(body): Body<NewUser>,
) -> Result<Response> {
    let user = mutate(
        &app,
        &caller,
        "user.create",
        "users",
        |u: &User| {
            (
                format!("user:{}", u.id),
                json!({"username": u.username, "role": u.role}),
            )
        },
        move |tx, who| {
            who.require_superadmin("create users")?;
            users::create(tx, &body)
        },
    )
    .await?;
    Ok(created(user))
}

/// `GET /v1/users/{id}` (id or user name)
pub async fn show(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let resource = format!("user:{id}");
    Ok(ok(read(
        &app,
        &caller,
        "user.read",
        &resource,
        move |conn, who| users::get_visible(conn, who, &id),
    )
    .await?))
}

/// `PATCH /v1/users/{id}`
pub async fn update(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(patch): Body<UserPatch>,
) -> Result<Response> {
    let resource = format!("user:{id}");
    let changed: Vec<&str> = [
        patch.display_name.as_ref().map(|_| "display_name"),
        patch.disabled.map(|_| "disabled"),
        patch.role.map(|_| "role"),
        patch.password.as_ref().map(|_| "password"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let details = json!({"changed": changed});
    let user = mutate(
        &app,
        &caller,
        "user.update",
        &resource,
        move |u: &User| (format!("user:{}", u.id), details),
        move |tx, who| users::update(tx, who, &id, &patch),
    )
    .await?;
    Ok(ok(user))
}

/// `DELETE /v1/users/{id}`: the user, their tokens, grants and rules.
pub async fn remove(
    State(app): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let resource = format!("user:{id}");
    let (user, clients) = mutate(
        &app,
        &caller,
        "user.delete",
        &resource,
        |(u, c): &(User, Vec<String>)| {
            (
                format!("user:{}", u.id),
                json!({"username": u.username, "clients_changed": c}),
            )
        },
        move |tx, who| {
            who.require_superadmin("delete users")?;
            users::delete(tx, &id)
        },
    )
    .await?;
    for client in &clients {
        app.hub.notify(client);
    }
    Ok(ok(json!({"deleted": user})))
}
