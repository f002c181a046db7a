//! Comparing two snapshots: the paths added, removed, modified (their content or their type)
//! and, for file snapshots, those whose metadata alone changed (restic's `U`).
//!
//! Content is compared by SHA-256 (or chunk ids when a node has no digest), never by times: a
//! database snapshot's streams carry the time of their backup, so two backups of an unchanged
//! database differ only in the streams whose bytes differ (a dump header that holds the time).
//! Folders are never "modified": what changed below them is listed.

use coffer_core::snapshot::Snapshot;
use coffer_core::tree::{Node, NodeKind};
use coffer_core::walk::walk_tree;
use coffer_core::{Indexed, Repository, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// How a path differs between the first and the second snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only in the second.
    Added,
    /// Only in the first.
    Removed,
    /// Its content or its type differs.
    Modified,
    /// Same content; its mode, owner or modification time differs (file snapshots only).
    Metadata,
}

impl Change {
    /// The one-letter marker printed before the path (`+`, `-`, `M`, `U`).
    pub fn marker(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Metadata => 'U',
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathChange {
    /// How it changed.
    pub change: Change,
    /// The path below the snapshot root, with a leading `/`.
    pub path: String,
}

/// What [`diff_snapshots`] found, sorted by path.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// Every changed path.
    pub changes: Vec<PathChange>,
}

impl DiffReport {
    /// How many paths changed this way.
    pub fn count(&self, change: Change) -> usize {
        self.changes.iter().filter(|c| c.change == change).count()
    }
}

/// Every entry of a snapshot's tree by path.
async fn entries(repo: &Repository<Indexed>, snap: &Snapshot) -> Result<BTreeMap<Vec<u8>, Node>> {
    let mut m = BTreeMap::new();
    let mut visit = |p: &[u8], n: &Node| {
        m.insert(p.to_vec(), n.clone());
        Ok(())
    };
    walk_tree(&repo.blob_reader(), snap.tree, &mut visit).await?;
    Ok(m)
}

/// Whether the content of two entries of the same kind differs.
fn content_differs(a: &Node, b: &Node) -> bool {
    let bytes = match (&a.sha256, &b.sha256) {
        (Some(x), Some(y)) => x != y,
        _ => a.content != b.content || a.size != b.size,
    };
    bytes || a.link_target != b.link_target || a.rdev != b.rdev
}

/// How `b` differs from `a` at the same path (`None`: not at all). `metadata`: whether mode,
/// owner and times are the source's (file snapshots) rather than Coffer's (database streams).
fn compare(a: &Node, b: &Node, metadata: bool) -> Option<Change> {
    if a.kind != b.kind {
        return Some(Change::Modified);
    }
    if a.kind != NodeKind::Dir && content_differs(a, b) {
        return Some(Change::Modified);
    }
    if !metadata {
        return None;
    }
    let owner = a.mode != b.mode || a.uid != b.uid || a.gid != b.gid;
    // A folder's time changes with its entries, which are listed themselves.
    let time = a.kind != NodeKind::Dir && a.mtime_ns != b.mtime_ns;
    (owner || time).then_some(Change::Metadata)
}

/// Compares the trees of `first` and `second` (snapshots of `repo`).
pub async fn diff_snapshots(
    repo: &Repository<Indexed>,
    first: &Snapshot,
    second: &Snapshot,
) -> Result<DiffReport> {
    let (a, b) = (entries(repo, first).await?, entries(repo, second).await?);
    let files =
        |s: &Snapshot| coffer_sources::database::Engine::from_kind(&s.source.kind).is_none();
    let metadata = files(first) && files(second);
    let path = |p: &[u8]| format!("/{}", String::from_utf8_lossy(p));
    let mut changes = Vec::new();
    for (p, old) in &a {
        let change = match b.get(p) {
            None => Some(Change::Removed),
            Some(new) => compare(old, new, metadata),
        };
        if let Some(change) = change {
            changes.push(PathChange {
                change,
                path: path(p),
            });
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        changes.push(PathChange {
            change: Change::Added,
            path: path(p),
        });
    }
    changes.sort_by(|x, y| x.path.cmp(&y.path));
    Ok(DiffReport { changes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sha: &str, mtime: i64) -> Node {
        let mut n = Node::new(b"f".to_vec(), NodeKind::File);
        n.sha256 = Some(sha.to_string());
        n.size = 3;
        n.mode = 0o644;
        n.mtime_ns = mtime;
        n
    }

    #[test]
    fn content_decides_and_times_count_only_for_files() {
        let a = file("aa", 1);
        assert_eq!(compare(&a, &file("aa", 1), true), None);
        assert_eq!(compare(&a, &file("bb", 1), true), Some(Change::Modified));
        assert_eq!(compare(&a, &file("aa", 2), true), Some(Change::Metadata));
        // Database streams: the time is the backup's, not a change.
        assert_eq!(compare(&a, &file("aa", 2), false), None);
        assert_eq!(compare(&a, &file("bb", 2), false), Some(Change::Modified));
        // Folders: their time follows their entries.
        let mut d1 = Node::new(b"d".to_vec(), NodeKind::Dir);
        d1.mtime_ns = 1;
        let mut d2 = d1.clone();
        d2.mtime_ns = 2;
        assert_eq!(compare(&d1, &d2, true), None);
        d2.mode = 0o700;
        assert_eq!(compare(&d1, &d2, true), Some(Change::Metadata));
        assert_eq!(compare(&d1, &a, true), Some(Change::Modified));
    }
}
