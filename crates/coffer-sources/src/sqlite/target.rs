//! The restore target before anything is written: does the file exist, does it hold anything,
//! which tables a restore would replace.

use super::copy::check_source_file;
use super::inspect::table_names;
use super::replace::folder_of;
use super::{database, file_of, is_table_restore, joined, sql_error, BUSY_TIMEOUT};
use crate::database::{select_tables, DbManifest, RestoreRequest, TargetState};
use coffer_core::Result;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// What is at the target path now.
#[derive(Debug, Clone, Default)]
pub(super) struct Existing {
    /// The file exists.
    pub exists: bool,
    /// Its size in bytes.
    pub size: u64,
    /// Its user tables.
    pub tables: Vec<String>,
    /// All its schema objects (tables, views, indexes, triggers) except SQLite's own.
    pub objects: u64,
}

impl Existing {
    /// Whether it holds nothing (no file, an empty file, or a database without objects).
    pub fn empty(&self) -> bool {
        self.objects == 0
    }
}

/// Looks at `file` (blocking). A file that exists and is not a SQLite database is an error:
/// Coffer never replaces a file it does not recognise.
pub(super) fn look(file: &Path) -> Result<Existing> {
    folder_of(file)?;
    if !file.exists() {
        return Ok(Existing::default());
    }
    check_source_file(file).map_err(|e| {
        e.context(format!(
            "the restore target {} exists and Coffer will not replace it",
            file.display()
        ))
    })?;
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        return Ok(Existing {
            exists: true,
            ..Default::default()
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(file, flags)
        .map_err(|e| sql_error("cannot open the restore target", file, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| sql_error("cannot set a busy timeout", file, e))?;
    let tables = table_names(&conn, "main", file)?;
    let objects: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| sql_error("cannot read the restore target's schema", file, e))?;
    Ok(Existing {
        exists: true,
        size,
        tables,
        objects: objects as u64,
    })
}

/// Describes the restore target: exists, empty, and the tables a restore would replace (every
/// table for a whole-file restore, the selected ones that exist for `--table`).
pub async fn probe_target(m: &DbManifest, req: &RestoreRequest) -> Result<TargetState> {
    let file: PathBuf = file_of(req.target()?)?.to_path_buf();
    let db = database(m, req.database.as_deref())?;
    let selected: Vec<String> = select_tables(db, &req.tables)?
        .into_iter()
        .map(|t| t.name.clone())
        .collect();
    let table_mode = is_table_restore(req);
    let data_only = req.data_only;
    let f = file.clone();
    let now = joined(
        tokio::task::spawn_blocking(move || look(&f)).await,
        "looking at the target",
    )?;
    let conflicts = if !now.exists || now.empty() {
        Vec::new()
    } else if !table_mode {
        // The whole file is replaced: everything in it goes.
        if now.tables.is_empty() {
            vec![format!("{} (views, indexes or triggers)", file.display())]
        } else {
            now.tables.clone()
        }
    } else if data_only {
        Vec::new()
    } else {
        selected
            .iter()
            .filter(|t| now.tables.contains(t))
            .cloned()
            .collect()
    };
    let summary = if !now.exists {
        format!(
            "SQLite file {} does not exist (it will be created)",
            file.display()
        )
    } else if now.empty() {
        format!("SQLite file {}: empty", file.display())
    } else {
        format!(
            "SQLite file {}: {} tables, {} bytes",
            file.display(),
            now.tables.len(),
            now.size
        )
    };
    Ok(TargetState {
        exists: now.exists,
        empty: now.empty(),
        summary,
        conflicts,
    })
}
