//! Choosing snapshots: filters by tag, host and source, and resolving an id, a unique prefix or
//! `latest` among them.

use coffer_core::snapshot::Snapshot;
use coffer_core::{Opened, Repository, Result};
use serde::{Deserialize, Serialize};

/// Narrows which snapshots an operation considers (and what `latest` means).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFilter {
    /// Only snapshots with one of these tags (none: any).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only snapshots taken on this host.
    #[serde(default)]
    pub host: Option<String>,
    /// Only snapshots of this source: a path (compared in its canonical form) or a database
    /// URL (compared with the stored location, which never holds a password).
    #[serde(default)]
    pub source: Option<String>,
}

impl SnapshotFilter {
    /// The source as stored in snapshots: a database URL without its password, or a path made
    /// canonical (as backups record it).
    fn stored_source(&self) -> Option<String> {
        self.source.as_ref().map(|s| {
            if coffer_sources::database::is_database_url(s) {
                if let Ok(url) = coffer_sources::database::DbUrl::parse(s) {
                    return url.redacted();
                }
            }
            std::fs::canonicalize(s)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| s.clone())
        })
    }

    /// The snapshots of `all` that pass the filter, in their order.
    pub fn apply(&self, all: Vec<Snapshot>) -> Vec<Snapshot> {
        let source = self.stored_source();
        all.into_iter()
            .filter(|s| self.tags.is_empty() || self.tags.iter().any(|t| s.tags.contains(t)))
            .filter(|s| self.host.as_ref().is_none_or(|h| &s.hostname == h))
            .filter(|s| {
                source.as_ref().is_none_or(|src| {
                    s.source.paths.iter().any(|p| p == src) || &s.source.location == src
                })
            })
            .collect()
    }
}

/// Resolves one snapshot argument: an id, a unique prefix (among all snapshots), or `latest`
/// (the newest that passes `filter`).
pub async fn find_snapshot<S: Opened>(
    repo: &Repository<S>,
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<Snapshot> {
    let all = repo.list_snapshots().await?;
    resolve(spec, all, filter)
}

/// [`find_snapshot`] among snapshots already listed.
pub fn resolve(spec: &str, all: Vec<Snapshot>, filter: &SnapshotFilter) -> Result<Snapshot> {
    let candidates = if spec == "latest" {
        filter.apply(all)
    } else {
        all
    };
    Ok(Repository::<coffer_core::Indexed>::resolve_snapshot(spec, &candidates)?.clone())
}

/// A path argument as a path below the snapshot root (bytes, no leading `/`): an absolute path
/// as it was backed up (`/srv/www/uploads`), or a path relative to the snapshot's root.
pub fn path_in_snapshot(arg: &str, source_paths: &[String]) -> Vec<u8> {
    let single = source_paths.len() == 1;
    for p in source_paths {
        if let Some(rest) = arg.strip_prefix(p.as_str()) {
            if rest.is_empty() || rest.starts_with('/') {
                let rest = rest.trim_start_matches('/');
                // One folder is stored as the root; otherwise each source under its base name.
                if single && std::path::Path::new(p).is_dir() {
                    return rest.as_bytes().to_vec();
                }
                let base = std::path::Path::new(p)
                    .file_name()
                    .map(|b| b.to_string_lossy().into_owned())
                    .unwrap_or_default();
                return if rest.is_empty() {
                    base.into_bytes()
                } else {
                    format!("{base}/{rest}").into_bytes()
                };
            }
        }
    }
    arg.trim_start_matches('/')
        .trim_end_matches('/')
        .as_bytes()
        .to_vec()
}
