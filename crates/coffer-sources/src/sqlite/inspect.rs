//! What Coffer records about a SQLite database: page size, integrity check, tables with exact
//! row counts, the application's schema version, `user_version`.

use super::{ident, sql_error};
use crate::database::TableInfo;
use coffer_core::Result;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::Path;

/// Lines of a failed integrity check kept in the manifest.
const MAX_INTEGRITY_LINES: usize = 20;

/// Facts about one database file.
#[derive(Debug, Clone, Default)]
pub(super) struct Facts {
    /// `PRAGMA page_size`.
    pub page_size: u64,
    /// `PRAGMA page_count`.
    pub page_count: u64,
    /// `PRAGMA freelist_count`.
    pub freelist_count: u64,
    /// `PRAGMA user_version`.
    pub user_version: i64,
    /// `PRAGMA application_id`.
    pub application_id: i64,
    /// `PRAGMA encoding`.
    pub encoding: String,
    /// `PRAGMA integrity_check`, its lines joined (`ok` when sound); `None` when not run.
    pub integrity: Option<String>,
    /// Tables (not views, not SQLite's own) with exact row counts, by name.
    pub tables: Vec<TableInfo>,
    /// The application's schema version, when a migrations table holds one, and that table.
    pub schema_version: Option<(String, String)>,
    /// Things worth a warning (tables that could not be counted).
    pub warnings: Vec<String>,
}

/// Opens a database file Coffer wrote itself (a copy, a restored file) for reading.
pub(super) fn open_copy(file: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(file, flags)
        .map_err(|e| sql_error("cannot open the database", file, e))?;
    conn.busy_timeout(super::BUSY_TIMEOUT)
        .map_err(|e| sql_error("cannot set a busy timeout", file, e))?;
    Ok(conn)
}

/// Reads the facts of the database `conn` has open (`file` names it in errors).
pub(super) fn inspect(conn: &Connection, file: &Path, integrity: bool) -> Result<Facts> {
    let pragma_i = |name: &str| -> Result<i64> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .map_err(|e| sql_error(&format!("cannot read PRAGMA {name}"), file, e))
    };
    let mut f = Facts {
        page_size: pragma_i("page_size")? as u64,
        page_count: pragma_i("page_count")? as u64,
        freelist_count: pragma_i("freelist_count")? as u64,
        user_version: pragma_i("user_version")?,
        application_id: pragma_i("application_id")?,
        encoding: conn
            .query_row("PRAGMA encoding", [], |r| r.get(0))
            .map_err(|e| sql_error("cannot read PRAGMA encoding", file, e))?,
        ..Default::default()
    };
    for name in table_names(conn, "main", file)? {
        let sql = format!("SELECT count(*) FROM main.{}", ident(&name));
        match conn.query_row(&sql, [], |r| r.get::<_, i64>(0)) {
            Ok(rows) => f.tables.push(TableInfo {
                schema: None,
                name,
                rows: rows as u64,
                stream: None,
            }),
            // A virtual table whose module this build lacks: its shadow tables are counted.
            Err(e) => f
                .warnings
                .push(format!("table {name:?} could not be counted: {e}")),
        }
    }
    f.schema_version = schema_version(conn, &f.tables);
    if integrity {
        f.integrity = Some(integrity_check(conn, file)?);
    }
    Ok(f)
}

/// The user tables of schema `db` (`main`, or an attached name), sorted by name.
pub(super) fn table_names(conn: &Connection, db: &str, file: &Path) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT name FROM {}.sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        ident(db)
    );
    let read = || -> rusqlite::Result<Vec<String>> {
        let mut st = conn.prepare(&sql)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    };
    read().map_err(|e| sql_error("cannot list the tables", file, e))
}

/// `PRAGMA integrity_check`: `ok`, or its first lines.
pub(super) fn integrity_check(conn: &Connection, file: &Path) -> Result<String> {
    let read = || -> rusqlite::Result<Vec<String>> {
        let mut st = conn.prepare(&format!("PRAGMA integrity_check({MAX_INTEGRITY_LINES})"))?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    };
    let lines = read().map_err(|e| sql_error("the integrity check could not run", file, e))?;
    Ok(lines.join("\n"))
}

/// The schema version an application's migrations table holds, if any.
fn schema_version(conn: &Connection, tables: &[TableInfo]) -> Option<(String, String)> {
    let has = |n: &str| tables.iter().any(|t| t.name == n);
    let one = |sql: &str| -> Option<String> {
        conn.query_row(sql, [], |r| r.get::<_, Option<rusqlite::types::Value>>(0))
            .optional()
            .ok()
            .flatten()
            .flatten()
            .and_then(|v| match v {
                rusqlite::types::Value::Integer(i) => Some(i.to_string()),
                rusqlite::types::Value::Text(s) => Some(s),
                rusqlite::types::Value::Real(r) => Some(r.to_string()),
                _ => None,
            })
    };
    let candidates: [(&str, &str); 5] = [
        (
            "alembic_version",
            "SELECT group_concat(version_num, ',') FROM (SELECT version_num FROM alembic_version ORDER BY version_num)",
        ),
        (
            "schema_migrations",
            "SELECT version FROM schema_migrations ORDER BY length(version) DESC, version DESC LIMIT 1",
        ),
        (
            "flyway_schema_history",
            "SELECT version FROM flyway_schema_history WHERE success AND version IS NOT NULL ORDER BY installed_rank DESC LIMIT 1",
        ),
        (
            "__diesel_schema_migrations",
            "SELECT max(version) FROM __diesel_schema_migrations",
        ),
        ("_sqlx_migrations", "SELECT max(version) FROM _sqlx_migrations"),
    ];
    candidates
        .iter()
        .filter(|(t, _)| has(t))
        .find_map(|(t, sql)| one(sql).map(|v| (v, t.to_string())))
}

/// Row counts of `names` in `main`, as found now (after a restore).
pub(super) fn count_rows(conn: &Connection, names: &[String]) -> Vec<(String, Option<u64>)> {
    names
        .iter()
        .map(|n| {
            let sql = format!("SELECT count(*) FROM main.{}", ident(n));
            let c = conn
                .query_row(&sql, [], |r| r.get::<_, i64>(0))
                .ok()
                .map(|c| c as u64);
            (n.clone(), c)
        })
        .collect()
}
