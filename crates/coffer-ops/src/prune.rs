//! Pruning: deleting the data no snapshot references and repacking mostly unused packs, in two
//! phases with a grace period (see `coffer_core::prune`).

use crate::progress::{Phase, Progress};
use crate::repo::{LockMode, RepoSpec};
use crate::CancellationToken;
use coffer_core::prune::{PruneOptions, PruneReport};
use coffer_core::Result;

/// Prunes the repository of `spec` under the exclusive lock (a shared one for a dry run, which
/// changes nothing). A cancelled token stops it before it starts; once it writes it runs to
/// its end, which is bounded and faster than a later run's recovery.
pub async fn prune(
    spec: &RepoSpec,
    opts: &PruneOptions,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<PruneReport> {
    progress.phase(Phase::Opening);
    let (mode, command) = if opts.dry_run {
        (LockMode::Shared, "prune --dry-run")
    } else {
        (LockMode::Exclusive, "prune")
    };
    let locked = spec.open_locked(mode, command).await?;
    locked
        .run(|repo| async move {
            if cancel.is_cancelled() {
                return Err(crate::interrupted("the prune"));
            }
            progress.phase(Phase::Pruning);
            repo.prune(opts).await
        })
        .await
}
