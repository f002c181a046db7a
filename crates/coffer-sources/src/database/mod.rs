//! What every database source shares: URLs, the manifest kept in the snapshot, the streams
//! (each dump stream stored as a file of the snapshot's tree), the restore request and report,
//! and the dispatch to the engine modules (`crate::postgres`, `mysql`, `sqlite`, `redis`).
//!
//! Each engine module implements [`DatabaseEngine`] once; [`engine_for`] picks the
//! implementation of an [`Engine`], and the dispatchers below go through it.

pub(crate) mod capture;
pub mod engine;
pub mod manifest;
pub(crate) mod pause;
pub mod sink;
pub mod source;
pub mod url;

pub use engine::{engine_for, DatabaseEngine};
pub use manifest::{DatabaseInfo, DbManifest, StreamInfo, TableInfo};
pub use sink::{component, AsyncStream, StreamSink, StreamWriter};
pub use source::{StreamReader, StreamSource};
pub use url::{is_database_url, DbUrl, Engine};

use coffer_core::snapshot::SnapshotStats;
use coffer_core::{Error, ErrorKind, Id, Result};
use serde::Serialize;
use std::sync::Arc;

/// What a database backup is asked to do.
pub struct BackupContext {
    /// The source (password filled in from a password file when one was given).
    pub url: DbUrl,
    /// Where the streams go.
    pub sink: Arc<StreamSink>,
    /// Tables dumped at once (PostgreSQL, MySQL).
    pub jobs: usize,
    /// Back up every database of the server (also implied by a URL without a database).
    pub all_databases: bool,
}

/// What a database restore is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    /// Where to restore.
    pub target: Option<DbUrl>,
    /// Which database of a whole-server snapshot (default: all of them, or the only one).
    pub database: Option<String>,
    /// Only these tables (`name` or `schema.name`); empty: all.
    pub tables: Vec<String>,
    /// Only the schema.
    pub schema_only: bool,
    /// Only the data (the schema must exist).
    pub data_only: bool,
    /// Drop existing objects first.
    pub clean: bool,
    /// Tables restored at once.
    pub jobs: usize,
}

impl RestoreRequest {
    /// The target; restores always have one.
    pub fn target(&self) -> Result<&DbUrl> {
        self.target
            .as_ref()
            .ok_or_else(|| Error::invalid("a database restore needs --target URL"))
    }
}

/// What `coffer dump` is asked to write.
#[derive(Debug, Clone, Default)]
pub struct DumpRequest {
    /// Which database of a whole-server snapshot.
    pub database: Option<String>,
    /// Only these tables; empty: all.
    pub tables: Vec<String>,
    /// Only the schema.
    pub schema_only: bool,
    /// Only the data.
    pub data_only: bool,
}

/// The state of a restore target before anything is written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetState {
    /// The database (or file, or server) exists.
    pub exists: bool,
    /// It holds no user data (no tables, no keys, an empty file).
    pub empty: bool,
    /// One line describing it (`database app on 127.0.0.1:5432: 12 tables, 3.1 MiB`).
    pub summary: String,
    /// Objects the restore would overwrite (tables that exist already); restoring over them
    /// needs `--clean`.
    pub conflicts: Vec<String>,
}

/// A row (or key) count compared after a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountCheck {
    /// `schema.table`, `db0`, ...
    pub object: String,
    /// The count in the manifest.
    pub expected: u64,
    /// The count found in the target after the restore.
    pub actual: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// The target, redacted.
    pub target: String,
    /// Tables (or databases, or dbs) restored.
    pub restored: Vec<String>,
    /// Row or key counts compared with the manifest.
    pub counts: Vec<CountCheck>,
    /// Anything the user should know (ignored errors, skipped objects).
    pub warnings: Vec<String>,
}

impl RestoreReport {
    /// The counts that differ from the manifest.
    pub fn mismatches(&self) -> Vec<&CountCheck> {
        self.counts
            .iter()
            .filter(|c| c.expected != c.actual)
            .collect()
    }
}

/// Runs the engine's backup into `ctx.sink`, then writes the tree. Returns the root tree, the
/// manifest (streams filled in) and the statistics. The caller writes the snapshot.
pub async fn backup(ctx: BackupContext) -> Result<(Id, DbManifest, SnapshotStats)> {
    let sink = ctx.sink.clone();
    let engine = ctx.url.engine;
    let mut manifest = engine_for(engine).backup(&ctx).await?;
    drop(ctx);
    manifest.engine = engine.kind().to_string();
    let (root, streams, stats) = tokio::task::spawn_blocking(move || sink.finish())
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Storage,
                format!("writing the tree panicked: {e}"),
            )
        })??;
    manifest.streams = streams;
    Ok((root, manifest, stats))
}

/// Looks at the target before a restore: does it exist, is it empty, what would be replaced.
pub async fn probe_target(manifest: &DbManifest, req: &RestoreRequest) -> Result<TargetState> {
    engine_for(req.target()?.engine)
        .probe_target(manifest, req)
        .await
}

/// Restores `src` into the target, then compares row (or key) counts with the manifest.
pub async fn restore(
    src: &StreamSource,
    manifest: &DbManifest,
    req: &RestoreRequest,
) -> Result<RestoreReport> {
    let target = req.target()?;
    check_engine(manifest, target.engine)?;
    engine_for(target.engine).restore(src, manifest, req).await
}

/// Writes the plain dump (SQL for PostgreSQL and MySQL, the database file for SQLite, the RDB
/// file for Redis) to `out`, needing no server.
pub async fn dump(
    src: &StreamSource,
    manifest: &DbManifest,
    req: &DumpRequest,
    out: &mut (dyn std::io::Write + Send),
) -> Result<()> {
    let engine = Engine::from_kind(&manifest.engine).ok_or_else(|| {
        Error::invalid(format!(
            "this snapshot's source is {:?}, not a database: use restore",
            manifest.engine
        ))
    })?;
    engine_for(engine).dump(src, manifest, req, out).await
}

/// Fails unless the snapshot was taken from `engine`.
pub fn check_engine(manifest: &DbManifest, engine: Engine) -> Result<()> {
    if manifest.engine != engine.kind() {
        return Err(Error::invalid(format!(
            "this snapshot holds a {} backup; it cannot be restored into a {} target",
            manifest.engine,
            engine.kind()
        )));
    }
    Ok(())
}

/// The tables of `db` that `--table` arguments name (all when `args` is empty). An argument
/// that names no table is an error listing the tables there are.
pub fn select_tables<'a>(db: &'a DatabaseInfo, args: &[String]) -> Result<Vec<&'a TableInfo>> {
    if args.is_empty() {
        return Ok(db.tables.iter().collect());
    }
    let mut out = Vec::new();
    for a in args {
        let hits: Vec<&TableInfo> = db.tables.iter().filter(|t| t.matches(a)).collect();
        match hits.len() {
            0 => {
                let mut names: Vec<String> = db.tables.iter().map(|t| t.qualified()).collect();
                names.truncate(20);
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "the snapshot of database {} has no table {a:?} (tables: {})",
                        db.name,
                        names.join(", ")
                    ),
                ));
            }
            1 => out.push(hits[0]),
            _ => {
                return Err(Error::new(
                    ErrorKind::Ambiguous,
                    format!(
                        "--table {a:?} matches {}: qualify it with its schema",
                        hits.iter()
                            .map(|t| t.qualified())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        }
    }
    out.dedup_by(|a, b| a.qualified() == b.qualified());
    Ok(out)
}

/// A source error (unreachable server, bad credentials, failed tool) with context.
pub fn source_error(context: impl Into<String>) -> Error {
    Error::new(ErrorKind::Source, context)
}
