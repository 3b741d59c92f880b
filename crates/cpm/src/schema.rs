//! cpm's identity for the shared store: where its database lives, its migrations, and how a
//! database made by the original cpm is adopted.
//!
//! V1 is the seed's schema verbatim; V2 adds our tables (several keys per user, replication status,
//! audit log). The original created the V1 tables with `CREATE TABLE IF NOT EXISTS` and kept no
//! migration history, so an existing `~/.cpm/cpm.db` is adopted: V1 is run over it (creating only
//! what is missing), recorded as applied, and V2 follows.

use rusqlite::Connection;
use store::{DefaultPath, Location, Tool};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The `cpm` tool: `~/.cpm/cpm.db`, overridden by `--db` or `CPM_DB`.
pub static TOOL: Tool = Tool {
    name: "cpm",
    application_id: 0x4350_4d31, // "CPM1"
    location: Location {
        env_var: "CPM_DB",
        flag: "--db",
        file_in_dir: None,
        default: DefaultPath::Home(".cpm/cpm.db"),
    },
    migrations: embedded::migrations::runner,
    adopt: Some(adopt_original),
};

const V1: &str = include_str!("../migrations/V1__documented_schema.sql");

/// Adopts a database the original cpm made: it has the documented `users` and `repositories`
/// tables and no history. Anything else is not ours.
fn adopt_original(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let has = |table: &str, column: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    if !(has("users", "username")?
        && has("repositories", "org_id")?
        && has("organizations", "name")?)
    {
        return Ok(None);
    }
    conn.execute_batch(V1)?;
    Ok(Some(1))
}
