//! Port Keeper's identity for the shared store: where its database lives, its migrations, and how a
//! database made by the original Port Keeper is adopted.
//!
//! The schema itself is the seed's, verbatim, in `migrations/V1__documented_schema.sql`; later
//! migrations only ever add. The seed's own `migrations` table is kept too (one row per schema
//! version, as the documented SQL expects), beside the store's checksummed refinery history.

use store::{DefaultPath, Location, Tool};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The `portman` tool: `~/.portkeeper/database.db`, overridden by `--db` or `PORTMAN_DB`.
pub static TOOL: Tool = Tool {
    name: "portman",
    application_id: 0x504f_5254, // "PORT"
    location: Location {
        env_var: "PORTMAN_DB",
        flag: "--db",
        file_in_dir: None,
        default: DefaultPath::Home(".portkeeper/database.db"),
    },
    migrations: embedded::migrations::runner,
    adopt: None,
};
