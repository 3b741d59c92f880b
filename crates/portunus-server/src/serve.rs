//! `portunus-server serve`: refuse a bad data directory, open the store (holding its instance
//! lock), make or load the TLS material, print the first-run setup token, then run the operator
//! API, the control listener and the metrics listener until SIGINT or SIGTERM.
//!
//! Startup refusals print one `event=startup.<code>` line on stderr and exit with the store's
//! documented status: 75 when another server holds the data directory, 78 for a schema newer
//! than this binary or an unsupported filesystem (NFS, tmpfs, ramfs).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{App, Shared};
use crate::audit::AuditLog;
use crate::cli::ServeArgs;
use crate::control::hub::Hub;
use crate::metrics::Metrics;
use crate::store::TOOL;

/// Default operator API address.
pub const DEFAULT_API: &str = "127.0.0.1:7870";
/// Default control listener address.
pub const DEFAULT_CONTROL: &str = "127.0.0.1:7871";
/// Default metrics address.
pub const DEFAULT_METRICS: &str = "127.0.0.1:7872";
/// Audit events held in memory before the oldest is dropped.
pub const AUDIT_QUEUE: usize = 65_536;

/// `<data-dir>/server.toml`: every key optional; command-line flags win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerToml {
    /// Operator API address.
    pub api_listen: Option<String>,
    /// Control listener address.
    pub control_listen: Option<String>,
    /// Metrics address, or `off`.
    pub metrics_listen: Option<String>,
    /// Host name or address clients dial (put into enrollment URIs).
    pub public_host: Option<String>,
}

/// Where each listener goes, after flags, `server.toml` and defaults.
#[derive(Debug, Clone)]
pub struct Plan {
    /// API.
    pub api: SocketAddr,
    /// Control.
    pub control: SocketAddr,
    /// Metrics (`None`: off).
    pub metrics: Option<SocketAddr>,
    /// Public host for enrollment URIs.
    pub public_host: Option<String>,
}

fn fail(code: &str, status: u8, message: &str) -> ExitCode {
    eprintln!(
        "event=startup.{code} message=\"{}\"",
        message.replace('"', "'")
    );
    eprintln!("portunus-server: {message}");
    ExitCode::from(status)
}

fn addr(what: &str, text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what} '{text}' is not an address like 127.0.0.1:7870 or [::1]:7870"))
}

/// Reads `server.toml` (if any) and merges it with the flags.
pub fn plan(data_dir: &Path, args: &ServeArgs) -> Result<Plan, String> {
    let path = data_dir.join("server.toml");
    let file: ServerToml = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ServerToml::default(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let pick = |flag: &Option<String>, file: &Option<String>, default: &str| {
        flag.clone()
            .or_else(|| file.clone())
            .unwrap_or_else(|| default.to_string())
    };
    let api = addr(
        "--api-listen",
        &pick(&args.api_listen, &file.api_listen, DEFAULT_API),
    )?;
    let control = addr(
        "--control-listen",
        &pick(&args.control_listen, &file.control_listen, DEFAULT_CONTROL),
    )?;
    let metrics_text = pick(&args.metrics_listen, &file.metrics_listen, DEFAULT_METRICS);
    let metrics = if metrics_text == "off" {
        None
    } else {
        Some(addr("--metrics-listen", &metrics_text)?)
    };
    if !api.ip().is_loopback() && !args.api_allow_remote {
        return Err(format!(
            "the API address {api} is not loopback; the API speaks plain HTTP, so keep it on loopback behind a TLS proxy, or pass --api-allow-remote if you accept that"
        ));
    }
    if metrics.is_some_and(|m| !m.ip().is_loopback()) && !args.api_allow_remote {
        return Err("the metrics address must be loopback (or pass --api-allow-remote)".into());
    }
    Ok(Plan {
        api,
        control,
        metrics,
        public_host: args.public_host.clone().or(file.public_host),
    })
}

/// The `host:port` put into enrollment URIs.
fn public_control(plan: &Plan, bound: SocketAddr) -> String {
    let port = bound.port();
    match &plan.public_host {
        Some(host) if host.parse::<std::net::Ipv6Addr>().is_ok() => format!("[{host}]:{port}"),
        Some(host) => format!("{host}:{port}"),
        None => match bound.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => format!("127.0.0.1:{port}"),
            IpAddr::V6(ip) if ip.is_unspecified() => format!("[::1]:{port}"),
            _ => bound.to_string(),
        },
    }
}

/// Runs `serve`; returns the exit status.
pub fn run(config: &store::OpenConfig, args: &ServeArgs) -> ExitCode {
    let data_dir: PathBuf = config
        .path()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let plan = match plan(&data_dir, args) {
        Ok(plan) => plan,
        Err(message) => return fail("invalid_config", 64, &message),
    };
    let config = store::OpenConfig {
        instance_lock: true,
        ..config.clone()
    };
    let db = match store::AsyncStore::open(&TOOL, &config) {
        Ok(db) => db,
        Err(e) => return fail(e.code(), e.exit_code(), &e.to_string()),
    };
    let names: Vec<String> = plan.public_host.iter().cloned().collect();
    let material = match crate::tls::load_or_create(&data_dir, &names) {
        Ok(m) => m,
        Err(e) => return fail("tls_material", 74, &e.message),
    };
    let tls_config = match material.server_config() {
        Ok(c) => c,
        Err(e) => return fail("tls_material", 74, &e.message),
    };
    eprintln!(
        "event=startup.tls fingerprint={} created={} cert={}",
        material.fingerprint,
        material.created,
        data_dir.join("server.crt").display()
    );
    let audit_config = store::OpenConfig {
        instance_lock: false,
        ..config.clone()
    };
    let audit = match AuditLog::start(&audit_config, AUDIT_QUEUE) {
        Ok(a) => a,
        Err(e) => return fail(e.code(), e.exit_code(), &e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("portunus-server")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                "runtime",
                71,
                &format!("cannot start the async runtime: {e}"),
            );
        }
    };
    let outcome = runtime.block_on(async move {
        let bind = |what: &'static str, at: SocketAddr| async move {
            TcpListener::bind(at)
                .await
                .map_err(|e| format!("cannot listen on {at} for the {what}: {e}"))
        };
        let api_listener = match bind("API", plan.api).await {
            Ok(l) => l,
            Err(m) => return (fail("bind_failed", 69, &m), None),
        };
        let control_listener = match bind("control listener", plan.control).await {
            Ok(l) => l,
            Err(m) => return (fail("bind_failed", 69, &m), None),
        };
        let metrics_listener = match plan.metrics {
            Some(at) => match bind("metrics", at).await {
                Ok(l) => Some(l),
                Err(m) => return (fail("bind_failed", 69, &m), None),
            },
            None => None,
        };
        let local = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let control_addr = control_listener.local_addr().unwrap_or(plan.control);
        let app: Shared = Arc::new(App {
            db,
            audit,
            hub: Hub::new(),
            metrics: Metrics::default(),
            pin: material.fingerprint.clone(),
            public_control: public_control(&plan, control_addr),
            api_tls: false,
        });
        match app.db.write(crate::auth::setup::issue_if_needed).await {
            Ok(Some(token)) => {
                eprintln!("event=startup.setup_token token={token}");
                eprintln!(
                    "portunus-server: no superadmin yet. Create one with (the password on stdin):\n  portunus-server setup --server http://{} --setup-token {token} --username admin --password-stdin",
                    local(&api_listener)
                );
            }
            Ok(None) => {}
            Err(e) => return (fail("store", 74, &e.message), Some(app)),
        }
        let stop_signal = shutdown_signal();
        eprintln!(
            "event=startup.ready api=http://{} control={} metrics={} public_control={}",
            local(&api_listener),
            local(&control_listener),
            metrics_listener.as_ref().map_or_else(|| "off".to_string(), local),
            app.public_control
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        {
            let router = crate::api::router(app.clone())
                .into_make_service_with_connect_info::<SocketAddr>();
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let _ = axum::serve(api_listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            });
        }
        tasks.spawn(crate::control::serve(
            app.clone(),
            control_listener,
            tls_config,
            stop_rx.clone(),
        ));
        if let Some(listener) = metrics_listener {
            let router = crate::api::metrics_router(app.clone());
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            });
        }
        tasks.spawn(retention_loop(app.clone(), stop_rx.clone()));
        stop_signal.await;
        eprintln!("event=shutdown.begin");
        let _ = stop_tx.send(true);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain).await.is_err() {
            eprintln!("event=shutdown.timeout message=\"connections still open after 10 s\"");
        }
        // Writing out the audit queue and closing the store block: done outside the runtime.
        (ExitCode::SUCCESS, Some(app))
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    let (status, app) = outcome;
    if let Some(app) = app {
        app.audit.shutdown();
        if let Ok(app) = Arc::try_unwrap(app) {
            app.db.close();
        }
        eprintln!("event=shutdown.done");
    }
    status
}

/// Registers SIGTERM and SIGINT handlers now (so a signal that arrives once startup has been
/// announced is never fatal) and returns the future that resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without signal handlers the server can still be stopped by SIGKILL; run until then.
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

/// Applies audit retention at startup and then hourly.
async fn retention_loop(app: Shared, mut stop: watch::Receiver<bool>) {
    loop {
        let result = app
            .db
            .write(|tx| {
                let days = crate::model::settings::get(tx, "audit.retention_days")?;
                let rows = crate::model::settings::get(tx, "audit.max_rows")?;
                let now = crate::ids::now_ms();
                let deleted = crate::audit::retention::apply(
                    tx,
                    now,
                    u32::try_from(days).unwrap_or(u32::MAX),
                    rows,
                )?;
                crate::model::quotas::prune_samples(tx, now)?;
                crate::auth::sessions::prune_expired(tx, now)?;
                let renewed = crate::model::quotas::roll_over(tx, now)?;
                Ok::<_, crate::error::Error>((deleted, renewed))
            })
            .await;
        let result = result.map(|(deleted, renewed)| {
            for client in &renewed {
                app.hub.notify(client);
            }
            deleted
        });
        match result {
            Ok(0) => {}
            Ok(n) => eprintln!("event=audit.retention deleted={n}"),
            Err(e) => eprintln!("event=audit.retention_failed error=\"{}\"", e.message),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
