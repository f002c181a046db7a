//! Restoring single tables (`--table`, `--schema-only`, `--data-only`): the snapshot's database
//! is written next to the target, attached, and the tables (with their indexes, triggers and
//! AUTOINCREMENT counters) are copied into the target in one transaction, so the target holds
//! either all of them or none.

use super::copy::TempFile;
use super::inspect::table_names;
use super::replace::{folder_of, materialize};
use super::restore::verify_counts;
use super::{ident, joined, sql_error, stream_path, BUSY_TIMEOUT};
use crate::database::{DatabaseInfo, DbManifest, RestoreReport, RestoreRequest, StreamSource};
use coffer_core::{Error, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};

/// The name the snapshot's database is attached under.
const SNAP: &str = "coffer_snapshot";

/// Copies `selected` tables from the snapshot into the target (created when missing).
pub(super) async fn restore_tables(
    src: &StreamSource,
    m: &DbManifest,
    db: &DatabaseInfo,
    req: &RestoreRequest,
    target: &Path,
    selected: Vec<String>,
) -> Result<RestoreReport> {
    if req.schema_only && req.data_only {
        return Err(Error::invalid(
            "--schema-only and --data-only exclude each other",
        ));
    }
    let (dir, base) = folder_of(target)?;
    let stream = stream_path(m, db);
    let stage = materialize(src, &stream, &dir, &format!("{base}.snapshot"))
        .await
        .map_err(|e| {
            e.context(format!(
                "table restore step 1 of 2 (writing the snapshot's database to a staging file in {}) failed; the target was not changed",
                dir.display()
            ))
            .untouched()
        })?;
    let plan = Plan {
        target: target.to_path_buf(),
        tables: selected.clone(),
        views: req.tables.is_empty() && !req.data_only,
        schema_only: req.schema_only,
        data_only: req.data_only,
        clean: req.clean,
        page_size: db.page_size,
    };
    let warnings = joined(
        tokio::task::spawn_blocking(move || copy_tables(&plan, stage)).await,
        "the table restore",
    )?;
    let counts = if req.schema_only {
        Vec::new()
    } else {
        verify_counts(target.to_path_buf(), db, selected.clone()).await?
    };
    Ok(RestoreReport {
        target: String::new(),
        restored: selected,
        counts,
        warnings,
    })
}

/// What [`copy_tables`] does.
struct Plan {
    target: PathBuf,
    tables: Vec<String>,
    views: bool,
    schema_only: bool,
    data_only: bool,
    clean: bool,
    page_size: Option<u64>,
}

/// Attaches `stage` to the target and copies the tables in one transaction (blocking).
fn copy_tables(plan: &Plan, stage: TempFile) -> Result<Vec<String>> {
    let target = &plan.target;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(target, flags)
        .map_err(|e| sql_error("cannot open the restore target", target, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| sql_error("cannot set a busy timeout", target, e))?;
    let fresh: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(|e| sql_error("cannot read the restore target", target, e))?;
    if fresh == 0 {
        if let Some(ps) = plan.page_size {
            let _ = conn.execute_batch(&format!("PRAGMA page_size = {ps}"));
        }
    }
    conn.execute_batch("PRAGMA foreign_keys = OFF")
        .map_err(|e| sql_error("cannot turn foreign key checks off", target, e))?;
    conn.execute(
        &format!("ATTACH DATABASE ?1 AS {SNAP}"),
        [stage.path().to_string_lossy()],
    )
    .map_err(|e| sql_error("cannot attach the snapshot's database", stage.path(), e))?;

    let result = (|| -> Result<Vec<String>> {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sql_error("cannot start a write transaction", target, e))?;
        let before = table_names(&tx, "main", target)?;
        let mut warnings = Vec::new();
        for t in &plan.tables {
            let now = table_names(&tx, "main", target)?;
            if !before.contains(t) && now.contains(t) {
                // Made by a virtual table created just before (an FTS shadow table).
                warnings.push(format!(
                    "table {t:?} was created with the virtual table it belongs to"
                ));
                if plan.schema_only {
                    continue;
                }
                if !plan.data_only {
                    tx.execute_batch(&format!("DELETE FROM main.{}", ident(t)))
                        .map_err(|e| step_error(t, "emptying it", target, e))?;
                }
            } else {
                copy_one(&tx, plan, t, now.contains(t))?;
            }
        }
        if plan.views {
            copy_views(&tx, target)?;
        }
        tx.commit()
            .map_err(|e| sql_error("cannot commit the restored tables", target, e))?;
        Ok(warnings)
    })();
    let _ = conn.execute_batch(&format!("DETACH DATABASE {SNAP}"));
    drop(conn);
    drop(stage);
    result.map_err(|e| {
        e.context("table restore step 2 of 2 failed; the transaction was rolled back and the target is unchanged")
            .untouched()
    })
}

fn step_error(table: &str, step: &str, target: &Path, e: rusqlite::Error) -> Error {
    sql_error(&format!("table {table:?}: {step} failed"), target, e)
}

/// Copies one table: schema (unless `--data-only`), rows (unless `--schema-only`), indexes,
/// triggers and its AUTOINCREMENT counter.
fn copy_one(tx: &Connection, plan: &Plan, t: &str, exists: bool) -> Result<()> {
    let target = &plan.target;
    let q = ident(t);
    if plan.data_only {
        if !exists {
            return Err(Error::not_found(format!(
                "--data-only: the table {t:?} does not exist in the target; restore it without --data-only"
            )));
        }
        if plan.clean {
            tx.execute_batch(&format!("DELETE FROM main.{q}"))
                .map_err(|e| step_error(t, "emptying it (--clean)", target, e))?;
        }
    } else {
        if exists {
            if !plan.clean {
                return Err(Error::invalid(format!(
                    "the table {t:?} exists in the target: pass --clean to replace it"
                )));
            }
            tx.execute_batch(&format!("DROP TABLE main.{q}"))
                .map_err(|e| step_error(t, "dropping the existing table", target, e))?;
        }
        let sql: String = tx
            .query_row(
                &format!("SELECT sql FROM {SNAP}.sqlite_schema WHERE type = 'table' AND name = ?1"),
                [t],
                |r| r.get(0),
            )
            .map_err(|e| step_error(t, "reading its schema", target, e))?;
        tx.execute_batch(&sql)
            .map_err(|e| step_error(t, "creating it", target, e))?;
    }
    if !plan.schema_only {
        let cols = insertable_columns(tx, t)
            .map_err(|e| step_error(t, "reading its columns", target, e))?;
        let list = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
        tx.execute_batch(&format!(
            "INSERT INTO main.{q} ({list}) SELECT {list} FROM {SNAP}.{q}"
        ))
        .map_err(|e| step_error(t, "copying its rows", target, e))?;
        copy_sequence(tx, t)
            .map_err(|e| step_error(t, "setting its AUTOINCREMENT counter", target, e))?;
    }
    if !plan.data_only {
        let mut st = tx
            .prepare(&format!(
                "SELECT sql FROM {SNAP}.sqlite_schema WHERE tbl_name = ?1 AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name"
            ))
            .map_err(|e| step_error(t, "reading its indexes and triggers", target, e))?;
        let sqls: Vec<String> = st
            .query_map([t], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| step_error(t, "reading its indexes and triggers", target, e))?;
        for sql in sqls {
            tx.execute_batch(&sql)
                .map_err(|e| step_error(t, "creating its indexes and triggers", target, e))?;
        }
    }
    Ok(())
}

/// The snapshot table's columns a row copy writes (not generated or hidden ones).
fn insertable_columns(tx: &Connection, t: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = tx.prepare(&format!("PRAGMA {SNAP}.table_xinfo({})", ident(t)))?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(6)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, hidden) = row?;
        if hidden == 0 {
            out.push(name);
        }
    }
    Ok(out)
}

/// Copies the table's `sqlite_sequence` entry, when it has one.
fn copy_sequence(tx: &Connection, t: &str) -> rusqlite::Result<()> {
    let has = |db: &str| -> rusqlite::Result<bool> {
        tx.query_row(
            &format!("SELECT 1 FROM {db}.sqlite_schema WHERE name = 'sqlite_sequence'"),
            [],
            |_| Ok(()),
        )
        .optional()
        .map(|o| o.is_some())
    };
    if !has(SNAP)? || !has("main")? {
        return Ok(());
    }
    tx.execute("DELETE FROM main.sqlite_sequence WHERE name = ?1", [t])?;
    tx.execute(
        &format!("INSERT INTO main.sqlite_sequence (name, seq) SELECT name, seq FROM {SNAP}.sqlite_sequence WHERE name = ?1"),
        [t],
    )?;
    Ok(())
}

/// Creates the snapshot's views that the target lacks (a restore of every table).
fn copy_views(tx: &Connection, target: &Path) -> Result<()> {
    let read = || -> rusqlite::Result<Vec<(String, String)>> {
        let mut st = tx.prepare(&format!(
            "SELECT s.name, s.sql FROM {SNAP}.sqlite_schema s WHERE s.type = 'view' AND s.sql IS NOT NULL AND NOT EXISTS (SELECT 1 FROM main.sqlite_schema m WHERE m.name = s.name) ORDER BY s.rowid"
        ))?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    };
    let views = read().map_err(|e| sql_error("cannot read the snapshot's views", target, e))?;
    for (name, sql) in views {
        tx.execute_batch(&sql)
            .map_err(|e| sql_error(&format!("view {name:?}: creating it failed"), target, e))?;
    }
    Ok(())
}
