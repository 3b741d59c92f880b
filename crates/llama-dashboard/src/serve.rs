//! `llama-dashboard serve`: open the database (holding its instance lock), decide on the API key,
//! bind the listener, then run the REST API, the live event stream, the metrics sampler and the
//! log writer until SIGINT or SIGTERM.
//!
//! Startup lines go to stderr as `event=startup.<what> …`, so scripts (and our tests) can read
//! the address actually bound. Refusals exit with the store's documented status: 75 when another
//! server holds the database, 78 for a newer schema, an unsupported filesystem or an unsafe key
//! file, 69 when the address cannot be bound, 64 for a bad flag.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use store::{AsyncStore, OpenConfig, exit};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Level;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;

use crate::app::{App, Counters, Shared, until_stopped};
use crate::cli::ServeArgs;
use crate::db::{TOOL, config, metrics};
use crate::events::{Events, Topic};
use crate::llama::scrape::{self, Throughput};
use crate::llama::supervisor::{State as ServerState, Supervisor, Timing};
use crate::logging::{self, LogStats, Retention};
use crate::sampler::Sampler;
use crate::sampler::process::TreeSampler;

/// The environment variable that may hold the API key itself.
pub const API_KEY_ENV: &str = "LLAMA_DASHBOARD_API_KEY";
/// Shortest API key accepted.
const MIN_KEY: usize = 16;

fn fail(code: &str, status: u8, message: &str) -> ExitCode {
    eprintln!(
        "event=startup.{code} message=\"{}\"",
        message.replace('"', "'")
    );
    eprintln!("llama-dashboard: {message}");
    ExitCode::from(status)
}

/// What `serve` was asked to do, checked.
#[derive(Debug, Clone)]
struct Plan {
    listen: SocketAddr,
    sample_every: Duration,
    store_every: u64,
    metrics_keep: u64,
    metrics_max_age: u64,
    logs: Retention,
    level: Level,
}

fn plan(args: &ServeArgs) -> Result<Plan, String> {
    let listen: SocketAddr = args.listen.trim().parse().map_err(|_| {
        format!(
            "--listen '{}' is not an address like 127.0.0.1:3000 or [::1]:3000",
            args.listen
        )
    })?;
    let seconds = |flag: &str, v: f64| {
        if v.is_finite() && (0.1..=86_400.0).contains(&v) {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!("--{flag} must be from 0.1 to 86400 seconds"))
        }
    };
    let sample_every = seconds("sample-interval", args.sample_interval)?;
    let store_interval = seconds("store-interval", args.store_interval)?;
    let store_every = (store_interval.as_secs_f64() / sample_every.as_secs_f64())
        .round()
        .max(1.0) as u64;
    let level = match crate::db::logs::normalize_level(&args.log_level) {
        Some("debug") => Level::DEBUG,
        Some("info") => Level::INFO,
        Some("warn") => Level::WARN,
        Some("error" | "critical") => Level::ERROR,
        _ => {
            return Err(format!(
                "--log-level '{}' is not one of debug, info, warn, error",
                args.log_level
            ));
        }
    };
    let days = |d: u64| d.saturating_mul(86_400);
    Ok(Plan {
        listen,
        sample_every,
        store_every,
        metrics_keep: args.metrics_keep.max(1),
        metrics_max_age: days(args.metrics_max_age_days.max(1)),
        logs: Retention {
            max_records: args.logs_keep.max(1),
            max_age_secs: days(args.logs_max_age_days.max(1)),
            every: Duration::from_secs(60),
        },
        level,
    })
}

/// Reads the API key from a file that only its owner can read.
fn read_key_file(path: &Path) -> Result<String, (u8, String)> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        (
            exit::NO_INPUT,
            format!("cannot read the API key file {}: {e}", path.display()),
        )
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err((
            exit::CONFIG,
            format!(
                "the API key file {} can be read by other users; run `chmod 600 {}`",
                path.display(),
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        (
            exit::IO_ERR,
            format!("cannot read the API key file {}: {e}", path.display()),
        )
    })?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// Makes (once) a random key in `path`, mode 0600, and returns it.
fn make_key_file(path: &Path) -> Result<String, (u8, String)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return read_key_file(path);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| (exit::FAILURE, format!("no randomness for an API key: {e}")))?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            (
                exit::CANT_CREATE,
                format!("cannot create the API key file {}: {e}", path.display()),
            )
        })?;
    file.write_all(format!("{key}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            (
                exit::IO_ERR,
                format!("cannot write the API key file {}: {e}", path.display()),
            )
        })?;
    Ok(key)
}

/// The key requests must carry: `--api-key-file`, else the environment, else (beyond loopback
/// only) one made beside the database.
fn api_key(args: &ServeArgs, loopback: bool, db: &Path) -> Result<Option<String>, (u8, String)> {
    let key = if let Some(path) = &args.api_key_file {
        Some((read_key_file(path)?, path.display().to_string()))
    } else if let Some(key) = std::env::var(API_KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty())
    {
        Some((key.trim().to_string(), API_KEY_ENV.to_string()))
    } else if !loopback {
        let path = db
            .parent()
            .map_or_else(|| PathBuf::from("api-key"), |d| d.join("api-key"));
        Some((make_key_file(&path)?, path.display().to_string()))
    } else {
        None
    };
    match key {
        Some((key, from)) if key.len() < MIN_KEY => Err((
            exit::CONFIG,
            format!("the API key from {from} is shorter than {MIN_KEY} characters"),
        )),
        Some((key, from)) => {
            eprintln!("event=startup.api_key from={from}");
            Ok(Some(key))
        }
        None => Ok(None),
    }
}

/// Runs the server; returns the exit status.
pub fn run(config: &OpenConfig, args: &ServeArgs) -> ExitCode {
    let plan = match plan(args) {
        Ok(plan) => plan,
        Err(message) => return fail("invalid_argument", exit::USAGE, &message),
    };
    let mut open = config.clone();
    open.instance_lock = true;
    let db = match AsyncStore::open(&TOOL, &open) {
        Ok(db) => Arc::new(db),
        Err(e) => return fail(e.code(), e.exit_code(), &e.to_string()),
    };
    let loopback = plan.listen.ip().is_loopback();
    let key = match api_key(args, loopback, db.path()) {
        Ok(key) => key,
        Err((status, message)) => return fail("api_key", status, &message),
    };
    // One thread for the async work: it only moves bytes (SQLite, sampling and scans have
    // threads of their own), and with a second one a streamed chunk often crossed threads
    // between the upstream connection and the client's, which cost the proxy's p99 more than
    // the parallelism gave back (measured by the proxy benchmark). It also leaves the cores to
    // llama-server, which wants all of them.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail("runtime", exit::FAILURE, &format!("cannot start: {e}")),
    };
    let log_stats = Arc::new(LogStats::default());
    let (db_layer, inbox) = logging::channel(plan.level, Arc::clone(&log_stats));
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(tracing_subscriber::filter::LevelFilter::from_level(
            plan.level,
        ));
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(console).with(db_layer),
    );
    let app: Shared = Arc::new(App {
        db: Arc::clone(&db),
        events: Events::new(),
        home: config::home(),
        api_key: key,
        loopback,
        scan_lock: tokio::sync::Mutex::new(()),
        latest: std::sync::Mutex::new(None),
        gpu_devices: AtomicU64::new(0),
        counters: Counters::default(),
        log_stats: Arc::clone(&log_stats),
        started: Instant::now(),
        requests: std::sync::Mutex::new(std::collections::VecDeque::new()),
        upstream_client: std::sync::Mutex::new(None),
        catalog: crate::proxy::catalog::Catalog::default(),
        routes: std::sync::Mutex::default(),
        activity: crate::idle::Activity::default(),
        llama: Supervisor::new(Timing::default()),
        shutdown: watch::channel(false).0,
    });
    // On the worker, not this thread: a new connection is then accepted and read where its
    // readiness is polled, with no wake-up of a second thread in between.
    let status = runtime.block_on(async {
        tokio::spawn(serve(app.clone(), plan, inbox))
            .await
            .unwrap_or(ExitCode::FAILURE)
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(app);
    if let Ok(db) = Arc::try_unwrap(db) {
        db.close();
    }
    status
}

async fn serve(
    app: Shared,
    plan: Plan,
    inbox: tokio::sync::mpsc::Receiver<logging::Record>,
) -> ExitCode {
    let listener = match TcpListener::bind(plan.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            return fail(
                "bind_failed",
                exit::UNAVAILABLE,
                &format!("cannot listen on {}: {e}", plan.listen),
            );
        }
    };
    let bound = listener.local_addr().unwrap_or(plan.listen);
    let stop_signal = shutdown_signal();
    eprintln!("event=startup.listening url=http://{bound}");
    let writer = tokio::spawn(logging::run_writer(
        Arc::clone(&app.db),
        inbox,
        app.events.clone(),
        Arc::clone(&app.log_stats),
        plan.logs,
        app.shutdown.subscribe(),
    ));
    let sampler = tokio::spawn(sample_loop(app.clone(), plan.clone()));
    tokio::spawn(publish_server_state(app.clone()));
    tokio::spawn(crate::idle::run(app.clone()));
    if args_autostart(&app).await {
        let starter = app.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::api::start_llama(&starter).await
                && !*starter.shutdown.borrow()
            {
                tracing::warn!(source = "llama-server", "not started: {}", e.message);
            }
        });
    }
    tracing::info!(
        source = "server",
        "llama-dashboard {} listening on http://{bound}",
        env!("CARGO_PKG_VERSION")
    );
    let server = crate::http::serve(
        listener,
        crate::api::router(app.clone()),
        until_stopped(app.shutdown.subscribe()),
        crate::http::HEADER_TIMEOUT,
    );
    let trigger = app.shutdown.clone();
    tokio::spawn(async move {
        stop_signal.await;
        eprintln!("event=shutdown.begin");
        tracing::info!(source = "server", "shutting down");
        let _ = trigger.send(true);
    });
    server.await;
    let _ = app.shutdown.send(true);
    app.llama.stop().await;
    let _ = sampler.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    eprintln!("event=shutdown.done");
    ExitCode::SUCCESS
}

/// Whether the settings ask for llama-server to run with the dashboard.
async fn args_autostart(app: &Shared) -> bool {
    let home = app.home.clone();
    app.db
        .read(move |conn| Ok::<_, store::Error>(config::get(conn, &home)?))
        .await
        .ok()
        .and_then(|c| {
            c.get("llama_server_enabled")
                .and_then(serde_json::Value::as_bool)
        })
        .unwrap_or(false)
}

/// Sends every state change of the owned llama-server to live streams, and keeps the catalog's
/// statuses in line with what it reports: on every change and every 3 s.
async fn publish_server_state(app: Shared) {
    let mut changes = app.llama.subscribe();
    let mut every = tokio::time::interval(Duration::from_secs(3));
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                let state = changes.borrow_and_update().clone();
                app.forget_routes();
                app.events.publish(Topic::Server, json!(state));
            }
            _ = every.tick() => {}
            _ = until_stopped(app.shutdown.subscribe()) => return,
        }
        if let Err(e) = crate::api::reconcile(&app).await {
            tracing::debug!(source = "models", "status check failed: {}", e.message);
        }
    }
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
        match handlers {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
}

/// Reads what the sampler needs from the database: the models folder and how many models are
/// loaded.
async fn catalog_state(app: &Shared) -> (PathBuf, i64) {
    let home = app.home.clone();
    let fallback = PathBuf::from(&home);
    app.db
        .read(move |conn| {
            let dir = config::models_dir(&config::get(conn, &home)?, &home);
            let loaded: i64 = conn.query_row(
                "SELECT count(*) FROM models WHERE status = 'loaded'",
                [],
                |r| r.get(0),
            )?;
            Ok::<_, store::Error>((dir, loaded))
        })
        .await
        .unwrap_or((fallback, 0))
}

/// One sampler for every dashboard: samples on the interval, publishes each sample, stores one
/// every `store_every`, and runs the metrics retention every minute.
async fn sample_loop(app: Shared, plan: Plan) {
    let (dir, _) = catalog_state(&app).await;
    let Ok(first) = tokio::task::spawn_blocking(move || Sampler::new(dir)).await else {
        return;
    };
    // A server stopped while the sampler was still starting has nothing to sample, and its
    // last log entry stays the one that says it shut down.
    if *app.shutdown.borrow() {
        return;
    }
    if let Some(reason) = first.gpu().unavailable_reason() {
        tracing::info!(source = "server", "{reason}");
    }
    let mut sampler = Some(first);
    let mut tick = tokio::time::interval(plan.sample_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut prune = tokio::time::interval(Duration::from_secs(60));
    let mut taken: u64 = 0;
    let mut tree = Some(TreeSampler::default());
    let mut throughput = Throughput::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = prune.tick() => {
                prune_metrics(&app, &plan).await;
                continue;
            }
            _ = until_stopped(app.shutdown.subscribe()) => break,
        }
        let (dir, loaded) = catalog_state(&app).await;
        let Some(mut current) = sampler.take() else {
            break;
        };
        let server = app.llama.state();
        let Some(mut llama_tree) = tree.take() else {
            break;
        };
        let joined = tokio::task::spawn_blocking(move || {
            current.set_models_dir(dir);
            let mut sample = current.sample(loaded);
            let usage = llama_tree.sample(server.pid());
            sample.llama_cpu_usage = usage.cpu_percent;
            sample.llama_memory_used = usage.memory_mib;
            let devices = current.gpu_devices();
            (sample, devices, current, llama_tree)
        })
        .await;
        let Ok((mut sample, devices, back, back_tree)) = joined else {
            tracing::error!(
                source = "server",
                "the metrics sampler failed; sampling stops"
            );
            break;
        };
        sampler = Some(back);
        tree = Some(back_tree);
        sample.tokens_per_second = match app.llama.state() {
            ServerState::Ready { url, .. } => {
                let readings = scrape::read_counters(&app.upstream(&url)).await;
                throughput.update(&readings, Instant::now())
            }
            _ => {
                throughput.reset();
                0.0
            }
        };
        sample.timestamp = crate::db::models::now();
        // The documented `uptime` is llama-server's, 0 while it is not running.
        sample.uptime = app.llama.uptime().unwrap_or(0.0);
        app.gpu_devices.store(u64::from(devices), Ordering::Relaxed);
        app.counters.samples.fetch_add(1, Ordering::Relaxed);
        if taken.is_multiple_of(plan.store_every) {
            let row = sample.clone();
            match app
                .db
                .write(move |tx| metrics::save(tx, &row).map_err(store::Error::from))
                .await
            {
                Ok(id) => {
                    sample.id = id;
                    app.counters.samples_stored.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(source = "server", "could not store metrics: {e}"),
            }
        }
        taken += 1;
        app.set_latest(sample.clone());
        app.events.publish(Topic::Metrics, json!(sample));
    }
}

async fn prune_metrics(app: &Shared, plan: &Plan) {
    let (keep, age) = (plan.metrics_keep, plan.metrics_max_age);
    let result = app
        .db
        .write(move |tx| {
            let aged = metrics::prune_older_than(tx, age)?;
            Ok::<_, store::Error>(aged + metrics::prune(tx, keep)?)
        })
        .await;
    match result {
        Ok(n) => {
            app.counters
                .metrics_pruned
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        Err(e) => tracing::warn!(source = "server", "metrics retention failed: {e}"),
    }
}
