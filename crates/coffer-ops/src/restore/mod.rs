//! Restores: a snapshot of files into a folder ([`files`]), a database snapshot into a
//! database ([`database`]). [`restore`] resolves the snapshot under a shared lock and takes the
//! path its kind calls for; options that do not apply to that kind are a usage error.

pub mod database;
pub mod files;

use crate::progress::Progress;
use crate::repo::RepoSpec;
use crate::select::{resolve_noting, SnapshotFilter};
use crate::CancellationToken;
use coffer_core::{Error, Result};
use serde::Serialize;
use std::sync::Arc;

pub use database::{DatabaseRestore, DbRestoreOutcome, DbRestorePlan, DbRestoreReport};
pub use files::{FilesRestore, FilesRestoreReport};

/// A restore.
#[derive(Debug, Clone, Default)]
pub struct Restore {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// What `latest` chooses among.
    pub filter: SnapshotFilter,
    /// A folder (file snapshots) or a database URL (database snapshots).
    pub target: String,
    /// Options of file restores.
    pub files: FilesRestore,
    /// Options of database restores.
    pub database: DatabaseRestore,
    /// Read without taking the repository's shared lock.
    pub no_lock: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RestoreReport {
    /// A file restore.
    Files(FilesRestoreReport),
    /// A database restore (or its dry run, or a declined one).
    Database(DbRestoreOutcome),
}

/// Asks whether to overwrite a non-empty database target (the CLI asks on its terminal; the
/// server's request carries the answer). Not called for dry runs or empty targets.
pub type Confirm<'a> = &'a (dyn Fn(&DbRestorePlan) -> bool + Send + Sync);

/// Restores `req.snapshot` of the repository of `spec` into `req.target`.
pub async fn restore(
    spec: &RepoSpec,
    req: Restore,
    progress: Arc<dyn Progress>,
    cancel: &CancellationToken,
    confirm: Confirm<'_>,
) -> Result<RestoreReport> {
    progress.phase(crate::Phase::Opening);
    let (locked, snapshots) = spec.open_listed("restore", req.no_lock, &*progress).await?;
    locked
        .run(|repo| async move {
            let snap = choose(&req, snapshots, &*progress)?;
            if coffer_sources::database::Engine::from_kind(&snap.source.kind).is_some() {
                if req.files.is_set() {
                    return Err(Error::usage(
                        "--include, --exclude and --overwrite apply to file restores; for \
                         databases use --table and --clean",
                    ));
                }
                let outcome = database::restore_database(
                    &repo,
                    &snap,
                    &req.target,
                    &req.database,
                    &progress,
                    cancel,
                    confirm,
                )
                .await?;
                return Ok(RestoreReport::Database(outcome));
            }
            if req.database.is_set() {
                return Err(Error::usage(format!(
                    "snapshot {} holds files: --table, --database, --schema-only, --data-only, \
                     --clean, --dry-run and --no-safety-backup apply to database snapshots",
                    snap.id.short()
                )));
            }
            let report =
                files::restore_files(&repo, &snap, &req.target, &req.files, &progress, cancel)
                    .await?;
            Ok(RestoreReport::Files(report))
        })
        .await
}

/// The snapshot to restore. With a database URL as the target (and no `--source`), `latest` is
/// the newest snapshot of that engine, not of any source; a safety backup `latest` skipped is
/// named in a note.
fn choose(
    req: &Restore,
    snapshots: Vec<coffer_core::snapshot::Snapshot>,
    progress: &dyn Progress,
) -> Result<coffer_core::snapshot::Snapshot> {
    use coffer_sources::database::{is_database_url, DbUrl};
    let engine =
        (req.snapshot == "latest" && req.filter.source.is_none() && is_database_url(&req.target))
            .then(|| DbUrl::parse(&req.target).ok().map(|u| u.engine))
            .flatten();
    let snapshots = match engine {
        Some(e) => snapshots
            .into_iter()
            .filter(|s| s.source.kind == e.kind())
            .collect(),
        None => snapshots,
    };
    let (snap, skipped) =
        resolve_noting(&req.snapshot, snapshots, &req.filter).map_err(|err| match engine {
            Some(e) => err.context(format!(
                "latest for a {} target is the newest {} snapshot",
                e.kind(),
                e.kind()
            )),
            None => err,
        })?;
    if let Some(e) = engine {
        progress.note(format!(
            "latest: snapshot {} of {} ({}), the newest {} snapshot",
            snap.id.short(),
            snap.source.location,
            snap.time.format("%Y-%m-%d %H:%M:%S UTC"),
            e.kind()
        ));
    }
    if let Some(s) = skipped {
        progress.note(format!(
            "latest skipped the newer safety backup {} (taken before a restore overwrote {}); \
             name its id to restore it",
            s.id.short(),
            s.source.location
        ));
    }
    Ok(snap)
}
