//! The operator HTTP API end to end, through the real binary on loopback: onboarding, password
//! login with session cookies and CSRF, login throttling, RBAC and tenant isolation (with every
//! refusal in the audit log under the right actor), rule validation and port conflicts, grant
//! revocation, audit paging while other requests write, and the metrics endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Http, PASSWORD, Server, code};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The query string that selects the paged (envelope) shape of `GET /v1/audit` from the start.
const FROM_EPOCH: &str = "since=1970-01-01T00:00:00Z";

/// A server with its first superadmin.
struct Env {
    _dir: TempDir,
    server: Server,
    http: Http,
    admin: String,
}

/// A browser session: the cookie value and its CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

impl Session {
    /// The request headers of this session, with `csrf` as the `X-CSRF-Token` (if any).
    fn headers(&self, csrf: Option<&str>) -> Vec<(String, String)> {
        let mut headers = vec![(
            "Cookie".to_string(),
            format!("portunus_session={}", self.cookie),
        )];
        if let Some(csrf) = csrf {
            headers.push(("X-CSRF-Token".to_string(), csrf.to_string()));
        }
        headers
    }
}

/// The value of a response header, by case-insensitive name.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
        .to_string()
}

/// The `id` fields of a JSON array, sorted.
fn ids(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|v| text(&v["id"]))
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("data"));
        let admin = server.bootstrap();
        let http = server.http();
        Env {
            _dir: dir,
            server,
            http,
            admin,
        }
    }

    fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        self.http.call(method, path, Some(token), body)
    }

    /// A request that must answer 2xx; its body.
    fn ok(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let (status, out) = self.call(method, path, token, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {out}"
        );
        out
    }

    /// A user created by the admin (with the common password, or none); their id.
    fn user(&self, name: &str, with_password: bool) -> String {
        let mut body = json!({ "username": name });
        if with_password {
            body["password"] = json!(PASSWORD);
        }
        let (status, out) = self.call("POST", "/v1/users", &self.admin, Some(body));
        assert_eq!(status, 201, "{out}");
        assert_eq!(out["username"], name);
        assert_eq!(out["role"], "user");
        assert!(out.get("password_hash").is_none(), "{out}");
        text(&out["id"])
    }

    /// A client created by the admin; its id.
    fn client(&self, name: &str) -> String {
        let (status, out) = self.call(
            "POST",
            "/v1/clients",
            &self.admin,
            Some(json!({ "name": name })),
        );
        assert_eq!(status, 201, "{out}");
        let id = text(&out["client"]["id"]);
        assert_eq!(out["client"]["state"], "pending");
        assert_eq!(out["enrollment"]["client_id"], id.as_str());
        let uri = text(&out["enrollment"]["uri"]);
        assert!(uri.starts_with("portunus://"), "{uri}");
        assert!(uri.contains(&text(&out["enrollment"]["code"])), "{uri}");
        id
    }

    /// A grant created by the admin; its id.
    fn grant(&self, user: &str, client: &str, ports: &str, protocols: &str) -> String {
        let (status, out) = self.call(
            "POST",
            "/v1/grants",
            &self.admin,
            Some(json!({ "user": user, "client_id": client, "ports": ports, "protocols": protocols })),
        );
        assert_eq!(status, 201, "{out}");
        text(&out["id"])
    }

    fn generation(&self, client: &str) -> i64 {
        self.ok("GET", &format!("/v1/clients/{client}"), &self.admin, None)["generation"]
            .as_i64()
            .unwrap()
    }

    /// `POST /v1/login`: (status, body, response headers).
    fn login_raw(&self, username: &str, password: &str) -> (u16, Value, Vec<(String, String)>) {
        self.http.raw(
            "POST",
            "/v1/login",
            &[],
            Some(json!({ "username": username, "password": password })),
        )
    }

    /// A password login that must succeed.
    fn login(&self, username: &str) -> Session {
        let (status, body, headers) = self.login_raw(username, PASSWORD);
        assert_eq!(status, 200, "{body}");
        let cookie = header(&headers, "set-cookie").expect("no Set-Cookie");
        let value = cookie
            .split(';')
            .next()
            .and_then(|pair| pair.trim().strip_prefix("portunus_session="))
            .unwrap_or_else(|| panic!("unexpected cookie: {cookie}"));
        Session {
            cookie: value.to_string(),
            csrf: text(&body["csrf_token"]),
        }
    }

    /// Logs in as `username` and creates an API token through the session: (secret, id).
    fn token_for(&self, username: &str) -> (String, String) {
        let session = self.login(username);
        let (status, out, _) = self.http.raw(
            "POST",
            "/v1/tokens",
            &session.headers(Some(&session.csrf)),
            Some(json!({ "name": format!("{username}'s token") })),
        );
        assert_eq!(status, 201, "{out}");
        assert_eq!(out["scopes"], "read,write");
        (text(&out["token"]), text(&out["id"]))
    }

    /// Every audit row `token` may see, following `next_cursor` with pages of `limit`.
    fn audit(&self, token: &str, limit: u32) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100_000 {
            let mut path = format!("/v1/audit?{FROM_EPOCH}&limit={limit}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.ok("GET", &path, token, None);
            let entries = page["entries"].as_array().unwrap();
            assert_eq!(page["count"].as_u64().unwrap() as usize, entries.len());
            assert!(entries.len() <= limit as usize);
            rows.extend(entries.iter().cloned());
            match page.get("next_cursor") {
                Some(next) => {
                    assert_eq!(
                        entries.len(),
                        limit as usize,
                        "a page before the last is full"
                    );
                    cursor = Some(text(next));
                }
                None => return rows,
            }
        }
        panic!("audit paging did not end");
    }

    /// A rule push with the given token: (status, body).
    fn push(&self, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", "/v1/rules", token, Some(body))
    }
}

/// A minimal rule body.
fn rule(client: &str, listen: &str, protocol: &str) -> Value {
    json!({
        "client_id": client,
        "listen": listen,
        "protocol": protocol,
        "targets": [{ "host": "10.0.0.5", "port": 80 }],
    })
}

// 1. Onboarding ---------------------------------------------------------------------------------

#[test]
fn onboarding_takes_the_printed_setup_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let http = server.http();
    let setup_token = server
        .setup_token
        .clone()
        .expect("a fresh server prints a setup token");

    // Nothing works before setup.
    let (status, body) = http.call("GET", "/v1/me", None, None);
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");

    // A wrong setup token creates nobody.
    let (status, body) = http.call(
        "POST",
        "/v1/setup",
        None,
        Some(json!({"setup_token": "pst_wrong", "username": "mallory", "password": PASSWORD})),
    );
    assert_eq!(
        (status, code(&body)),
        (401, "invalid_setup_token"),
        "{body}"
    );
    let (status, body) = http.call(
        "POST",
        "/v1/login",
        None,
        Some(json!({"username": "mallory", "password": PASSWORD})),
    );
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");

    // A weak password is refused, and does not use the token up.
    let (status, body) = http.call(
        "POST",
        "/v1/setup",
        None,
        Some(json!({"setup_token": setup_token, "username": "admin", "password": "short"})),
    );
    assert_eq!((status, code(&body)), (400, "weak_password"), "{body}");
    let (status, body) = http.call(
        "POST",
        "/v1/setup",
        None,
        Some(json!({"setup_token": setup_token, "username": "admin", "password": "123456789"})),
    );
    assert_eq!(
        (status, code(&body)),
        (400, "weak_password"),
        "9 characters: {body}"
    );

    // Unknown fields are refused rather than ignored.
    let (status, body) = http.call(
        "POST",
        "/v1/setup",
        None,
        Some(json!({"setup_token": setup_token, "username": "admin", "password": PASSWORD, "role": "user"})),
    );
    assert_eq!((status, code(&body)), (400, "invalid_body"), "{body}");

    // The right token: a superadmin and a working API token.
    let (status, body) = http.call(
        "POST",
        "/v1/setup",
        None,
        Some(json!({"setup_token": setup_token, "username": "admin", "password": PASSWORD})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["user"]["role"], "superadmin");
    let token = text(&body["token"]);
    let (status, me) = http.call("GET", "/v1/me", Some(&token), None);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["username"], "admin");
    assert_eq!(me["user"]["id"], body["user"]["id"]);
    assert_eq!(me["via"], "token");

    // Only the admin exists: the refused attempts created no one.
    let (status, users) = http.call("GET", "/v1/users", Some(&token), None);
    assert_eq!(status, 200, "{users}");
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin"]);

    // A second setup, with the same token or any other, is refused.
    for attempt in [setup_token.as_str(), "pst_wrong"] {
        let (status, body) = http.call(
            "POST",
            "/v1/setup",
            None,
            Some(json!({"setup_token": attempt, "username": "second", "password": PASSWORD})),
        );
        assert_eq!((status, code(&body)), (409, "already_set_up"), "{body}");
    }
    let (_, users) = http.call("GET", "/v1/users", Some(&token), None);
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");

    // The password given at setup logs in.
    let (status, body) = http.call(
        "POST",
        "/v1/login",
        None,
        Some(json!({"username": "admin", "password": PASSWORD})),
    );
    assert_eq!(status, 200, "{body}");
}

// 2. Login, sessions and CSRF ---------------------------------------------------------------------

#[test]
fn sessions_use_a_strict_http_only_cookie_and_csrf_on_changes() {
    let env = Env::new();
    let http = &env.http;

    // Unknown users and wrong passwords look the same.
    let (status, wrong, headers) = env.login_raw("admin", "wrong password!");
    assert_eq!((status, code(&wrong)), (401, "unauthorized"), "{wrong}");
    assert!(header(&headers, "set-cookie").is_none());
    let (status, unknown, _) = env.login_raw("nobody", PASSWORD);
    assert_eq!((status, code(&unknown)), (401, "unauthorized"), "{unknown}");
    assert_eq!(wrong["error"]["message"], unknown["error"]["message"]);

    let (status, body, headers) = env.login_raw("admin", PASSWORD);
    assert_eq!(status, 200, "{body}");
    let cookie = header(&headers, "set-cookie")
        .expect("Set-Cookie")
        .to_string();
    assert!(cookie.starts_with("portunus_session="), "{cookie}");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attributes.contains(&"HttpOnly"), "{cookie}");
    assert!(attributes.contains(&"SameSite=Strict"), "{cookie}");
    assert!(attributes.contains(&"Path=/"), "{cookie}");
    let csrf = text(&body["csrf_token"]);
    assert!(!csrf.is_empty());
    assert_eq!(body["user"]["username"], "admin");
    let value = attributes[0].strip_prefix("portunus_session=").unwrap();
    assert!(!value.is_empty());
    assert_ne!(value, csrf, "the CSRF token is not the session secret");
    let session = Session {
        cookie: value.to_string(),
        csrf: csrf.clone(),
    };

    // The cookie authenticates reads, without any CSRF header.
    let (status, me, _) = http.raw("GET", "/v1/me", &session.headers(None), None);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["via"], "session");
    assert_eq!(me["user"]["username"], "admin");
    assert_eq!(me["csrf_token"], csrf.as_str());

    // Changes through the cookie need the CSRF token, exactly.
    for presented in [None, Some("csrf_wrong"), Some("")] {
        let (status, body, _) = http.raw(
            "POST",
            "/v1/tokens",
            &session.headers(presented),
            Some(json!({"name": "forged"})),
        );
        assert_eq!(
            (status, code(&body)),
            (403, "csrf_failed"),
            "{presented:?}: {body}"
        );
    }
    let (status, made, _) = http.raw(
        "POST",
        "/v1/tokens",
        &session.headers(Some(&csrf)),
        Some(json!({"name": "from the browser"})),
    );
    assert_eq!(status, 201, "{made}");
    let token = text(&made["token"]);

    // No token was made by the refused requests.
    let tokens = env.ok("GET", "/v1/tokens", &env.admin, None);
    let names: BTreeSet<&str> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains("forged"), "{tokens}");
    assert!(names.contains("from the browser"), "{tokens}");

    // CSRF refusals are audited as denials.
    let denied_csrf = env
        .audit(&env.admin, 1000)
        .into_iter()
        .filter(|r| r["outcome"] == "denied" && r["details"]["code"] == "csrf_failed")
        .map(|r| r["actor"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(denied_csrf.len(), 3);
    let me_id = me["user"]["id"].as_str().unwrap();
    assert!(
        denied_csrf.iter().all(|actor| actor == me_id),
        "a CSRF refusal names the session's user: {denied_csrf:?}"
    );

    // Logout needs the CSRF token too, then the cookie is dead and cleared.
    let (status, body, _) = http.raw("POST", "/v1/logout", &session.headers(None), None);
    assert_eq!((status, code(&body)), (403, "csrf_failed"), "{body}");
    let (status, body, headers) =
        http.raw("POST", "/v1/logout", &session.headers(Some(&csrf)), None);
    assert_eq!(status, 200, "{body}");
    let cleared = header(&headers, "set-cookie").expect("logout clears the cookie");
    assert!(cleared.starts_with("portunus_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let (status, body, _) = http.raw("GET", "/v1/me", &session.headers(None), None);
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
    let (status, body, _) = http.raw(
        "POST",
        "/v1/tokens",
        &session.headers(Some(&csrf)),
        Some(json!({})),
    );
    assert_eq!(status, 401, "{body}");

    // The API token made through the session outlives it.
    let (status, me) = http.call("GET", "/v1/me", Some(&token), None);
    assert_eq!(status, 200, "{me}");

    // A garbage cookie is simply unauthenticated.
    let bogus = Session {
        cookie: "pss_nope".into(),
        csrf: String::new(),
    };
    let (status, _, _) = http.raw("GET", "/v1/me", &bogus.headers(None), None);
    assert_eq!(status, 401);
}

// 3. Login throttling -----------------------------------------------------------------------------

#[test]
fn failed_logins_are_throttled_per_user_and_per_address() {
    let env = Env::new();
    env.user("carol", true);
    env.user("dave", true);

    for attempt in 1..=5 {
        let (status, body, _) = env.login_raw("carol", "not carol's password");
        assert_eq!(
            (status, code(&body)),
            (401, "unauthorized"),
            "attempt {attempt}: {body}"
        );
    }
    // The sixth attempt is refused before the password is even looked at.
    let (status, body, headers) = env.login_raw("carol", PASSWORD);
    assert_eq!((status, code(&body)), (429, "too_many_attempts"), "{body}");
    let retry: u64 = header(&headers, "retry-after")
        .expect("429 carries Retry-After")
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    assert!(header(&headers, "set-cookie").is_none());

    // The limit is per user: dave, from the same address, is not affected (5 < 20 per address).
    let (status, body, _) = env.login_raw("dave", PASSWORD);
    assert_eq!(status, 200, "{body}");

    // The throttled attempt is audited as a denial; the failures as denials too.
    let rows = env.audit(&env.admin, 1000);
    let throttled = rows
        .iter()
        .filter(|r| r["action"] == "login" && r["details"]["code"] == "too_many_attempts")
        .count();
    assert_eq!(throttled, 1);
    let failed = rows
        .iter()
        .filter(|r| {
            r["action"] == "login"
                && r["outcome"] == "denied"
                && r["details"]["code"] == "unauthorized"
        })
        .count();
    assert_eq!(failed, 5);

    // Settings are checked and applied all or nothing.
    let (status, body) = env.call(
        "PATCH",
        "/v1/settings",
        &env.admin,
        Some(json!({"login.max_failures": 0})),
    );
    assert_eq!((status, code(&body)), (400, "invalid_setting"), "{body}");
    let (status, body) = env.call(
        "PATCH",
        "/v1/settings",
        &env.admin,
        Some(json!({"login.max_failures_per_address": 6, "login.bogus": 1})),
    );
    assert_eq!((status, code(&body)), (400, "unknown_setting"), "{body}");
    let settings = env.ok("GET", "/v1/settings", &env.admin, None);
    assert_eq!(settings["login.max_failures_per_address"], 20, "{settings}");

    // Lower the per-address limit to 6: one more failure (any user) closes the address.
    let set = env.ok(
        "PATCH",
        "/v1/settings",
        &env.admin,
        Some(json!({"login.max_failures_per_address": 6})),
    );
    assert_eq!(set["login.max_failures_per_address"], 6, "{set}");
    let (status, _, _) = env.login_raw("dave", "not dave's password");
    assert_eq!(status, 401);
    let (status, body, headers) = env.login_raw("dave", PASSWORD);
    assert_eq!((status, code(&body)), (429, "too_many_attempts"), "{body}");
    assert!(header(&headers, "retry-after").is_some());

    // Raising the limits lets carol in at once, and her success clears her failures.
    env.ok(
        "PATCH",
        "/v1/settings",
        &env.admin,
        Some(json!({"login.max_failures": 10, "login.max_failures_per_address": 100})),
    );
    let (status, body, _) = env.login_raw("carol", PASSWORD);
    assert_eq!(status, 200, "{body}");
    env.ok(
        "PATCH",
        "/v1/settings",
        &env.admin,
        Some(json!({"login.max_failures": 5})),
    );
    let (status, body, _) = env.login_raw("carol", PASSWORD);
    assert_eq!(
        status, 200,
        "carol's earlier failures no longer count: {body}"
    );
}

/// Guesses sent in parallel must not all pass the throttle before any of them is counted: a
/// burst of N concurrent wrong passwords gets at most `login.max_failures` password checks.
#[test]
fn parallel_wrong_passwords_get_no_more_guesses_than_the_limit() {
    let env = Env::new();
    env.user("grace", true);
    const GUESSES: usize = 12;
    let start = std::sync::Barrier::new(GUESSES);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..GUESSES)
            .map(|i| {
                let (api, start) = (env.server.api.clone(), &start);
                scope.spawn(move || {
                    let http = Http::new(&api);
                    start.wait();
                    let guess =
                        json!({"username": "grace", "password": format!("guess number {i}")});
                    http.call("POST", "/v1/login", None, Some(guess)).0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        checked <= 5,
        "{checked} of {GUESSES} parallel guesses had their password checked; the limit is 5 \
         ({statuses:?})"
    );
}

// 4. RBAC and tenant isolation --------------------------------------------------------------------

/// One tenant of the isolation matrix.
struct Tenant {
    name: &'static str,
    id: String,
    token: String,
    token_id: String,
    client: String,
    grant: String,
    rule: String,
}

/// A refusal the audit log must hold.
#[derive(Debug)]
struct Denial {
    actor: String,
    action: String,
    resource: String,
    code: &'static str,
}

/// A request that must be refused, written `METHOD PATH ACTION RESOURCE`: the request, and the
/// audit action and resource its refusal is recorded under.
type Refusal = (String, Option<Value>);

/// Refusals of requests without a body.
fn bare<const N: usize>(specs: [String; N]) -> Vec<Refusal> {
    specs.into_iter().map(|spec| (spec, None)).collect()
}

impl Env {
    /// Sends each refusal as `who` with `token`, expects 403 `wanted`, and remembers the audit
    /// row it must leave.
    fn refused(
        &self,
        denials: &mut Vec<Denial>,
        who: &Tenant,
        token: &str,
        wanted: &'static str,
        cases: Vec<Refusal>,
    ) {
        for (spec, body) in cases {
            let parts: Vec<&str> = spec.split_whitespace().collect();
            let [method, path, action, resource] = parts[..] else {
                panic!("bad refusal spec {spec:?}");
            };
            let (status, out) = self.call(method, path, token, body);
            assert_eq!(
                (status, code(&out)),
                (403, wanted),
                "{} {method} {path}: {out}",
                who.name
            );
            denials.push(Denial {
                actor: who.id.clone(),
                action: action.to_string(),
                resource: resource.to_string(),
                code: wanted,
            });
        }
    }
}

/// Everything `me` may and may not do next to `other`.
fn isolation(env: &Env, me: &Tenant, other: &Tenant, denials: &mut Vec<Denial>) {
    let t = me.token.as_str();

    // What they see: only their own.
    let me_body = env.ok("GET", "/v1/me", t, None);
    assert_eq!(me_body["user"]["id"], me.id.as_str());
    let clients = env.ok("GET", "/v1/clients", t, None);
    assert_eq!(ids(&clients), [me.client.as_str()]);
    let grants = env.ok("GET", "/v1/grants", t, None);
    assert_eq!(ids(&grants), [me.grant.as_str()]);
    assert!(
        grants
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["user_id"] == me.id.as_str())
    );
    assert_eq!(
        ids(&env.ok("GET", "/v1/rules", t, None)),
        [me.rule.as_str()]
    );
    assert_eq!(ids(&env.ok("GET", "/v1/users", t, None)), [me.id.as_str()]);
    let tokens = env.ok("GET", "/v1/tokens", t, None);
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["user_id"] == me.id.as_str())
    );
    assert!(ids(&tokens).contains(&me.token_id));
    for path in [
        format!("/v1/clients/{}", me.client),
        format!("/v1/rules/{}", me.rule),
        format!("/v1/rules?client_id={}", me.client),
        format!("/v1/users/{}", me.id),
        format!("/v1/users/{}", me.name),
        format!("/v1/grants?user={}", me.name),
        format!("/v1/users/{}/caps", me.id),
    ] {
        env.ok("GET", &path, t, None);
    }

    // The other tenant's things, read or changed.
    let (oc, or, og, ot) = (&other.client, &other.rule, &other.grant, &other.token_id);
    let (oid, oname, mc) = (&other.id, other.name, &me.client);
    env.refused(
        denials,
        me,
        t,
        "forbidden",
        bare([
            format!("GET /v1/clients/{oc} client.read client:{oc}"),
            format!("GET /v1/rules?client_id={oc} rule.list client:{oc}"),
            format!("GET /v1/rules/{or} rule.read rule:{or}"),
            format!("DELETE /v1/rules/{or} rule.delete rule:{or}"),
            format!("GET /v1/users/{oid} user.read user:{oid}"),
            format!("GET /v1/users/{oname} user.read user:{oname}"),
            format!("GET /v1/users/{oid}/caps caps.read user:{oid}"),
            format!("GET /v1/grants?user={oname} grant.list grants"),
            format!("DELETE /v1/grants/{og} grant.revoke grant:{og}"),
            format!("DELETE /v1/tokens/{ot} token.revoke token:{ot}"),
            format!("GET /v1/usage?client_id={oc}&user={oname} usage.read client:{oc}"),
            format!("GET /v1/quotas?user={oname} quota.list quotas"),
        ]),
    );
    let mut as_other = rule(mc, "8070", "tcp");
    as_other["owner"] = json!(oname);
    let push_on = |client: &str| format!("POST /v1/rules rule.create client:{client}");
    let patch_other = format!("PATCH /v1/users/{oid} user.update user:{oid}");
    env.refused(
        denials,
        me,
        t,
        "forbidden",
        vec![
            (push_on(oc), Some(rule(oc, "9050", "tcp"))),
            (push_on(oc), Some(rule(oc, "8050", "tcp"))),
            (push_on(mc), Some(as_other)),
            (patch_other.clone(), Some(json!({"display_name": "x"}))),
            (patch_other, Some(json!({"password": PASSWORD}))),
        ],
    );
    // Nothing of the other's was touched.
    env.ok("GET", &format!("/v1/rules/{or}"), &env.admin, None);
    assert!(ids(&env.ok("GET", "/v1/grants", &env.admin, None)).contains(og));
    let (status, _) = env.call("GET", "/v1/me", &other.token, None);
    assert_eq!(status, 200, "{}'s token survived", other.name);
    let theirs = env.ok("GET", &format!("/v1/users/{oid}"), &env.admin, None);
    assert_eq!(theirs["display_name"], "");

    // What only a superadmin may do, even to their own things.
    let (mid, mname, mg) = (&me.id, me.name, &me.grant);
    env.refused(
        denials,
        me,
        t,
        "forbidden",
        bare([
            format!("POST /v1/clients/{mc}/enrollments client.enroll_code client:{mc}"),
            format!("DELETE /v1/clients/{oc} client.revoke client:{oc}"),
            format!("DELETE /v1/clients/{mc} client.revoke client:{mc}"),
            format!("DELETE /v1/grants/{mg} grant.revoke grant:{mg}"),
            "GET /v1/settings settings.read settings".into(),
            format!("DELETE /v1/users/{mid} user.delete user:{mid}"),
        ]),
    );
    let patch_me = format!("PATCH /v1/users/{mid} user.update user:{mid}");
    let grant = json!({"user": mname, "client_id": oc, "ports": "1-65535"});
    let quota = json!({"user": mname, "client_id": mc, "monthly_bytes": null});
    env.refused(
        denials,
        me,
        t,
        "forbidden",
        vec![
            (
                "POST /v1/users user.create users".into(),
                Some(json!({"username": "friend"})),
            ),
            (
                "POST /v1/clients client.create clients".into(),
                Some(json!({"name": "mine"})),
            ),
            (
                format!("PATCH /v1/clients/{mc} client.rename client:{mc}"),
                Some(json!({"name": "x"})),
            ),
            ("POST /v1/grants grant.create grants".into(), Some(grant)),
            (
                "PATCH /v1/settings settings.update settings".into(),
                Some(json!({"login.max_failures": 1000})),
            ),
            (
                format!("PUT /v1/users/{mid}/caps caps.set user:{mid}"),
                Some(json!({"max_connections": 5})),
            ),
            (format!("PUT /v1/quotas quota.set client:{mc}"), Some(quota)),
            (patch_me.clone(), Some(json!({"role": "superadmin"}))),
            (patch_me, Some(json!({"disabled": true}))),
        ],
    );
    // They are still an ordinary, enabled user, and nothing was created or revoked.
    let mine = env.ok("GET", &format!("/v1/users/{mid}"), &env.admin, None);
    assert_eq!(
        (&mine["role"], &mine["disabled"]),
        (&json!("user"), &json!(false))
    );
    let everyone = env.ok("GET", "/v1/users", &env.admin, None);
    assert_eq!(everyone.as_array().unwrap().len(), 3, "{everyone}");
    for client in [mc, oc] {
        let found = env.ok("GET", &format!("/v1/clients/{client}"), &env.admin, None);
        assert_eq!(found["state"], "pending", "{found}");
    }
    assert_eq!(
        env.ok("GET", "/v1/clients", &env.admin, None)
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        env.ok("GET", "/v1/settings", &env.admin, None)["login.max_failures"],
        5
    );
}

#[test]
fn tenants_see_and_change_only_their_own_and_every_refusal_is_audited() {
    let env = Env::new();
    let alice_id = env.user("alice", true);
    let bob_id = env.user("bob", true);
    let client_a = env.client("edge-a");
    let client_b = env.client("edge-b");
    let grant_a = env.grant("alice", &client_a, "8000-8100", "tcp");
    let grant_b = env.grant(&bob_id, &client_b, "9000-9100", "tcp+udp");
    let (alice_token, alice_token_id) = env.token_for("alice");
    let (bob_token, bob_token_id) = env.token_for("bob");

    // Each pushes a rule within their grant; it is theirs.
    let (status, rule_a) = env.push(&alice_token, rule(&client_a, "8080", "tcp"));
    assert_eq!(status, 201, "{rule_a}");
    assert_eq!(rule_a["owner_id"], alice_id.as_str());
    let (status, rule_b) = env.push(&bob_token, rule(&client_b, "9090", "udp"));
    assert_eq!(status, 201, "{rule_b}");
    assert_eq!(rule_b["owner_id"], bob_id.as_str());

    let alice = Tenant {
        name: "alice",
        id: alice_id.clone(),
        token: alice_token.clone(),
        token_id: alice_token_id,
        client: client_a.clone(),
        grant: grant_a,
        rule: text(&rule_a["id"]),
    };
    let bob = Tenant {
        name: "bob",
        id: bob_id.clone(),
        token: bob_token.clone(),
        token_id: bob_token_id,
        client: client_b.clone(),
        grant: grant_b,
        rule: text(&rule_b["id"]),
    };

    let mut denials = Vec::new();
    isolation(&env, &alice, &bob, &mut denials);
    isolation(&env, &bob, &alice, &mut denials);

    // Grants bound ports and protocols.
    let on_a = format!("POST /v1/rules rule.create client:{client_a}");
    let on_b = format!("POST /v1/rules rule.create client:{client_b}");
    env.refused(
        &mut denials,
        &alice,
        &alice_token,
        "grant_required",
        vec![
            (on_a.clone(), Some(rule(&client_a, "8101", "tcp"))),
            (on_a.clone(), Some(rule(&client_a, "7999", "tcp"))),
            (on_a.clone(), Some(rule(&client_a, "8095-8105", "tcp"))),
            (on_a.clone(), Some(rule(&client_a, "8050", "udp"))),
            (on_a.clone(), Some(rule(&client_a, "8050", "tcp+udp"))),
        ],
    );
    env.refused(
        &mut denials,
        &bob,
        &bob_token,
        "grant_required",
        vec![
            (on_b.clone(), Some(rule(&client_b, "9101", "udp"))),
            (on_b.clone(), Some(rule(&client_b, "8999-9001", "tcp+udp"))),
        ],
    );
    let (status, ok) = env.push(&bob_token, rule(&client_b, "9000-9100", "tcp"));
    assert_eq!(status, 201, "the whole grant, tcp: {ok}");
    let bob_wide = text(&ok["id"]);

    // A read-only token reads but changes nothing, not even by minting a stronger token.
    let (status, made) = env.call(
        "POST",
        "/v1/tokens",
        &alice_token,
        Some(json!({"name": "read only", "scopes": "read"})),
    );
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["scopes"], "read");
    let reader = text(&made["token"]);
    let me = env.ok("GET", "/v1/me", &reader, None);
    assert_eq!(me["via"], "token (read-only)");
    assert_eq!(
        ids(&env.ok("GET", "/v1/rules", &reader, None)),
        [alice.rule.as_str()]
    );
    let (ar, aid) = (&alice.rule, &alice_id);
    env.refused(
        &mut denials,
        &alice,
        &reader,
        "insufficient_scope",
        vec![
            (on_a.clone(), Some(rule(&client_a, "8081", "tcp"))),
            (format!("DELETE /v1/rules/{ar} rule.delete rule:{ar}"), None),
            (
                "POST /v1/tokens token.create tokens".into(),
                Some(json!({"name": "stronger"})),
            ),
            (
                format!("PATCH /v1/users/{aid} user.update user:{aid}"),
                Some(json!({"password": "a brand new password"})),
            ),
        ],
    );
    assert_eq!(
        ids(&env.ok("GET", "/v1/rules", &alice_token, None)),
        [alice.rule.as_str()]
    );

    // The admin sees everything.
    assert_eq!(
        ids(&env.ok("GET", "/v1/rules", &env.admin, None)),
        sorted(vec![alice.rule.clone(), bob.rule.clone(), bob_wide.clone()])
    );
    assert_eq!(
        ids(&env.ok("GET", "/v1/clients", &env.admin, None)),
        sorted(vec![client_a.clone(), client_b.clone()])
    );

    // Every refusal is in the audit log as `denied`, under the refused user, with its code.
    let rows = env.audit(&env.admin, 1000);
    for d in &denials {
        let found = rows.iter().any(|r| {
            r["actor"] == d.actor.as_str()
                && r["action"] == d.action
                && r["resource"] == d.resource.as_str()
                && r["outcome"] == "denied"
                && r["details"]["code"] == d.code
        });
        assert!(found, "no audit row for {d:?}");
    }
    for who in [&alice, &bob] {
        let denied = rows
            .iter()
            .filter(|r| r["actor"] == who.id.as_str() && r["outcome"] == "denied")
            .count();
        let expected = denials.iter().filter(|d| d.actor == who.id).count();
        assert_eq!(denied, expected, "{}: one audit row per refusal", who.name);
    }

    // Users see only their own audit rows, in both shapes.
    for who in [&alice, &bob] {
        let mine = env.audit(&who.token, 9);
        assert!(!mine.is_empty());
        assert!(
            mine.iter().all(|r| r["actor"] == who.id.as_str()),
            "{}: {mine:?}",
            who.name
        );
        let everything_of_theirs: Vec<&Value> = rows
            .iter()
            .filter(|r| r["actor"] == who.id.as_str())
            .collect();
        assert_eq!(mine.len(), everything_of_theirs.len(), "{}", who.name);
        assert!(
            mine.iter()
                .any(|r| r["action"] == "rule.create" && r["outcome"] == "ok")
        );
        let legacy = env.ok("GET", "/v1/audit?limit=1000", &who.token, None);
        let legacy = legacy.as_array().expect("the plain shape is an array");
        assert_eq!(legacy.len(), mine.len());
        assert!(legacy.iter().all(|r| r["actor"] == who.id.as_str()));
    }

    // A disabled user's token stops working at once, and works again once re-enabled.
    let changed = env.ok(
        "PATCH",
        &format!("/v1/users/{bob_id}"),
        &env.admin,
        Some(json!({"disabled": true})),
    );
    assert_eq!(changed["disabled"], true);
    let (status, body) = env.call("GET", "/v1/me", &bob_token, None);
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
    let (status, body) = env.push(&bob_token, rule(&client_b, "9001", "udp"));
    assert_eq!(status, 401, "{body}");
    let (status, body, _) = env.login_raw("bob", PASSWORD);
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
    let (status, _) = env.call("GET", "/v1/me", &alice_token, None);
    assert_eq!(status, 200, "alice is unaffected");
    env.ok(
        "PATCH",
        &format!("/v1/users/{bob_id}"),
        &env.admin,
        Some(json!({"disabled": false})),
    );
    let (status, _) = env.call("GET", "/v1/me", &bob_token, None);
    assert_eq!(status, 200);
}

// 5. Rule validation and port conflicts -----------------------------------------------------------

#[test]
fn malformed_rules_are_refused_and_overlapping_ports_conflict() {
    let env = Env::new();
    let client = env.client("edge");
    let before = env.generation(&client);

    let nine: Vec<Value> = (0..9)
        .map(|i| json!({"host": format!("10.0.0.{i}"), "port": 80}))
        .collect();
    let with = |patch: Value| {
        let mut body = rule(&client, "8080", "tcp");
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("port 0", with(json!({"listen": "0"})), "invalid_rule"),
        (
            "port 70000",
            with(json!({"listen": "70000"})),
            "invalid_rule",
        ),
        (
            "range up to 70000",
            with(json!({"listen": "65000-70000"})),
            "invalid_rule",
        ),
        (
            "1025 ports",
            with(json!({"listen": "10000-11024"})),
            "invalid_rule",
        ),
        (
            "reversed",
            with(json!({"listen": "9000-8000"})),
            "invalid_rule",
        ),
        (
            "not a port",
            with(json!({"listen": "eighty"})),
            "invalid_rule",
        ),
        ("negative", with(json!({"listen": "-5"})), "invalid_rule"),
        ("no targets", with(json!({"targets": []})), "invalid_rule"),
        (
            "nine targets",
            with(json!({"targets": nine})),
            "invalid_rule",
        ),
        (
            "bad protocol",
            with(json!({"protocol": "sctp"})),
            "invalid_rule",
        ),
        (
            "bad listen_addr",
            with(json!({"listen_addr": "not-an-ip"})),
            "invalid_rule",
        ),
        (
            "empty listen_addr",
            with(json!({"listen_addr": ""})),
            "invalid_rule",
        ),
        (
            "bad target host",
            with(json!({"targets": [{"host": "bad host!", "port": 80}]})),
            "invalid_rule",
        ),
        (
            "empty target host",
            with(json!({"targets": [{"host": " ", "port": 80}]})),
            "invalid_rule",
        ),
        (
            "target port 0",
            with(json!({"targets": [{"host": "10.0.0.5", "port": 0}]})),
            "invalid_rule",
        ),
        (
            "target range past 65535",
            with(json!({"listen": "8000-8001", "targets": [{"host": "10.0.0.5", "port": 65535}]})),
            "invalid_rule",
        ),
        (
            "target port 70000",
            with(json!({"targets": [{"host": "10.0.0.5", "port": 70000}]})),
            "invalid_body",
        ),
        (
            "bad proxy protocol",
            with(json!({"targets": [{"host": "10.0.0.5", "port": 80, "proxy_protocol": "v3"}]})),
            "invalid_body",
        ),
        (
            "zero cap",
            with(json!({"caps": {"max_connections": 0}})),
            "invalid_caps",
        ),
        (
            "control character in name",
            with(json!({"name": "a\u{7}b"})),
            "invalid_name",
        ),
        (
            "unknown field",
            with(json!({"lisen": "8080"})),
            "invalid_body",
        ),
        (
            "missing listen",
            json!({"client_id": client, "targets": [{"host": "10.0.0.5", "port": 80}]}),
            "invalid_body",
        ),
    ];
    for (what, body, wanted) in cases {
        let (status, out) = env.push(&env.admin, body);
        assert_eq!((status, code(&out)), (400, wanted), "{what}: {out}");
    }
    let (status, out) = env.push(&env.admin, rule("cli_nope", "8080", "tcp"));
    assert_eq!((status, code(&out)), (404, "not_found"), "{out}");

    // Nothing was created, and the client's desired state did not change.
    assert_eq!(env.ok("GET", "/v1/rules", &env.admin, None), json!([]));
    assert_eq!(env.generation(&client), before);

    // The widest rule (1024 ports) is fine; "both" is a spelling of tcp+udp.
    let (status, wide) = env.push(&env.admin, rule(&client, "20000-21023", "tcp"));
    assert_eq!(status, 201, "{wide}");
    assert_eq!(wide["listen"], json!({"start": 20000, "end": 21023}));
    assert_eq!(wide["listen_addr"], "0.0.0.0");
    assert_eq!(env.generation(&client), before + 1);
    let (status, both) = env.push(&env.admin, rule(&client, "30000", "both"));
    assert_eq!(status, 201, "{both}");
    assert_eq!(both["protocol"], "tcp+udp");

    // Overlaps with a competing transport on the same client conflict.
    let (status, tcp) = env.push(&env.admin, rule(&client, "7000", "tcp"));
    assert_eq!(status, 201, "{tcp}");
    let (status, udp) = env.push(&env.admin, rule(&client, "7000", "udp"));
    assert_eq!(status, 201, "tcp and udp may share a port: {udp}");
    let (status, adjacent) = env.push(&env.admin, rule(&client, "7001-7010", "tcp"));
    assert_eq!(status, 201, "{adjacent}");
    let mut v6 = rule(&client, "7500", "tcp");
    v6["listen_addr"] = json!("::");
    let (status, v6) = env.push(&env.admin, v6);
    assert_eq!(status, 201, "{v6}");
    assert_eq!(v6["listen_addr"], "::");
    let generation = env.generation(&client);
    let accepted = ids(&env.ok("GET", "/v1/rules", &env.admin, None));
    assert_eq!(accepted.len(), 6);
    for (listen, protocol) in [
        ("7000", "tcp"),
        ("7000", "udp"),
        ("7000", "tcp+udp"),
        ("6990-7000", "tcp"),
        ("7010-7020", "tcp"),
        ("6500-7400", "udp"),
        ("21023", "tcp"),
        ("19999-20000", "tcp+udp"),
        ("30000", "tcp"),
        ("30000", "udp"),
        ("7500", "tcp"),
    ] {
        let (status, out) = env.push(&env.admin, rule(&client, listen, protocol));
        assert_eq!(
            (status, code(&out)),
            (409, "port_conflict"),
            "{listen}/{protocol}: {out}"
        );
    }
    // A different listen_addr does not make the same port free.
    let mut loopback = rule(&client, "7000", "tcp");
    loopback["listen_addr"] = json!("127.0.0.1");
    let (status, out) = env.push(&env.admin, loopback);
    assert_eq!((status, code(&out)), (409, "port_conflict"), "{out}");
    // The same ports on another client are free.
    let other = env.client("edge-2");
    let (status, out) = env.push(&env.admin, rule(&other, "7000", "tcp+udp"));
    assert_eq!(status, 201, "{out}");

    assert_eq!(
        ids(&env.ok(
            "GET",
            &format!("/v1/rules?client_id={client}"),
            &env.admin,
            None
        )),
        accepted
    );
    assert_eq!(env.generation(&client), generation);

    // Conflicts cross owners: a user cannot take a port another user's rule listens on.
    let eve = env.user("eve", false);
    env.grant(&eve, &client, "7000-7100", "tcp+udp");
    let mut theirs = rule(&client, "7005", "tcp");
    theirs["owner"] = json!("eve");
    let (status, out) = env.push(&env.admin, theirs);
    assert_eq!((status, code(&out)), (409, "port_conflict"), "{out}");

    // A rule's caps may not exceed its owner's.
    let caps = env.ok(
        "PUT",
        &format!("/v1/users/{eve}/caps"),
        &env.admin,
        Some(json!({"max_connections": 10})),
    );
    assert_eq!(caps["caps"]["max_connections"], 10);
    let capped = |n: u32| {
        let mut body = rule(&client, "7050", "udp");
        body["owner"] = json!("eve");
        body["caps"] = json!({ "max_connections": n });
        body
    };
    let (status, out) = env.push(&env.admin, capped(11));
    assert_eq!((status, code(&out)), (400, "cap_exceeds_owner"), "{out}");
    let (status, out) = env.push(&env.admin, capped(10));
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["caps"]["max_connections"], 10);
    assert_eq!(out["owner_id"], eve.as_str());
    let generation = env.generation(&client);

    // Rules are removed by id; a removed or unknown rule is 404.
    let tcp_id = text(&tcp["id"]);
    let deleted = env.ok("DELETE", &format!("/v1/rules/{tcp_id}"), &env.admin, None);
    assert_eq!(deleted["deleted"]["id"], tcp_id.as_str());
    assert_eq!(env.generation(&client), generation + 1);
    for method in ["GET", "DELETE"] {
        let (status, out) = env.call(method, &format!("/v1/rules/{tcp_id}"), &env.admin, None);
        assert_eq!((status, code(&out)), (404, "not_found"), "{method}: {out}");
    }
    // The freed port can be used again.
    let (status, out) = env.push(&env.admin, rule(&client, "7000", "tcp"));
    assert_eq!(status, 201, "{out}");
}

/// A misspelt cap must be refused, not dropped: dropped, it silently leaves a rule uncapped or
/// (through `PUT /v1/users/{id}/caps`, which replaces all caps) clears a user's caps. Both
/// halves are checked before either is asserted, so a failure reports both.
#[test]
fn misspelt_caps_are_refused_rather_than_ignored() {
    let env = Env::new();
    let client = env.client("edge");
    let mut body = rule(&client, "8080", "tcp");
    body["caps"] = json!({"max_conns": 5});
    let (status, out) = env.push(&env.admin, body);
    let rule_caps = (status, code(&out).to_string());
    let rules = env.ok("GET", "/v1/rules", &env.admin, None);

    let user = env.user("heidi", false);
    let path = format!("/v1/users/{user}/caps");
    env.ok(
        "PUT",
        &path,
        &env.admin,
        Some(json!({"max_connections": 10})),
    );
    let (status, out) = env.call(
        "PUT",
        &path,
        &env.admin,
        Some(json!({"max_conections": 20})),
    );
    let owner_caps = (status, code(&out).to_string());
    let kept = env.ok("GET", &path, &env.admin, None);

    let refused = (400, "invalid_body".to_string());
    assert!(
        rule_caps == refused && owner_caps == refused,
        "POST /v1/rules with caps {{\"max_conns\": 5}}: {rule_caps:?} (rules now {rules}); \
         PUT /v1/users/{{id}}/caps {{\"max_conections\": 20}}: {owner_caps:?} (caps now {kept})"
    );
    assert_eq!(rules, json!([]));
    assert_eq!(kept["max_connections"], 10);
}

#[test]
fn pushes_racing_for_one_port_leave_exactly_one_rule() {
    let env = Env::new();
    let client = env.client("edge");
    const RACERS: usize = 8;
    let start = std::sync::Barrier::new(RACERS);
    let statuses: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..RACERS)
            .map(|i| {
                let (api, admin, start) = (env.server.api.clone(), env.admin.clone(), &start);
                let protocol = ["tcp", "tcp+udp"][i % 2];
                let body = rule(&client, &format!("{}-5100", 5000 + i), protocol);
                scope.spawn(move || {
                    let http = Http::new(&api);
                    start.wait();
                    let (status, out) = http.call("POST", "/v1/rules", Some(&admin), Some(body));
                    (status, code(&out).to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won = statuses.iter().filter(|(s, _)| *s == 201).count();
    let lost = statuses
        .iter()
        .filter(|(s, c)| *s == 409 && c == "port_conflict")
        .count();
    assert_eq!((won, lost), (1, RACERS - 1), "{statuses:?}");
    let rules = env.ok("GET", "/v1/rules", &env.admin, None);
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules}");
}

// 6. Grant revocation -----------------------------------------------------------------------------

#[test]
fn revoking_a_grant_removes_only_the_rules_no_grant_still_covers() {
    let env = Env::new();
    let alice = env.user("alice", false);
    let bob = env.user("bob", false);
    let client = env.client("edge");
    let wide = env.grant(&alice, &client, "8000-8100", "tcp");
    let narrow = env.grant(&alice, &client, "8085-8095", "tcp");
    env.grant(&bob, &client, "8000-8100", "tcp");

    // The admin pushes rules on alice's behalf; her grants still apply.
    let push_for = |owner: &str, listen: &str| {
        let mut body = rule(&client, listen, "tcp");
        body["owner"] = json!(owner);
        env.push(&env.admin, body)
    };
    let (status, out) = push_for("alice", "8200");
    assert_eq!((status, code(&out)), (403, "grant_required"), "{out}");
    let (status, r8080) = push_for("alice", "8080");
    assert_eq!(status, 201, "{r8080}");
    assert_eq!(r8080["owner_id"], alice.as_str());
    let (status, r8090) = push_for("alice", "8090");
    assert_eq!(status, 201, "{r8090}");
    let (status, r8050) = push_for("bob", "8050");
    assert_eq!(status, 201, "{r8050}");
    let (r8080, r8090, r8050) = (text(&r8080["id"]), text(&r8090["id"]), text(&r8050["id"]));

    let before = env.generation(&client);
    let revoked = env.ok("DELETE", &format!("/v1/grants/{wide}"), &env.admin, None);
    assert_eq!(revoked["revoked"]["id"], wide.as_str());
    assert_eq!(revoked["removed_rules"], json!([r8080]));
    assert_eq!(env.generation(&client), before + 1);

    let (status, out) = env.call("GET", &format!("/v1/rules/{r8080}"), &env.admin, None);
    assert_eq!((status, code(&out)), (404, "not_found"), "{out}");
    env.ok("GET", &format!("/v1/rules/{r8090}"), &env.admin, None);
    env.ok("GET", &format!("/v1/rules/{r8050}"), &env.admin, None);
    let grants = env.ok("GET", &format!("/v1/grants?user={alice}"), &env.admin, None);
    assert_eq!(ids(&grants), [narrow.as_str()]);

    // The revocation is audited with the rules it took.
    let rows = env.audit(&env.admin, 1000);
    let row = rows
        .iter()
        .find(|r| {
            r["action"] == "grant.revoke" && r["resource"] == format!("grant:{wide}").as_str()
        })
        .expect("grant.revoke audited");
    assert_eq!(row["outcome"], "ok");
    assert_eq!(row["details"]["removed_rules"], json!([r8080]));

    // Revoking again is 404 and changes nothing.
    let (status, out) = env.call("DELETE", &format!("/v1/grants/{wide}"), &env.admin, None);
    assert_eq!((status, code(&out)), (404, "not_found"), "{out}");
    assert_eq!(env.generation(&client), before + 1);

    // The last grant takes the last rule; bob's rule stays.
    let revoked = env.ok("DELETE", &format!("/v1/grants/{narrow}"), &env.admin, None);
    assert_eq!(revoked["removed_rules"], json!([r8090]));
    assert_eq!(env.generation(&client), before + 2);
    assert_eq!(
        ids(&env.ok("GET", "/v1/rules", &env.admin, None)),
        [r8050.as_str()]
    );

    // A grant whose revocation removes no rule does not bump the generation.
    let spare = env.grant(&alice, &client, "1000-1010", "udp");
    let revoked = env.ok("DELETE", &format!("/v1/grants/{spare}"), &env.admin, None);
    assert_eq!(revoked["removed_rules"], json!([]));
    assert_eq!(env.generation(&client), before + 2);

    // Deleting a user takes their grants and rules with them.
    let deleted = env.ok("DELETE", &format!("/v1/users/{bob}"), &env.admin, None);
    assert_eq!(deleted["deleted"]["id"], bob.as_str());
    assert_eq!(env.ok("GET", "/v1/rules", &env.admin, None), json!([]));
    assert_eq!(env.ok("GET", "/v1/grants", &env.admin, None), json!([]));
    assert_eq!(env.generation(&client), before + 3);
}

// 7. Audit paging over HTTP -----------------------------------------------------------------------

/// All (seq, at) of the audit table, read from `state.db` without disturbing the server.
fn stored_audit(data: &std::path::Path) -> BTreeMap<i64, i64> {
    let conn = rusqlite::Connection::open_with_flags(
        data.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut stmt = conn.prepare("SELECT seq, at FROM audit").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// One full pass over the paged audit log as `token` with pages of 7: the seqs in order.
fn audit_pass(http: &Http, token: &str) -> Vec<i64> {
    let mut seqs = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut path = format!("/v1/audit?{FROM_EPOCH}&limit=7");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = http.call("GET", &path, Some(token), None);
        assert_eq!(status, 200, "{page}");
        let entries = page["entries"].as_array().unwrap();
        seqs.extend(entries.iter().map(|e| e["seq"].as_i64().unwrap()));
        match page.get("next_cursor") {
            Some(next) => {
                assert_eq!(entries.len(), 7);
                cursor = Some(text(next));
            }
            None => return seqs,
        }
    }
    panic!("audit paging did not end");
}

#[test]
fn audit_pages_return_every_row_once_while_others_write() {
    let env = Env::new();
    const WRITERS: usize = 4;
    const MUTATIONS: usize = 50;

    let passes: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (api, admin) = (env.server.api.clone(), env.admin.clone());
                scope.spawn(move || {
                    let http = Http::new(&api);
                    for i in 0..MUTATIONS / 2 {
                        let name = format!("writer {w} #{i}");
                        let (status, made) = http.call(
                            "POST",
                            "/v1/tokens",
                            Some(&admin),
                            Some(json!({ "name": name })),
                        );
                        assert_eq!(status, 201, "{made}");
                        let path = format!("/v1/tokens/{}", text(&made["id"]));
                        let (status, out) = http.call("DELETE", &path, Some(&admin), None);
                        assert_eq!(status, 200, "{out}");
                    }
                })
            })
            .collect();
        // Page from the start, again and again, while the writers run.
        let reader = Http::new(&env.server.api);
        let mut passes = Vec::new();
        while passes.is_empty() || !writers.iter().all(|w| w.is_finished()) {
            passes.push(audit_pass(&reader, &env.admin));
        }
        for writer in writers {
            writer.join().expect("a writer failed");
        }
        passes
    });

    // After the writers: one pass holds every stored row exactly once, in (at, seq) order.
    let last = audit_pass(&env.http, &env.admin);
    let stored = stored_audit(&env.server.data);
    let unique: BTreeSet<i64> = last.iter().copied().collect();
    assert_eq!(unique.len(), last.len(), "no row twice");
    assert_eq!(unique, stored.keys().copied().collect::<BTreeSet<_>>());
    assert!(last.len() > WRITERS * MUTATIONS, "{} rows", last.len());
    let keys: Vec<(i64, i64)> = last.iter().map(|s| (stored[s], *s)).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "ordered by (at, seq)");
    let tokens_done = env
        .audit(&env.admin, 1000)
        .iter()
        .filter(|r| r["action"] == "token.revoke" && r["outcome"] == "ok")
        .count();
    assert_eq!(tokens_done, WRITERS * MUTATIONS / 2);

    // Every pass taken while rows were being added saw a prefix of the final order: nothing
    // skipped, nothing twice, nothing out of order.
    assert!(!passes.is_empty());
    for (n, pass) in passes.iter().enumerate() {
        assert!(pass.len() <= last.len());
        assert_eq!(pass[..], last[..pass.len()], "pass {n} is not a prefix");
    }

    // Without since/until/cursor: the legacy plain array of the latest rows, oldest first.
    let latest = env.ok("GET", "/v1/audit?limit=5", &env.admin, None);
    let latest: Vec<i64> = latest
        .as_array()
        .expect("a plain array")
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(latest[..], last[last.len() - 5..]);
    let default = env.ok("GET", "/v1/audit", &env.admin, None);
    let default = default.as_array().expect("a plain array");
    assert_eq!(default.len(), 100, "the default limit");
    assert_eq!(
        default.last().unwrap()["seq"].as_i64(),
        last.last().copied()
    );

    // Bad parameters.
    for (query, wanted) in [
        ("limit=0", "invalid_limit"),
        ("limit=1001", "invalid_limit"),
        ("limit=ten", "invalid_limit"),
        ("since=1970-01-01T00:00:00Z&limit=0", "invalid_limit"),
        ("since=1970-01-01T00:00:00Z&limit=1001", "invalid_limit"),
        ("cursor=garbage", "invalid_cursor"),
        (
            "since=1970-01-01T00:00:00Z&cursor=djI6MToy",
            "invalid_cursor",
        ),
        ("since=yesterday", "invalid_time"),
    ] {
        let (status, out) = env.call("GET", &format!("/v1/audit?{query}"), &env.admin, None);
        assert_eq!((status, code(&out)), (400, wanted), "{query}: {out}");
    }

    // `until` is exclusive; a window with nothing in it is an empty last page.
    let (status, out) = env.call(
        "GET",
        "/v1/audit?since=1970-01-01T00:00:00Z&until=1970-01-01T00:00:00Z",
        &env.admin,
        None,
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["entries"], json!([]));
    assert!(out.get("next_cursor").is_none());
}

// 8. Metrics -------------------------------------------------------------------------------------

/// The value of an unlabelled (or exactly labelled) sample in a Prometheus text exposition.
fn sample(exposition: &str, name: &str) -> Option<u64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn scrape(server: &Server) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent
        .get(&format!("http://{}/metrics", server.metrics))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.body_mut().read_to_string().unwrap()
}

#[test]
fn metrics_count_requests_denials_and_rules() {
    let env = Env::new();
    let client = env.client("edge");
    let (status, out) = env.push(&env.admin, rule(&client, "8080", "tcp"));
    assert_eq!(status, 201, "{out}");
    let (status, _) = env.call("GET", "/v1/rules/rul_missing", &env.admin, None);
    assert_eq!(status, 404);
    env.user("frank", false);

    let text = scrape(&env.server);
    assert!(
        text.contains("# TYPE portunus_api_requests_total counter"),
        "{text}"
    );
    assert!(text.contains("portunus_rules"), "{text}");
    let ok = sample(&text, "portunus_api_requests_total{class=\"2xx\"}").expect("2xx sample");
    assert!(ok >= 3, "{text}");
    let client_errors =
        sample(&text, "portunus_api_requests_total{class=\"4xx\"}").expect("4xx sample");
    assert!(client_errors >= 1, "{text}");
    assert_eq!(sample(&text, "portunus_rules"), Some(1), "{text}");
    assert_eq!(sample(&text, "portunus_users"), Some(2), "{text}");
    assert_eq!(sample(&text, "portunus_clients"), Some(1), "{text}");
    assert_eq!(
        sample(&text, "portunus_rule_pushes_total"),
        Some(1),
        "{text}"
    );
    let denials = sample(&text, "portunus_api_denials_total").unwrap();

    // A 401 is not a denial; a 403 is.
    let (status, _) = env.call("GET", "/v1/me", "ptk_not_a_token", None);
    assert_eq!(status, 401);
    let (status, _) = env.http.call("DELETE", "/v1/rules/x", None, None);
    assert_eq!(status, 401);
    let text = scrape(&env.server);
    assert_eq!(sample(&text, "portunus_api_denials_total"), Some(denials));
    let (status, made) = env.call(
        "POST",
        "/v1/tokens",
        &env.admin,
        Some(json!({"scopes": "read"})),
    );
    assert_eq!(status, 201, "{made}");
    let reader = made["token"].as_str().unwrap().to_string();
    let (status, _) = env.push(&reader, rule(&client, "8081", "tcp"));
    assert_eq!(status, 403);
    let text = scrape(&env.server);
    assert_eq!(
        sample(&text, "portunus_api_denials_total"),
        Some(denials + 1)
    );
    assert_eq!(sample(&text, "portunus_rules"), Some(1));
}
