//! Restoring a snapshot of files into a folder: every file's content checked against its
//! SHA-256, metadata restored, and every entry that could not be restored named.

use crate::progress::{Counts, Phase, Progress, Ticker};
use crate::select::path_in_snapshot;
use crate::CancellationToken;
use coffer_core::snapshot::Snapshot;
use coffer_core::{Error, ErrorKind, Id, Indexed, Repository, Result};
use coffer_sources::files::{Excludes, RestoreOptions, RestoreWatch};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Options of a file restore.
#[derive(Debug, Clone, Default)]
pub struct FilesRestore {
    /// Only these paths (absolute as backed up, or relative to the snapshot root) and what is
    /// below them.
    pub includes: Vec<String>,
    /// Globs of paths to skip.
    pub excludes: Vec<String>,
    /// Allow a target that is not empty; existing files are replaced.
    pub overwrite: bool,
}

impl FilesRestore {
    /// Whether any option was given.
    pub fn is_set(&self) -> bool {
        !self.includes.is_empty() || !self.excludes.is_empty() || self.overwrite
    }
}

/// An entry that could not be restored.
#[derive(Debug, Clone, Serialize)]
pub struct FailedEntry {
    /// Its path in the snapshot.
    pub path: String,
    /// Why.
    pub error: String,
}

/// What a file restore did.
#[derive(Debug, Clone, Serialize)]
pub struct FilesRestoreReport {
    /// The snapshot restored.
    pub snapshot_id: Id,
    /// The folder restored into.
    pub target: PathBuf,
    /// Files restored (hard links included).
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Other entries (symlinks, FIFOs, devices).
    pub others: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Entries that could not be restored; everything else was restored and checked.
    pub failed: Vec<FailedEntry>,
    /// Things done differently than asked (owners kept when not root).
    pub warnings: Vec<String>,
}

/// Writing threads: twice the cores, at least 4.
fn workers() -> usize {
    (2 * crate::cores()).max(4)
}

/// Restores `snap` (a file snapshot of `repo`, whose lock the caller holds) into `target`.
pub(crate) async fn restore_files(
    repo: &Repository<Indexed>,
    snap: &Snapshot,
    target: &str,
    opts: &FilesRestore,
    progress: &Arc<dyn Progress>,
    cancel: &CancellationToken,
) -> Result<FilesRestoreReport> {
    let excludes = Excludes::new(&opts.excludes).map_err(|e| Error::usage(format!("{e:#}")))?;
    let target = std::path::absolute(target)
        .map_err(|e| Error::io(format!("cannot use the target {target}"), e))?;
    let watch = RestoreWatch::default();
    let restore_opts = RestoreOptions {
        target: target.clone(),
        includes: opts
            .includes
            .iter()
            .map(|i| path_in_snapshot(i, &snap.source.paths))
            .collect(),
        excludes,
        overwrite: opts.overwrite,
        workers: workers(),
        watch: watch.clone(),
    };
    progress.phase(Phase::Restoring);
    let clock = Instant::now();
    let ticker = {
        let w = watch.clone();
        Ticker::start(progress.clone(), move || counts(&w))
    };
    let stop = {
        let (w, cancel) = (watch.clone(), cancel.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            w.stop();
        })
    };
    let (reader, handle, root) = (
        repo.blob_reader(),
        tokio::runtime::Handle::current(),
        snap.tree,
    );
    let result = tokio::task::spawn_blocking(move || {
        coffer_sources::files::restore_files(reader, handle, root, restore_opts)
    })
    .await;
    stop.abort();
    drop(ticker);
    progress.event(crate::Event::Progress(counts(&watch)));
    let report = result.map_err(|e| {
        Error::new(
            ErrorKind::Storage,
            format!("the restore's writer panicked: {e}"),
        )
    })??;
    Ok(FilesRestoreReport {
        snapshot_id: snap.id,
        target,
        files: report.files,
        dirs: report.dirs,
        others: report.others,
        bytes: report.bytes,
        seconds: clock.elapsed().as_secs_f64(),
        failed: report
            .failed
            .into_iter()
            .map(|(path, error)| FailedEntry { path, error })
            .collect(),
        warnings: report.warnings,
    })
}

/// A restore's counters as progress counts.
fn counts(w: &RestoreWatch) -> Counts {
    Counts {
        bytes_done: w.bytes(),
        bytes_total: Some(w.bytes_total()).filter(|&n| n > 0),
        items_done: w.files(),
        items_total: Some(w.files_total()).filter(|&n| n > 0),
        bytes_stored: None,
        current: None,
    }
}
