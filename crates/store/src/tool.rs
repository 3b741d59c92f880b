//! What a tool tells the store about itself.
//!
//! A tool declares one `static` [`Tool`]: its name, the `application_id` stamped into its files (so
//! one tool never opens another's database), where its database lives, its embedded refinery
//! migrations, and optionally how to adopt a database made by the original system before it had
//! migration history. Everything else about the file is the store's business.

use rusqlite::Connection;

use crate::location::Location;

/// Adopts a database made by the original system; see [`Tool::adopt`].
pub type Adopter = fn(&Connection) -> rusqlite::Result<Option<i64>>;

/// A tool's identity and schema, as the store needs them.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The tool's name as users type it (`portman`), used in messages and backup file names.
    pub name: &'static str,
    /// `PRAGMA application_id` of this tool's databases. Pick a distinctive non-zero value.
    pub application_id: i32,
    /// Where the database lives.
    pub location: Location,
    /// The embedded migrations: `embedded::migrations::runner` from refinery's `embed_migrations!`.
    pub migrations: fn() -> refinery::Runner,
    /// Adopts a database that has tables but neither our `application_id` nor migration history
    /// (one made by the original system). It runs inside the migration transaction, may alter the
    /// schema, and returns the migration version the file now matches; those migrations are
    /// recorded as applied without running and later ones run normally. `Ok(None)` means "not a
    /// database I recognise", which refuses the file. Without an adopter such files are refused.
    pub adopt: Option<Adopter>,
}

impl Tool {
    /// The environment variable that turns off the filesystem check: `PORTMAN_ALLOW_UNSUPPORTED_FS`.
    pub fn filesystem_opt_out_var(&self) -> String {
        format!(
            "{}_ALLOW_UNSUPPORTED_FS",
            self.name.to_ascii_uppercase().replace('-', "_")
        )
    }
}
