//! Backups: file trees ([`files`]) and databases ([`database`]) into a new snapshot.
//!
//! Both share the run around the source (this module): the parent choice, a backup session
//! whose counters become progress events and which a cancelled token stops (what was uploaded
//! stays indexed for the next run; no snapshot is listed), the snapshot built by
//! [`crate::assemble`], and the copy to the repository's mirrors under the backup's lock.

pub mod database;
pub mod files;

use crate::assemble::Labels;
use crate::mirror::MirrorOutcome;
use crate::progress::{Counts, Phase, Progress, Ticker};
use crate::CancellationToken;
use coffer_core::snapshot::{BackupType, Snapshot};
use coffer_core::{BackupOptions, BackupSession, Error, ErrorKind, Indexed, Repository, Result};
use coffer_sources::database::DbManifest;
use coffer_sources::files::Unreadable;
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What every backup is asked besides its source.
#[derive(Debug, Clone, Default)]
pub struct BackupRequest {
    /// What to record with the snapshot.
    pub labels: Labels,
    /// The type asked for (`None`: incremental when a parent exists, else full).
    pub requested: Option<BackupType>,
    /// Copy the new snapshot to the mirrors listed in the repository's settings.
    pub mirrors: bool,
}

/// What a backup did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The snapshot written.
    pub snapshot: Snapshot,
    /// The requested type could not be honoured (no parent yet): the backup is full.
    pub fell_back_to_full: bool,
    /// Wall time, in seconds, from the start of reading to the snapshot written.
    pub seconds: f64,
    /// Source entries that could not be read and are missing from the snapshot (files).
    pub unreadable: Vec<Unreadable>,
    /// Other things worth knowing (sockets skipped, files changed while read).
    pub warnings: Vec<String>,
    /// The database manifest (databases).
    pub manifest: Option<DbManifest>,
    /// What each mirror did.
    pub mirrors: Vec<MirrorOutcome>,
}

impl BackupReport {
    /// Whether some source entries could not be read (the snapshot is saved without them).
    pub fn is_partial(&self) -> bool {
        !self.unreadable.is_empty()
    }

    /// Whether a mirror failed.
    pub fn mirror_failed(&self) -> bool {
        self.mirrors.iter().any(|m| !m.ok)
    }
}

/// Says so when the requested type fell back to a full backup.
fn note_fallback(
    progress: &dyn Progress,
    choice: &crate::parent::ParentChoice,
    requested: Option<BackupType>,
) {
    if let (true, Some(t)) = (choice.fell_back, requested) {
        progress.note(format!(
            "no parent snapshot for a {t} backup of this source yet: taking a full backup"
        ));
    }
}

/// A backup session's counters as progress counts.
fn session_counts(s: &BackupSession) -> Counts {
    let c = s.counters();
    Counts {
        bytes_done: c.bytes_read.load(Ordering::Relaxed),
        bytes_stored: Some(c.bytes_added.load(Ordering::Relaxed)),
        ..Counts::default()
    }
}

/// Runs `work` on a new backup session of `repo`: progress events from its counters while it
/// runs, and the session stopped when `cancel` fires. Returns the session (no longer shared)
/// and `work`'s result; the caller finishes or aborts it.
pub(crate) async fn with_session<T, F>(
    repo: &Repository<Indexed>,
    progress: &Arc<dyn Progress>,
    cancel: &CancellationToken,
    work: impl FnOnce(Arc<BackupSession>) -> F,
) -> Result<(BackupSession, Result<T>)>
where
    F: Future<Output = Result<T>>,
{
    progress.phase(Phase::BackingUp);
    let session = Arc::new(repo.start_backup(BackupOptions::default()));
    let ticker = {
        let weak = Arc::downgrade(&session);
        Ticker::start(progress.clone(), move || {
            weak.upgrade()
                .map(|s| session_counts(&s))
                .unwrap_or_default()
        })
    };
    let stop = {
        let (weak, cancel) = (Arc::downgrade(&session), cancel.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            if let Some(s) = weak.upgrade() {
                s.cancel();
            }
        })
    };
    let result = work(session.clone()).await;
    stop.abort();
    drop(ticker);
    progress.event(crate::Event::Progress(session_counts(&session)));
    Ok((unshare(session).await?, result))
}

/// Takes the session back once every helper task has let go of it.
async fn unshare(mut s: Arc<BackupSession>) -> Result<BackupSession> {
    for _ in 0..500 {
        match Arc::try_unwrap(s) {
            Ok(v) => return Ok(v),
            Err(back) => s = back,
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Err(Error::new(
        ErrorKind::Storage,
        "internal error: the backup session is still shared",
    ))
}
