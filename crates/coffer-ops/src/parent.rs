//! The parent of a new backup, chosen in one place for files and databases: a full backup has
//! none, a differential one the newest full backup of the same source, an incremental one
//! (the default) the newest backup of the same source; without a suitable parent the backup is
//! full. Safety backups (taken by a restore of the target it was about to overwrite) are never
//! a parent.

use coffer_core::snapshot::{BackupType, Snapshot};
use coffer_core::{Opened, Repository, Result};

/// What makes two snapshots "the same source": host, kind and location (or path list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceKey {
    /// The recorded host.
    pub host: String,
    /// `files`, `postgres`, `mysql`, `sqlite`, `redis`.
    pub kind: String,
    /// For files: the absolute paths, in order.
    pub paths: Vec<String>,
    /// For databases: the stored (password-free) location.
    pub location: String,
}

impl SourceKey {
    /// Whether `s` was taken of this source.
    pub fn matches(&self, s: &Snapshot) -> bool {
        s.hostname == self.host
            && s.source.kind == self.kind
            && if self.kind == "files" {
                s.source.paths == self.paths
            } else {
                s.source.location == self.location
            }
    }
}

/// The backup type a run gets and its parent.
#[derive(Debug, Clone)]
pub struct ParentChoice {
    /// The type the backup will have (full when no parent fits the requested type).
    pub backup_type: BackupType,
    /// The parent snapshot.
    pub parent: Option<Snapshot>,
    /// The type asked for could not be honoured (no parent yet): the backup is full.
    pub fell_back: bool,
}

/// Chooses the parent among `repo`'s snapshots of `source` for the `requested` type (`None`:
/// incremental when possible).
pub async fn choose_parent<S: Opened>(
    repo: &Repository<S>,
    requested: Option<BackupType>,
    source: &SourceKey,
) -> Result<ParentChoice> {
    let same: Vec<Snapshot> = repo
        .list_snapshots()
        .await?
        .into_iter()
        .filter(|s| source.matches(s))
        .collect();
    Ok(choose_among(&same, requested))
}

/// [`choose_parent`] among snapshots of one source (safety backups are skipped).
pub fn choose_among(same_source: &[Snapshot], requested: Option<BackupType>) -> ParentChoice {
    let latest = |pred: &dyn Fn(&Snapshot) -> bool| {
        same_source
            .iter()
            .filter(|s| !crate::select::is_safety(s) && pred(s))
            .max_by_key(|s| (s.time, s.id))
            .cloned()
    };
    let (backup_type, parent) = match requested {
        Some(BackupType::Full) => (BackupType::Full, None),
        Some(BackupType::Differential) => match latest(&|s| s.backup_type == BackupType::Full) {
            Some(p) => (BackupType::Differential, Some(p)),
            None => (BackupType::Full, None),
        },
        Some(BackupType::Incremental) | None => match latest(&|_| true) {
            Some(p) => (BackupType::Incremental, Some(p)),
            None => (BackupType::Full, None),
        },
    };
    ParentChoice {
        fell_back: requested.is_some_and(|r| r != backup_type),
        backup_type,
        parent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(secs: i64, backup_type: BackupType, tags: &[&str]) -> Snapshot {
        let mut s = crate::test_snapshot(secs, tags);
        s.backup_type = backup_type;
        s
    }

    #[test]
    fn a_safety_backup_is_never_the_parent() {
        let older = snap(100, BackupType::Full, &[]);
        let safety = snap(200, BackupType::Full, &["safety"]);
        let all = vec![older.clone(), safety];
        for requested in [
            None,
            Some(BackupType::Incremental),
            Some(BackupType::Differential),
        ] {
            let choice = choose_among(&all, requested);
            assert_eq!(choice.parent.map(|p| p.id), Some(older.id), "{requested:?}");
        }
        let only_safety = vec![snap(200, BackupType::Full, &["safety"])];
        assert!(choose_among(&only_safety, None).parent.is_none());
    }
}
