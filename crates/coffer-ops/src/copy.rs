//! Copying snapshots between repositories (any storage, password, compression or encryption),
//! keeping their ids; snapshots the target holds already are skipped.

use crate::progress::{Counts, Event, Phase, Progress};
use crate::repo::{read_lock, Locked, RepoSpec};
use crate::select::{resolve, SnapshotFilter};
use crate::CancellationToken;
use coffer_core::copy::CopyReport;
use coffer_core::Result;

/// A copy.
#[derive(Debug, Clone, Default)]
pub struct Copy {
    /// Snapshots to copy: ids, unique prefixes or `latest` (empty: all).
    pub snapshots: Vec<String>,
    /// Read the source without taking its shared lock.
    pub no_lock: bool,
}

/// Copies snapshots from the repository of `from` into the one of `to` (which must exist),
/// holding a shared lock on both. Each snapshot becomes visible in the target only once all
/// its data is there; once `cancel` fires no new snapshot is started. Snapshots are copied one
/// at a time (each writes its own index file in the target when it adds data).
pub async fn copy(
    from: &RepoSpec,
    to: &RepoSpec,
    opts: &Copy,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<CopyReport> {
    progress.phase(Phase::Opening);
    let src = from.open().await?;
    let dst = to.open().await?;
    // Locks first, then the indexes: a prune cannot change them while they are read.
    let src_lock = read_lock(&src, "copy (source)", opts.no_lock, progress).await?;
    let src = Locked::load(src, src_lock).await?;
    let dst = match dst.lock(false, "copy (target)").await {
        Ok(lock) => Locked::load(dst, Some(lock)).await,
        Err(e) => Err(e),
    };
    let dst = match dst {
        Ok(d) => d,
        Err(e) => {
            src.release().await;
            return Err(e);
        }
    };
    src.run(|src| async move {
        dst.run(|dst| async move {
            let all = src.list_snapshots().await?;
            let chosen = if opts.snapshots.is_empty() {
                all
            } else {
                let mut v = Vec::new();
                for spec in &opts.snapshots {
                    v.push(resolve(spec, all.clone(), &SnapshotFilter::default())?);
                }
                v
            };
            progress.phase(Phase::Copying);
            let mut total = CopyReport::default();
            for (n, snap) in chosen.iter().enumerate() {
                if cancel.is_cancelled() {
                    return Err(crate::interrupted("the copy"));
                }
                let r = src.copy_to(&dst, std::slice::from_ref(snap)).await?;
                total.copied.extend(r.copied);
                total.skipped.extend(r.skipped);
                total.blobs_added += r.blobs_added;
                total.bytes_added += r.bytes_added;
                progress.event(Event::Progress(Counts {
                    items_done: n as u64 + 1,
                    items_total: Some(chosen.len() as u64),
                    bytes_stored: Some(total.bytes_added),
                    ..Counts::default()
                }));
            }
            Ok(total)
        })
        .await
    })
    .await
}
