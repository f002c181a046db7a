//! Copying snapshots between repositories (the 3-2-1 rule): from any backend to any backend,
//! with different passwords, compression and encryption.
//!
//! Blob ids are keyed by each repository's own key, so the same content has different ids in
//! the two repositories: a copy reads each blob from the source, stores it in the target (which
//! deduplicates it against what it holds already), and rewrites the trees with the target's
//! ids, bottom-up. The snapshot keeps its id, so copying it again finds it and does nothing.

use crate::backup::BackupOptions;
use crate::error::Result;
use crate::id::Id;
use crate::pack::BlobType;
use crate::repository::{Indexed, Repository};
use crate::snapshot::Snapshot;
use crate::tree::Tree;
use crate::BackupSession;
use crate::BlobReader;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a copy did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CopyReport {
    /// Snapshots copied.
    pub copied: Vec<Id>,
    /// Snapshots the target held already (skipped).
    pub skipped: Vec<Id>,
    /// New blobs stored in the target.
    pub blobs_added: u64,
    /// New (sealed) bytes stored in the target.
    pub bytes_added: u64,
}

/// Rewrites one tree (and everything below it) into the target; returns its target id.
fn copy_tree(
    src: &BlobReader,
    handle: &tokio::runtime::Handle,
    dst: &BackupSession,
    tree_id: Id,
    map: &mut HashMap<Id, Id>,
) -> Result<Id> {
    if let Some(t) = map.get(&tree_id) {
        return Ok(*t);
    }
    let mut tree: Tree = handle.block_on(src.load_tree(&tree_id))?;
    for node in &mut tree.nodes {
        for c in &mut node.content {
            *c = match map.get(c) {
                Some(t) => *t,
                None => {
                    let data = src.read_blob_blocking(handle, c)?;
                    let (t, _) = dst.save_blob(BlobType::Data, &data)?;
                    map.insert(*c, t);
                    t
                }
            };
        }
        if let Some(sub) = node.subtree {
            node.subtree = Some(copy_tree(src, handle, dst, sub, map)?);
        }
    }
    let new_id = dst.save_tree(&tree)?;
    map.insert(tree_id, new_id);
    Ok(new_id)
}

impl Repository<Indexed> {
    /// Copies `snaps` (snapshots of this repository) into `target`. Snapshots the target holds
    /// already are skipped. Each copied snapshot becomes visible in the target only once all its
    /// data is stored there (the target's usual write order). Must run inside a Tokio runtime.
    pub async fn copy_to(
        &self,
        target: &Repository<Indexed>,
        snaps: &[Snapshot],
    ) -> Result<CopyReport> {
        let present: std::collections::HashSet<Id> = target
            .list_snapshots()
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect();
        let mut report = CopyReport::default();
        // Source blob id -> target blob id, shared by all snapshots of this run.
        let mut map: HashMap<Id, Id> = HashMap::new();
        for snap in snaps {
            if present.contains(&snap.id) {
                report.skipped.push(snap.id);
                continue;
            }
            let session = Arc::new(target.start_backup(BackupOptions::default()));
            let (src, handle, s2, root) = (
                self.blob_reader(),
                tokio::runtime::Handle::current(),
                session.clone(),
                snap.tree,
            );
            let mut m = std::mem::take(&mut map);
            let (res, m) = tokio::task::spawn_blocking(move || {
                let r = copy_tree(&src, &handle, &s2, root, &mut m);
                (r, m)
            })
            .await
            .map_err(|e| {
                crate::Error::new(crate::ErrorKind::Storage, format!("copy task failed: {e}"))
            })?;
            map = m;
            let session = Arc::try_unwrap(session).map_err(|_| {
                crate::Error::new(
                    crate::ErrorKind::Storage,
                    "internal error: the copy session is still shared",
                )
            })?;
            let new_root = match res {
                Ok(r) => r,
                Err(e) => {
                    session.abort().await.ok();
                    return Err(e.context(format!("copying snapshot {}", snap.id.short())));
                }
            };
            report.blobs_added += session.counters().blobs_added.load(Ordering::Relaxed);
            report.bytes_added += session.counters().bytes_added.load(Ordering::Relaxed);
            let mut copy = snap.clone();
            copy.tree = new_root;
            session.finish_as_is(copy).await?;
            report.copied.push(snap.id);
        }
        Ok(report)
    }
}
