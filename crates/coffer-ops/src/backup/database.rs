//! Backing up a database (PostgreSQL, MySQL/MariaDB, SQLite, Redis) into a new snapshot; also
//! the safety backup a database restore takes of its target first.

use super::{note_fallback, with_session, BackupReport, BackupRequest};
use crate::assemble::{assemble, Content};
use crate::parent::{choose_parent, ParentChoice, SourceKey};
use crate::progress::Progress;
use crate::repo::{LockMode, RepoSpec};
use crate::CancellationToken;
use coffer_core::snapshot::{Snapshot, SourceInfo};
use coffer_core::{Error, ErrorKind, Indexed, Repository, Result};
use coffer_sources::database::{self, BackupContext, DbManifest, DbUrl, StreamSink};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A database backup.
#[derive(Debug, Clone)]
pub struct DatabaseBackup {
    /// The server and database (its password filled in from a file when one was given).
    pub url: DbUrl,
    /// Labels, type and mirrors.
    pub request: BackupRequest,
    /// Tables dumped at once (default: the cores, at most 4).
    pub jobs: Option<usize>,
    /// Every database of the server (also what a URL without a database means).
    pub all_databases: bool,
}

/// Said of a backup that failed because the repository's storage is full.
const REPOSITORY_FULL: &str = " because the repository's disk is full (free space there or use \
                               another repository, then run the backup again)";

/// The default number of parallel table dumps or loads: the cores, at most 4.
pub fn default_jobs() -> usize {
    crate::cores().clamp(1, 4)
}

/// Parses a database URL (a usage error when it is not one) and fills its password from the
/// first line of `password_file` when one is given.
pub fn database_url(text: &str, password_file: Option<&Path>) -> Result<DbUrl> {
    let mut url = DbUrl::parse(text).map_err(|e| Error::usage(format!("{e:#}")))?;
    if let Some(f) = password_file {
        let raw = crate::password::read_password_file(f)?;
        url.password = Some(
            String::from_utf8(raw.to_vec())
                .map_err(|_| Error::usage(format!("{} is not UTF-8 text", f.display())))?,
        );
    }
    Ok(url)
}

/// What [`store_database`] wrote.
pub(crate) struct Stored {
    pub(crate) snapshot: Snapshot,
    pub(crate) manifest: DbManifest,
    pub(crate) seconds: f64,
    pub(crate) choice: ParentChoice,
}

/// Backs up `url` into `repo` (whose lock the caller holds) and writes the snapshot. On failure
/// nothing is listed; what was uploaded stays indexed for the next run.
pub(crate) async fn store_database(
    repo: &Repository<Indexed>,
    opts: &DatabaseBackup,
    progress: &Arc<dyn Progress>,
    cancel: &CancellationToken,
) -> Result<Stored> {
    let url = &opts.url;
    let kind = url.engine.kind();
    let location = url.redacted();
    let key = SourceKey {
        host: opts.request.labels.host(),
        kind: kind.to_string(),
        paths: Vec::new(),
        location: location.clone(),
    };
    let choice = choose_parent(repo, opts.request.requested, &key).await?;
    note_fallback(&**progress, &choice, opts.request.requested);
    let started = chrono::Utc::now();
    let clock = Instant::now();
    let jobs = opts.jobs.unwrap_or_else(default_jobs).max(1);
    let (session, result) = with_session(repo, progress, cancel, |session| async move {
        database::backup(BackupContext {
            url: url.clone(),
            sink: StreamSink::new(session),
            jobs,
            all_databases: opts.all_databases,
        })
        .await
    })
    .await?;
    let (root, manifest, stats) = match result {
        Ok(r) => r,
        Err(e) => {
            session.abort().await.ok();
            if cancel.is_cancelled() {
                return Err(crate::interrupted("the backup"));
            }
            // The storage crate gives a full repository its own kind; a full local disk (a
            // temporary file's) is a plain storage error whose message names the file.
            let full = if e.has_kind(ErrorKind::StorageFull) {
                REPOSITORY_FULL
            } else {
                ""
            };
            return Err(e.context(format!(
                "the backup of {location} failed{full}; no snapshot was written"
            )));
        }
    };
    let extra = serde_json::to_value(&manifest).map_err(|e| {
        Error::new(
            ErrorKind::Storage,
            format!("encoding the database manifest: {e}"),
        )
    })?;
    let snapshot = assemble(
        repo,
        &opts.request.labels,
        &choice,
        Content {
            source: SourceInfo {
                kind: kind.to_string(),
                location: location.clone(),
                paths: Vec::new(),
            },
            tree: root,
            stats,
            extra,
            started,
        },
    );
    let snapshot = session.finish(snapshot).await.map_err(|e| {
        if e.kind() == ErrorKind::Interrupted {
            return e;
        }
        // Only the repository is written here: the database was read completely.
        let full = if e.has_kind(ErrorKind::StorageFull) {
            REPOSITORY_FULL
        } else {
            ""
        };
        e.context(format!(
            "the backup of {location} was read completely but could not be stored{full}"
        ))
    })?;
    Ok(Stored {
        snapshot,
        manifest,
        seconds: clock.elapsed().as_secs_f64(),
        choice,
    })
}

/// Backs up the database `opts.url` into the repository of `spec` under a shared lock; then
/// copies the snapshot to the repository's mirrors (when asked).
pub async fn backup_database(
    spec: &RepoSpec,
    opts: DatabaseBackup,
    progress: Arc<dyn Progress>,
    cancel: &CancellationToken,
) -> Result<BackupReport> {
    progress.phase(crate::Phase::Opening);
    let locked = spec.open_locked(LockMode::Shared, "backup").await?;
    locked
        .run(|repo| async move {
            let stored = store_database(&repo, &opts, &progress, cancel).await?;
            // Under the backup's lock, so no prune moves the snapshot's data while it is copied.
            let mirrors = if opts.request.mirrors {
                progress.phase(crate::Phase::Mirroring);
                crate::mirror::copy_to_settings_mirrors(&repo, spec, &stored.snapshot).await
            } else {
                Vec::new()
            };
            Ok(BackupReport {
                snapshot: stored.snapshot,
                fell_back_to_full: stored.choice.fell_back,
                seconds: stored.seconds,
                unreadable: Vec::new(),
                warnings: Vec::new(),
                manifest: Some(stored.manifest),
                mirrors,
            })
        })
        .await
}
