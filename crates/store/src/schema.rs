//! Reading a database's own layout: which tables are the tool's, and how to name them in SQL.
//!
//! Identifying a file, deciding whether a database "holds data" before a restore replaces it, and
//! discounting the rows migrations seed all walk the tool's tables, and must skip SQLite's internal
//! tables and refinery's history table the same way. Names read from a file (or given by tool code)
//! are quoted before they are put into SQL.

use rusqlite::Connection;

use crate::migrate::HISTORY_TABLE;

/// The tool's tables, by name: everything but SQLite's internal tables and the migration history.
pub(crate) fn user_tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table'
           AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> ?1 ORDER BY name",
    )?;
    let names = stmt.query_map([HISTORY_TABLE], |r| r.get::<_, String>(0))?;
    names.collect()
}

/// Whether a table of this name exists.
pub(crate) fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )
}

/// A name quoted as an SQL identifier: `a"b` becomes `"a""b"`.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_tables_skip_sqlite_and_migration_history() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE b(x); CREATE TABLE a(x); CREATE TABLE {HISTORY_TABLE}(v);
             CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT); ANALYZE;"
        ))
        .unwrap();
        assert_eq!(user_tables(&conn).unwrap(), ["a", "b", "t"]);
        assert!(has_table(&conn, HISTORY_TABLE).unwrap());
        assert!(!has_table(&conn, "nope").unwrap());
    }

    #[test]
    fn quoted_names_cannot_break_out() {
        let conn = Connection::open_in_memory().unwrap();
        let name = "we\"ird; DROP TABLE x";
        conn.execute_batch(&format!("CREATE TABLE {}(v)", quote_ident(name)))
            .unwrap();
        assert_eq!(user_tables(&conn).unwrap(), [name]);
    }
}
