//! Backing up files and folders into a new snapshot.

use super::{with_session, BackupReport, BackupRequest};
use crate::assemble::{assemble, Content};
use crate::parent::{choose_parent, SourceKey};
use crate::progress::Progress;
use crate::repo::{LockMode, RepoSpec};
use crate::CancellationToken;
use coffer_core::snapshot::SourceInfo;
use coffer_core::{Error, Result};
use coffer_sources::files::{backup_files_with, Excludes, FileBackupOptions, ScanAhead};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// A file backup.
#[derive(Debug, Clone, Default)]
pub struct FilesBackup {
    /// Files and folders (relative paths are taken from the current directory).
    pub paths: Vec<PathBuf>,
    /// Globs of paths to skip.
    pub excludes: Vec<String>,
    /// Labels, type and mirrors.
    pub request: BackupRequest,
}

impl FilesBackup {
    /// Checks the request without touching the repository: the sources exist, the globs
    /// parse. Returns the sources as absolute paths and the exclusions.
    pub fn validate(&self) -> Result<(Vec<PathBuf>, Excludes)> {
        let paths = absolute_sources(&self.paths)?;
        let excludes = Excludes::new(&self.excludes).map_err(|e| Error::usage(format!("{e:#}")))?;
        Ok((paths, excludes))
    }
}

/// Reading threads: twice the cores, at least 4 (readers blocked on a cold disk leave the CPU
/// to the others).
fn workers() -> usize {
    (2 * crate::cores()).max(4)
}

/// The sources as absolute paths; each must exist.
fn absolute_sources(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(Error::usage("give at least one file or folder to back up"));
    }
    let mut out = Vec::new();
    for s in paths {
        let abs = std::path::absolute(s)
            .map_err(|e| Error::io(format!("cannot back up {}", s.display()), e))?;
        if let Err(e) = std::fs::symlink_metadata(&abs) {
            return Err(Error::io(
                format!(
                    "cannot back up {}: the source does not exist or cannot be read",
                    s.display()
                ),
                e,
            ));
        }
        out.push(abs);
    }
    Ok(out)
}

/// Backs up `opts.paths` into the repository of `spec` under a shared lock; then copies the
/// snapshot to the repository's mirrors (when asked). Entries that cannot be read are listed in
/// the report and missing from the snapshot; an error means no snapshot was written.
pub async fn backup_files(
    spec: &RepoSpec,
    opts: FilesBackup,
    progress: Arc<dyn Progress>,
    cancel: &CancellationToken,
) -> Result<BackupReport> {
    let (paths, excludes) = opts.validate()?;
    // Listing the folders starts now, so the walk overlaps opening the repository (the key
    // derivation, the index and the snapshot list).
    let scan = ScanAhead::start(&paths, &excludes);
    progress.phase(crate::Phase::Opening);
    let locked = spec.open_locked(LockMode::Shared, "backup").await?;
    locked
        .run(|repo| async move {
            let path_strings: Vec<String> = paths
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            let key = SourceKey {
                host: opts.request.labels.host(),
                kind: "files".into(),
                paths: path_strings.clone(),
                location: String::new(),
            };
            let choice = choose_parent(&repo, opts.request.requested, &key).await?;
            super::note_fallback(&*progress, &choice, opts.request.requested);
            let started = chrono::Utc::now();
            let clock = Instant::now();
            let file_opts = FileBackupOptions {
                paths: paths.clone(),
                excludes,
                parent_tree: choice.parent.as_ref().map(|p| p.tree),
                workers: workers(),
            };
            let (reader, handle) = (repo.blob_reader(), tokio::runtime::Handle::current());
            let (session, result) = with_session(&repo, &progress, cancel, |session| async move {
                tokio::task::spawn_blocking(move || {
                    backup_files_with(session, reader, handle, file_opts, Some(scan))
                })
                .await
                .map_err(|e| {
                    Error::new(
                        coffer_core::ErrorKind::Storage,
                        format!("the backup's reader panicked: {e}"),
                    )
                })?
            })
            .await?;
            let res = match result {
                Ok(r) => r,
                Err(e) => {
                    session.abort().await.ok();
                    return Err(e);
                }
            };
            let snapshot = assemble(
                &repo,
                &opts.request.labels,
                &choice,
                Content {
                    source: SourceInfo {
                        kind: "files".into(),
                        location: path_strings.join(", "),
                        paths: path_strings,
                    },
                    tree: res.root,
                    stats: res.stats.clone(),
                    extra: serde_json::Value::Null,
                    started,
                },
            );
            let snapshot = session.finish(snapshot).await?;
            let seconds = clock.elapsed().as_secs_f64();
            // Under the backup's lock, so no prune moves the snapshot's data while it is copied.
            let mirrors = if opts.request.mirrors {
                progress.phase(crate::Phase::Mirroring);
                crate::mirror::copy_to_settings_mirrors(&repo, spec, &snapshot).await
            } else {
                Vec::new()
            };
            Ok(BackupReport {
                snapshot,
                fell_back_to_full: choice.fell_back,
                seconds,
                unreadable: res.unreadable,
                warnings: res.warnings,
                manifest: None,
                mirrors,
            })
        })
        .await
}
