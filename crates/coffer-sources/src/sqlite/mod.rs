//! The SQLite source: `sqlite:///PATH/TO/DB`.
//!
//! **Backup.** The online backup API copies the database, page by page, into a temporary file in
//! the system temporary folder (`TMPDIR`), inside one read transaction on the source, so the
//! copy is the state of one committed transaction even while other processes write (WAL mode
//! or rollback journal; in rollback-journal mode writers wait for the copy, up to their busy
//! timeout). The copy is checked (`PRAGMA integrity_check`), its tables counted, then stored as
//! one stream, `db/<file name>`; the temporary copy is always removed (on error too). SQLite
//! rewrites pages in place, so the content-defined chunks of an unchanged region dedup.
//!
//! A copy whose integrity check fails is **stored anyway**, with the check's result in the
//! manifest and a warning: a damaged database may be the only copy its owner has, and SQLite's
//! recovery tools can still salvage it. A restore of such a snapshot goes ahead only when the
//! restored file shows the same result as the manifest, and says so in its warnings. A file so
//! damaged that SQLite cannot read its schema fails the backup with an error saying so.
//!
//! **Restore.** The whole file: written to a temporary file in the target's folder, fsynced,
//! integrity-checked, then renamed over the target; stale `-wal`, `-shm` and `-journal` files
//! of the old target are removed (after a checkpoint made them empty), so a crash never leaves
//! a half-written database. `--table` (and `--schema-only` / `--data-only`) copies the named
//! tables, with their indexes and triggers, from the snapshot's database (attached) into the
//! target in one transaction. Row counts are measured in the target afterwards.
//!
//! **Dump.** The database file's bytes, exactly as stored.
//!
//! [`SqliteEngine`] implements [`DatabaseEngine`] with `backup.rs`, `target.rs` (the probe),
//! `restore.rs` and `dump.rs`.

mod backup;
mod copy;
mod dump;
mod inspect;
mod replace;
mod restore;
mod tables;
mod target;

use crate::database::{
    component, source_error, BackupContext, DatabaseEngine, DatabaseInfo, DbManifest, DbUrl,
    DumpRequest, Engine, RestoreReport, RestoreRequest, StreamSource, TargetState,
};
use async_trait::async_trait;
use coffer_core::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The SQLite engine ([`DatabaseEngine`]).
pub struct SqliteEngine;

#[async_trait]
impl DatabaseEngine for SqliteEngine {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn example_target(&self) -> &'static str {
        "sqlite:///PATH/TO/NEW.db"
    }

    async fn backup(&self, ctx: &BackupContext) -> Result<DbManifest> {
        backup::backup(ctx).await
    }

    async fn probe_target(&self, m: &DbManifest, req: &RestoreRequest) -> Result<TargetState> {
        target::probe_target(m, req).await
    }

    async fn restore(
        &self,
        src: &StreamSource,
        m: &DbManifest,
        req: &RestoreRequest,
    ) -> Result<RestoreReport> {
        restore::restore(src, m, req).await
    }

    async fn dump(
        &self,
        src: &StreamSource,
        m: &DbManifest,
        req: &DumpRequest,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<()> {
        dump::dump(src, m, req, out).await
    }
}

/// How long a connection waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The first 16 bytes of every SQLite 3 database file.
const HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The database file a URL names.
fn file_of(url: &DbUrl) -> Result<&Path> {
    url.path.as_deref().ok_or_else(|| {
        Error::invalid(format!(
            "{} names no database file: use sqlite:///PATH/TO/DB",
            url.redacted()
        ))
    })
}

/// The stream holding the database file of `db`.
fn stream_path(m: &DbManifest, db: &DatabaseInfo) -> String {
    m.details
        .get("stream")
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("db/{}", component(&db.name)))
}

/// The one database of a SQLite snapshot (checked against `--database`).
fn database<'a>(m: &'a DbManifest, name: Option<&str>) -> Result<&'a DatabaseInfo> {
    match (m.databases.first(), name) {
        (None, _) => Err(Error::corrupt(
            "this SQLite snapshot's manifest lists no database",
        )),
        (Some(db), None) => Ok(db),
        (Some(db), Some(n)) if db.name == n => Ok(db),
        (Some(db), Some(n)) => Err(Error::not_found(format!(
            "this SQLite snapshot holds the database {:?}, not {n:?}",
            db.name
        ))),
    }
}

/// Whether the request restores single tables (attach and copy) rather than the whole file.
fn is_table_restore(req: &RestoreRequest) -> bool {
    !req.tables.is_empty() || req.schema_only || req.data_only
}

/// The sidecar files SQLite keeps next to a database.
fn sidecars(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [with("-wal"), with("-shm"), with("-journal")]
}

/// Turns a SQLite error into a Coffer error naming the file and what was being done.
fn sql_error(what: &str, file: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    let shown = file.display();
    let (kind, hint) = match e.sqlite_error_code() {
        Some(C::NotADatabase) => (
            ErrorKind::InvalidInput,
            " (the file is not a SQLite database, or it is encrypted)",
        ),
        Some(C::DatabaseBusy) | Some(C::DatabaseLocked) => (
            ErrorKind::Source,
            " (another process held a lock on it for longer than the busy timeout: retry when it is less busy)",
        ),
        Some(C::CannotOpen) => (
            ErrorKind::Source,
            " (check that the file and its folder exist and that this user may read them and write the folder: SQLite needs the -shm file of a WAL database)",
        ),
        Some(C::ReadOnly) => (
            ErrorKind::Source,
            " (the file or its folder is read-only for this user)",
        ),
        Some(C::PermissionDenied) => (ErrorKind::Source, " (permission denied)"),
        Some(C::DatabaseCorrupt) => (ErrorKind::Source, " (the database is damaged)"),
        Some(C::DiskFull) => (ErrorKind::Storage, " (the disk is full)"),
        _ => (ErrorKind::Source, ""),
    };
    Error::new(kind, format!("{what} ({shown}){hint}")).with_source(e)
}

/// Quotes an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Converts a join error of a blocking task.
fn joined<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>, what: &str) -> Result<T> {
    r.map_err(|e| source_error(format!("{what} panicked: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_names_and_quoting() {
        let [w, s, j] = sidecars(Path::new("/x/app.db"));
        assert_eq!(w, Path::new("/x/app.db-wal"));
        assert_eq!(s, Path::new("/x/app.db-shm"));
        assert_eq!(j, Path::new("/x/app.db-journal"));
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn database_selection() {
        let m = DbManifest {
            databases: vec![DatabaseInfo {
                name: "app.db".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(database(&m, None).unwrap().name, "app.db");
        assert_eq!(database(&m, Some("app.db")).unwrap().name, "app.db");
        assert_eq!(
            database(&m, Some("other")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(stream_path(&m, &m.databases[0]), "db/app.db");
    }
}
