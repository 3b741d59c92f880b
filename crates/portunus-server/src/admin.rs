//! The admin CLI: everyday operator work (`user-add`, `grant-add`, `push-rule`,
//! `enroll-client`, …) done over the HTTP API, so it works against a running server, is
//! authorised and audited exactly like any other API call, and never touches `state.db` itself.
//!
//! The server and token come from `--server`/`--token`, else `PORTUNUS_SERVER`/`PORTUNUS_TOKEN`,
//! else the file `setup` saved (`$XDG_CONFIG_HOME/portunus/admin.json`, mode 0600). Output is a
//! table, or the API's JSON with `--format json`; errors carry the API's code and message.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::cli::Table;
use store::exit;

/// The server address used when none is given or saved.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7870";
/// Exit status for refusals (sysexits `EX_NOPERM`).
pub const NO_PERM: u8 = 77;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Tables and sentences.
    #[default]
    Text,
    /// The API's JSON.
    Json,
}

/// How to reach the API (every admin command takes these).
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// API base URL [env: PORTUNUS_SERVER] [default: the saved one, else http://127.0.0.1:7870]
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// API token [env: PORTUNUS_TOKEN] [default: the one `setup` saved]
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `setup`
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// API base URL.
    #[arg(long, value_name = "URL", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// The setup token `serve` printed.
    #[arg(long, value_name = "TOKEN")]
    pub setup_token: String,
    /// The superadmin's user name.
    #[arg(long, default_value = "admin")]
    pub username: String,
    /// Read the password from stdin (first line) instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
    /// Print the API token instead of saving it to the admin file.
    #[arg(long)]
    pub print_token: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `user-add`
#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// Login name.
    pub username: String,
    /// Role.
    #[arg(long, value_parser = ["user", "superadmin"], default_value = "user")]
    pub role: String,
    /// Display name.
    #[arg(long, default_value = "")]
    pub display_name: String,
    /// Read a password from stdin (first line); without it the user logs in with tokens only.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub conn: Conn,
}

/// Commands that take one id.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Id (users also by name).
    pub id: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// `grant-add`
#[derive(Debug, Args)]
#[command(
    after_help = "EXAMPLE:\n  portunus-server grant-add alice cli_0123456789abcdef 8000-8100 --protocols tcp"
)]
pub struct GrantAddArgs {
    /// User (id or name).
    pub user: String,
    /// Client id.
    pub client_id: String,
    /// Ports: 8080 or 8000-8100.
    pub ports: String,
    /// tcp, udp or tcp+udp.
    #[arg(long, default_value = "tcp+udp")]
    pub protocols: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// `grant-list`
#[derive(Debug, Args)]
pub struct GrantListArgs {
    /// Only this user's grants (id or name).
    #[arg(long)]
    pub user: Option<String>,
    /// Only grants on this client.
    #[arg(long)]
    pub client: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `push-rule`
#[derive(Debug, Args)]
#[command(
    after_help = "EXAMPLES:\n  portunus-server push-rule cli_0123456789abcdef 8080 --target 10.0.0.5:80\n  portunus-server push-rule cli_0123456789abcdef 5000-5010 --protocol udp --target a.internal:5000 --target b.internal:5000:1"
)]
pub struct PushRuleArgs {
    /// Client id.
    pub client_id: String,
    /// Listen port or range (at most 1024 ports).
    pub listen: String,
    /// Target HOST:PORT[:PRIORITY[:none|v1|v2]] (1 to 8; lower priority first).
    #[arg(long = "target", required = true, value_name = "HOST:PORT")]
    pub targets: Vec<String>,
    /// tcp, udp or tcp+udp.
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Address to bind on the client.
    #[arg(long, default_value = "0.0.0.0")]
    pub listen_addr: String,
    /// Label.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Owner (superadmins only; default yourself).
    #[arg(long)]
    pub owner: Option<String>,
    /// Bandwidth cap, bytes per second.
    #[arg(long)]
    pub bandwidth_bps: Option<u64>,
    /// New connections per second.
    #[arg(long)]
    pub new_conn_per_sec: Option<u32>,
    /// Concurrent connections.
    #[arg(long)]
    pub max_connections: Option<u32>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `list-rules`
#[derive(Debug, Args)]
pub struct ListRulesArgs {
    /// Only rules on this client.
    #[arg(long)]
    pub client: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `enroll-client`
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Label for a new client.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Issue a fresh code for this existing client instead of creating one.
    #[arg(long, value_name = "ID")]
    pub client: Option<String>,
    /// Code lifetime in seconds [default: setting enrollment.ttl_secs]
    #[arg(long)]
    pub ttl_secs: Option<u64>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `audit-log`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// From this moment (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this moment (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Rows per page (1-1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Follow next_cursor through every page.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub conn: Conn,
}

/// What `setup` saves.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    server: String,
    token: String,
}

fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("portunus"))
}

fn saved() -> Option<Saved> {
    let text = std::fs::read_to_string(config_dir()?.join("admin.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn save(server: &str, token: &str) -> Result<PathBuf, Failure> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = config_dir().ok_or_else(|| {
        Failure::local(
            "no_home",
            "set HOME or XDG_CONFIG_HOME, or use --print-token",
        )
    })?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Failure::local("io", &format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join("admin.json");
    let tmp = dir.join(format!(".admin.json.{}", std::process::id()));
    let body = serde_json::to_string_pretty(&Saved {
        server: server.to_string(),
        token: token.to_string(),
    })
    .unwrap_or_default();
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(body.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failure::local("io", &format!("cannot write {}: {e}", path.display()))
    })?;
    Ok(path)
}

/// A failed admin command: the API's code and message, and the exit status.
#[derive(Debug)]
struct Failure {
    code: String,
    message: String,
    status: u8,
}

impl Failure {
    fn local(code: &str, message: &str) -> Failure {
        Failure {
            code: code.into(),
            message: message.into(),
            status: exit::USAGE,
        }
    }
}

/// A client for the API.
struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Api {
    fn new(server: &str, token: Option<String>) -> Api {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        Api {
            base: server.trim_end_matches('/').to_string(),
            token,
            agent: config.into(),
        }
    }

    fn from_conn(conn: &Conn) -> Result<Api, Failure> {
        let stored = saved();
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let server = conn
            .server
            .clone()
            .or_else(|| env("PORTUNUS_SERVER"))
            .or_else(|| stored.as_ref().map(|s| s.server.clone()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let token = conn
            .token
            .clone()
            .or_else(|| env("PORTUNUS_TOKEN"))
            .or_else(|| stored.map(|s| s.token))
            .ok_or_else(|| {
                Failure::local(
                    "no_token",
                    "no API token: pass --token, set PORTUNUS_TOKEN, or run `portunus-server setup` first",
                )
            })?;
        Ok(Api::new(&server, Some(token)))
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let sent = match (method, body) {
            ("GET", _) | ("DELETE", None) => {
                let mut req = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.call()
            }
            (_, body) => {
                let mut req = match method {
                    "PUT" => self.agent.put(&url),
                    "PATCH" => self.agent.patch(&url),
                    _ => self.agent.post(&url),
                };
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.send_json(body.cloned().unwrap_or_else(|| json!({})))
            }
        };
        let mut response = sent.map_err(|e| Failure {
            code: "unreachable".into(),
            message: format!(
                "cannot reach the API at {}: {e}; is `portunus-server serve` running?",
                self.base
            ),
            status: exit::UNAVAILABLE,
        })?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status < 300 {
            return Ok(value);
        }
        let code = value["error"]["code"]
            .as_str()
            .unwrap_or("http_error")
            .to_string();
        let message = value["error"]["message"]
            .as_str()
            .map_or_else(|| format!("the API answered HTTP {status}"), str::to_string);
        Err(Failure {
            code,
            message,
            status: match status {
                400 | 422 => exit::DATA_ERR,
                401 | 403 => NO_PERM,
                404 => exit::NO_INPUT,
                409 => exit::CANT_CREATE,
                429 | 503 => exit::TEMP_FAIL,
                _ => exit::UNAVAILABLE,
            },
        })
    }
}

fn finish(
    format: Format,
    result: Result<Value, Failure>,
    text: impl FnOnce(&Value) -> String,
) -> ExitCode {
    match result {
        Ok(value) => {
            let out = match format {
                Format::Json => serde_json::to_string_pretty(&value).unwrap_or_default() + "\n",
                Format::Text => text(&value),
            };
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
            ExitCode::SUCCESS
        }
        Err(f) => {
            store::cli::print_failure(format == Format::Json, &f.code, &f.message);
            ExitCode::from(f.status)
        }
    }
}

fn run(
    conn: &Conn,
    method: &str,
    path: &str,
    body: Option<Value>,
    text: impl FnOnce(&Value) -> String,
) -> ExitCode {
    let result = Api::from_conn(conn).and_then(|api| api.call(method, path, body.as_ref()));
    finish(conn.format, result, text)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn read_password(from_stdin: bool) -> Result<Option<String>, Failure> {
    if !from_stdin {
        return Ok(None);
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure::local("io", &format!("cannot read the password from stdin: {e}")))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(Failure::local("invalid_password", "stdin held no password"));
    }
    Ok(Some(line))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `setup`: the first superadmin; saves (or prints) their API token.
pub fn setup(args: &SetupArgs) -> ExitCode {
    let result = (|| {
        let password = match read_password(args.password_stdin)? {
            Some(p) => p,
            None => {
                return Err(Failure::local(
                    "password_required",
                    "pass the password on stdin with --password-stdin (e.g. `printf '%s' \"$PW\" | portunus-server setup ... --password-stdin`)",
                ));
            }
        };
        let api = Api::new(&args.server, None);
        let made = api.call(
            "POST",
            "/v1/setup",
            Some(&json!({"setup_token": args.setup_token, "username": args.username, "password": password})),
        )?;
        let token = made["token"].as_str().unwrap_or_default().to_string();
        let saved_to = if args.print_token {
            None
        } else {
            Some(save(&args.server, &token)?)
        };
        Ok(
            json!({"user": made["user"], "token": if args.print_token { Some(token) } else { None },
                  "saved_to": saved_to}),
        )
    })();
    finish(args.format, result, |v| match v["saved_to"].as_str() {
        Some(path) => format!(
            "Created superadmin {}. Their API token is saved in {path}; admin commands use it from now on.\n",
            s(&v["user"]["username"])
        ),
        None => format!(
            "Created superadmin {}. API token (shown once):\n{}\n",
            s(&v["user"]["username"]),
            s(&v["token"])
        ),
    })
}

/// `user-add`
pub fn user_add(args: &UserAddArgs) -> ExitCode {
    let password = match read_password(args.password_stdin) {
        Ok(p) => p,
        Err(f) => return finish(args.conn.format, Err(f), |_| String::new()),
    };
    let body = json!({"username": args.username, "role": args.role, "display_name": args.display_name, "password": password});
    run(&args.conn, "POST", "/v1/users", Some(body), |v| {
        format!(
            "Added {} {} ({}).\n",
            s(&v["role"]),
            s(&v["username"]),
            s(&v["id"])
        )
    })
}

/// `user-list`
pub fn user_list(conn: &Conn) -> ExitCode {
    run(conn, "GET", "/v1/users", None, |v| {
        let mut t = Table::new(&["ID", "USERNAME", "ROLE", "DISABLED", "DISPLAY NAME"]);
        for u in v.as_array().into_iter().flatten() {
            t.row(vec![
                s(&u["id"]),
                s(&u["username"]),
                s(&u["role"]),
                s(&u["disabled"]),
                s(&u["display_name"]),
            ]);
        }
        t.render()
    })
}

/// `user-remove`
pub fn user_remove(args: &KeyArgs) -> ExitCode {
    run(
        &args.conn,
        "DELETE",
        &format!("/v1/users/{}", encode(&args.id)),
        None,
        |v| format!("Removed user {}.\n", s(&v["deleted"]["username"])),
    )
}

/// `grant-add`
pub fn grant_add(args: &GrantAddArgs) -> ExitCode {
    let body = json!({"user": args.user, "client_id": args.client_id, "ports": args.ports, "protocols": args.protocols});
    run(&args.conn, "POST", "/v1/grants", Some(body), |v| {
        format!(
            "Granted {} ports {}-{} ({}) on {}: grant {}.\n",
            args.user,
            s(&v["port_start"]),
            s(&v["port_end"]),
            s(&v["protocols"]),
            s(&v["client_id"]),
            s(&v["id"])
        )
    })
}

fn grant_table(v: &Value) -> String {
    let mut t = Table::new(&["ID", "USER", "CLIENT", "PORTS", "PROTOCOLS"]);
    for g in v.as_array().into_iter().flatten() {
        t.row(vec![
            s(&g["id"]),
            s(&g["user_id"]),
            s(&g["client_id"]),
            format!("{}-{}", s(&g["port_start"]), s(&g["port_end"])),
            s(&g["protocols"]),
        ]);
    }
    t.render()
}

/// `grant-list`
pub fn grant_list(args: &GrantListArgs) -> ExitCode {
    let mut query = Vec::new();
    if let Some(u) = &args.user {
        query.push(format!("user={}", encode(u)));
    }
    if let Some(c) = &args.client {
        query.push(format!("client_id={}", encode(c)));
    }
    let path = if query.is_empty() {
        "/v1/grants".to_string()
    } else {
        format!("/v1/grants?{}", query.join("&"))
    };
    run(&args.conn, "GET", &path, None, grant_table)
}

/// `grant-revoke`
pub fn grant_revoke(args: &KeyArgs) -> ExitCode {
    run(
        &args.conn,
        "DELETE",
        &format!("/v1/grants/{}", encode(&args.id)),
        None,
        |v| {
            let removed: Vec<String> = v["removed_rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            if removed.is_empty() {
                format!(
                    "Revoked grant {}; no rules depended on it.\n",
                    s(&v["revoked"]["id"])
                )
            } else {
                format!(
                    "Revoked grant {}; removed {} rule(s) it no longer allows: {}.\n",
                    s(&v["revoked"]["id"]),
                    removed.len(),
                    removed.join(", ")
                )
            }
        },
    )
}

fn parse_target(text: &str) -> Result<Value, Failure> {
    let bad = || Failure {
        code: "invalid_target".into(),
        message: format!(
            "'{text}' is not HOST:PORT[:PRIORITY[:none|v1|v2]] (IPv6 in brackets: [::1]:80)"
        ),
        status: exit::USAGE,
    };
    let (host, rest) = if let Some(stripped) = text.strip_prefix('[') {
        let (h, r) = stripped.split_once(']').ok_or_else(bad)?;
        (
            h.to_string(),
            r.strip_prefix(':').ok_or_else(bad)?.to_string(),
        )
    } else {
        let (h, r) = text.split_once(':').ok_or_else(bad)?;
        (h.to_string(), r.to_string())
    };
    let mut parts = rest.split(':');
    let port: u16 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let priority: u8 = match parts.next() {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => 0,
    };
    let proxy = parts.next().unwrap_or("none").to_string();
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(json!({"host": host, "port": port, "priority": priority, "proxy_protocol": proxy}))
}

fn rule_table(rules: &[Value]) -> String {
    let mut t = Table::new(&[
        "ID", "CLIENT", "OWNER", "PROTO", "LISTEN", "TARGETS", "STATUS",
    ]);
    for r in rules {
        let targets: Vec<String> = r["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| format!("{}:{}", s(&t["host"]), s(&t["port"])))
            .collect();
        let listen = match (&r["listen"]["start"], &r["listen"]["end"]) {
            (a, b) if a == b => s(a),
            (a, b) => format!("{}-{}", s(a), s(b)),
        };
        t.row(vec![
            s(&r["id"]),
            s(&r["client_id"]),
            s(&r["owner_id"]),
            s(&r["protocol"]),
            format!("{}:{listen}", s(&r["listen_addr"])),
            targets.join(","),
            s(&r["status"]),
        ]);
    }
    t.render()
}

/// `push-rule`
pub fn push_rule(args: &PushRuleArgs) -> ExitCode {
    let targets: Result<Vec<Value>, Failure> =
        args.targets.iter().map(|t| parse_target(t)).collect();
    let targets = match targets {
        Ok(t) => t,
        Err(f) => return finish(args.conn.format, Err(f), |_| String::new()),
    };
    let body = json!({
        "client_id": args.client_id, "listen": args.listen, "protocol": args.protocol,
        "listen_addr": args.listen_addr, "name": args.name, "owner": args.owner, "targets": targets,
        "caps": {"bandwidth_bps": args.bandwidth_bps, "new_conn_per_sec": args.new_conn_per_sec,
                 "max_connections": args.max_connections},
    });
    run(&args.conn, "POST", "/v1/rules", Some(body), |v| {
        format!(
            "Pushed rule {} to {}; the client applies it when connected.\n",
            s(&v["id"]),
            s(&v["client_id"])
        )
    })
}

/// `list-rules`
pub fn list_rules(args: &ListRulesArgs) -> ExitCode {
    let path = match &args.client {
        Some(c) => format!("/v1/rules?client_id={}", encode(c)),
        None => "/v1/rules".to_string(),
    };
    run(&args.conn, "GET", &path, None, |v| {
        rule_table(v.as_array().map(Vec::as_slice).unwrap_or_default())
    })
}

/// `remove-rule`
pub fn remove_rule(args: &KeyArgs) -> ExitCode {
    run(
        &args.conn,
        "DELETE",
        &format!("/v1/rules/{}", encode(&args.id)),
        None,
        |v| format!("Removed rule {}.\n", s(&v["deleted"]["id"])),
    )
}

/// `enroll-client`
pub fn enroll_client(args: &EnrollArgs) -> ExitCode {
    let text = |v: &Value| {
        let e = if v.get("enrollment").is_some() {
            &v["enrollment"]
        } else {
            v
        };
        format!(
            "Client {}: give this one-time URI to the client (valid until {}):\n{}\n",
            s(&e["client_id"]),
            s(&e["expires_at"]),
            s(&e["uri"])
        )
    };
    match &args.client {
        Some(id) => run(
            &args.conn,
            "POST",
            &format!("/v1/clients/{}/enrollments", encode(id)),
            Some(json!({"ttl_secs": args.ttl_secs})),
            text,
        ),
        None => run(
            &args.conn,
            "POST",
            "/v1/clients",
            Some(json!({"name": args.name, "ttl_secs": args.ttl_secs})),
            text,
        ),
    }
}

/// `list-clients`
pub fn list_clients(conn: &Conn) -> ExitCode {
    run(conn, "GET", "/v1/clients", None, |v| {
        let mut t = Table::new(&[
            "ID",
            "NAME",
            "STATE",
            "CONNECTED",
            "GENERATION",
            "LAST SEEN",
        ]);
        for c in v.as_array().into_iter().flatten() {
            t.row(vec![
                s(&c["id"]),
                s(&c["name"]),
                s(&c["state"]),
                s(&c["connected"]),
                format!("{}/{}", s(&c["applied_generation"]), s(&c["generation"])),
                s(&c["last_seen_at"]),
            ]);
        }
        t.render()
    })
}

/// `revoke`
pub fn revoke(args: &KeyArgs) -> ExitCode {
    run(
        &args.conn,
        "DELETE",
        &format!("/v1/clients/{}", encode(&args.id)),
        None,
        |v| {
            format!(
                "Revoked client {}; its token no longer works.\n",
                s(&v["id"])
            )
        },
    )
}

/// `audit-log`
pub fn audit_log(args: &AuditArgs) -> ExitCode {
    let result = Api::from_conn(&args.conn).and_then(|api| {
        let mut entries = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![format!("limit={}", args.limit)];
            query.push(format!(
                "since={}",
                encode(args.since.as_deref().unwrap_or("1970-01-01T00:00:00Z"))
            ));
            if let Some(u) = &args.until {
                query.push(format!("until={}", encode(u)));
            }
            if let Some(c) = &cursor {
                query.push(format!("cursor={}", encode(c)));
            }
            let page = api.call("GET", &format!("/v1/audit?{}", query.join("&")), None)?;
            entries.extend(page["entries"].as_array().cloned().unwrap_or_default());
            cursor = page["next_cursor"].as_str().map(str::to_string);
            if !args.all || cursor.is_none() {
                return Ok(
                    json!({"entries": entries, "next_cursor": cursor, "count": entries.len()}),
                );
            }
        }
    });
    finish(args.conn.format, result, |v| {
        let mut t = Table::new(&["SEQ", "AT", "ACTOR", "ACTION", "RESOURCE", "OUTCOME"]);
        for e in v["entries"].as_array().into_iter().flatten() {
            t.row(vec![
                s(&e["seq"]),
                s(&e["at"]),
                s(&e["actor"]),
                s(&e["action"]),
                s(&e["resource"]),
                s(&e["outcome"]),
            ]);
        }
        let mut out = t.render();
        if let Some(c) = v["next_cursor"].as_str() {
            out.push_str(&format!("(more: --all, or the API with cursor={c})\n"));
        }
        out
    })
}
