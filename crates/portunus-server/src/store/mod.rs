//! The control plane's state: one SQLite file, `<data-dir>/state.db`, opened through the shared
//! store crate.
//!
//! The data directory is `--data-dir`, else `PORTUNUS_DATA_DIR`, else `$XDG_STATE_HOME/portunus/`
//! (or `~/.local/state/portunus/`), as the seed documents; it also holds `server.toml`,
//! `server.crt` and `server.key`, which `reset` never touches. Migrations are the refinery files
//! in `src/store/migrations/`. Every table is STRICT and every time is Unix milliseconds.

use store::{DefaultPath, Location, Tool};

mod embedded {
    refinery::embed_migrations!("src/store/migrations");
}

/// `portunus-server`: `<data-dir>/state.db`.
pub static TOOL: Tool = Tool {
    name: "portunus-server",
    application_id: 0x5052_544e, // "PRTN"
    location: Location {
        env_var: "PORTUNUS_DATA_DIR",
        flag: "--data-dir",
        file_in_dir: Some("state.db"),
        default: DefaultPath::XdgState("portunus"),
    },
    migrations: embedded::migrations::runner,
    adopt: None,
};

/// The tables the seed lists, all of which the first migration creates.
pub const SEED_TABLES: [&str; 14] = [
    "users",
    "credentials",
    "grants",
    "rules",
    "rule_targets",
    "audit",
    "rate_limit_owner",
    "traffic_quotas",
    "traffic_samples_1m",
    "traffic_samples_1h",
    "web_sessions",
    "login_attempts",
    "onboarding_setup",
    "client_enrollments",
];
