//! Step 1 of a prune, **mark**: walk every snapshot's trees and collect the ids of the blobs
//! they use (one hash map entry per blob, about 48 bytes; trees are read one by one, packs never
//! whole).

use super::ids::{IdMap, IdSet};
use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use crate::repository::{Indexed, Repository};
use crate::snapshot::Snapshot;
use crate::tree::NodeKind;
use futures::StreamExt;
use std::collections::HashSet;

/// A used blob not yet found in any pack.
pub(super) const UNCLAIMED: u32 = u32::MAX;

/// Makes the blobs of the pending packs still stored readable through `repo`'s index: they are
/// out of the index, but a snapshot written by a backup that read an older index may use them
/// (step 3 of the module documentation), and its trees must be walked. Only this handle's
/// in-memory index changes.
pub(super) fn index_pending(repo: &Repository<Indexed>, stored: &IdMap<u64>) {
    let mut idx = repo.shared_index().write().unwrap();
    for p in repo.pending_packs() {
        if stored.contains_key(&p.pack.id) {
            idx.add_pack(p.pack.id, p.pack.salt, &p.pack.entries);
        }
    }
    idx.compact();
}

/// Lists the snapshots not in `ignore` and walks their trees: returns how many there are and
/// each blob they use (mapped to [`UNCLAIMED`]).
pub(super) async fn used_blobs(
    repo: &Repository<Indexed>,
    ignore: &[Id],
) -> Result<(usize, IdMap<u32>)> {
    let ignore: HashSet<Id> = ignore.iter().copied().collect();
    let snaps: Vec<Snapshot> = repo
        .list_snapshots()
        .await?
        .into_iter()
        .filter(|s| !ignore.contains(&s.id))
        .collect();
    let clock = std::time::Instant::now();
    let used = mark(repo, &snaps).await?;
    tracing::info!(
        "prune: mark: {} snapshots use {} blobs ({:.2}s)",
        snaps.len(),
        used.len(),
        clock.elapsed().as_secs_f64()
    );
    Ok((snaps.len(), used))
}

/// Walks every snapshot's trees; returns each used blob id (mapped to [`UNCLAIMED`]).
async fn mark(repo: &Repository<Indexed>, snaps: &[Snapshot]) -> Result<IdMap<u32>> {
    let reader = repo.blob_reader();
    let mut used: IdMap<u32> = IdMap::default();
    // Trees apart: a data chunk could have the same bytes, hence the same id, as a tree, and
    // the tree must still be walked.
    let mut trees: IdSet = IdSet::default();
    let mut stack: Vec<(Id, Id)> = Vec::new();
    for s in snaps {
        if trees.insert(s.tree) {
            stack.push((s.tree, s.id));
        }
    }
    while !stack.is_empty() {
        let batch = stack.split_off(stack.len().saturating_sub(64));
        let ids: Vec<Id> = batch.iter().map(|(t, _)| *t).collect();
        let loaded: Vec<_> = futures::stream::iter(ids.into_iter().map(|t| {
            let reader = reader.clone();
            async move { reader.load_tree(&t).await }
        }))
        .buffered(16)
        .collect()
        .await;
        for ((tid, snap), tree) in batch.into_iter().zip(loaded) {
            let tree = tree.map_err(|e| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "snapshot {}: tree {} cannot be read ({e:#}); prune changes nothing while a snapshot is damaged: run `coffer check`",
                        snap.short(),
                        tid.short()
                    ),
                )
            })?;
            used.insert(tid, UNCLAIMED);
            for n in tree.nodes {
                for c in n.content {
                    used.insert(c, UNCLAIMED);
                }
                if n.kind == NodeKind::Dir {
                    if let Some(sub) = n.subtree {
                        if trees.insert(sub) {
                            stack.push((sub, snap));
                        }
                    }
                }
            }
        }
    }
    Ok(used)
}
