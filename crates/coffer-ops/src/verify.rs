//! Verifying a snapshot: every blob it needs read and authenticated, every file's SHA-256
//! compared with the one recorded at backup.

use crate::progress::{Phase, Progress};
use crate::repo::RepoSpec;
use crate::select::{resolve, SnapshotFilter};
use crate::CancellationToken;
use coffer_core::{Id, Result};
use serde::Serialize;

/// What a verification found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Whether nothing was damaged or missing.
    pub ok: bool,
    /// The snapshot verified.
    pub snapshot_id: Id,
    /// Damage and missing data, each naming the file or tree involved.
    pub errors: Vec<String>,
}

/// Verifies `snapshot` (an id, a unique prefix or `latest` among `filter`) of the repository
/// of `spec`, under a shared lock (none with `no_lock`). Damage is reported, not an error.
pub async fn verify(
    spec: &RepoSpec,
    snapshot: &str,
    filter: &SnapshotFilter,
    no_lock: bool,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<VerifyReport> {
    progress.phase(Phase::Opening);
    let (locked, snapshots) = spec.open_listed("verify", no_lock, progress).await?;
    locked
        .run(|repo| async move {
            let snap = resolve(snapshot, snapshots, filter)?;
            progress.phase(Phase::Verifying);
            let report =
                crate::or_cancelled(cancel, "the verification", repo.verify_snapshot(&snap))
                    .await?;
            Ok(VerifyReport {
                ok: report.ok,
                snapshot_id: snap.id,
                errors: report.errors,
            })
        })
        .await
}
