//! Choosing snapshots: filters by tag, host and source, and resolving an id, a unique prefix or
//! `latest` among them.
//!
//! `latest` never means a safety backup (the copy a database restore takes of its target
//! before overwriting it, tagged [`SAFETY_TAG`]) unless the filter asks for that tag: after a
//! `--clean` restore the safety backup is the newest snapshot, and `restore latest` must not
//! bring back the state the user just replaced.

use coffer_core::snapshot::Snapshot;
use coffer_core::{Error, Indexed, Opened, Repository, Result};
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

/// The tag of the safety backup a database restore takes of its target before overwriting it.
pub const SAFETY_TAG: &str = "safety";

/// Whether `s` is a safety backup (tagged [`SAFETY_TAG`]).
pub fn is_safety(s: &Snapshot) -> bool {
    s.tags.iter().any(|t| t == SAFETY_TAG)
}

/// [`find_snapshot`] among snapshots already listed.
pub fn resolve(spec: &str, all: Vec<Snapshot>, filter: &SnapshotFilter) -> Result<Snapshot> {
    resolve_noting(spec, all, filter).map(|(s, _)| s)
}

/// [`resolve`], also returning the newest safety backup `latest` skipped when it is newer than
/// the snapshot chosen, for the caller to say so.
pub fn resolve_noting(
    spec: &str,
    all: Vec<Snapshot>,
    filter: &SnapshotFilter,
) -> Result<(Snapshot, Option<Snapshot>)> {
    if spec != "latest" {
        return Ok((
            Repository::<Indexed>::resolve_snapshot(spec, &all)?.clone(),
            None,
        ));
    }
    let passing = filter.apply(all);
    if filter.tags.iter().any(|t| t == SAFETY_TAG) {
        return Ok((
            Repository::<Indexed>::resolve_snapshot(spec, &passing)?.clone(),
            None,
        ));
    }
    let (safety, regular): (Vec<Snapshot>, Vec<Snapshot>) =
        passing.into_iter().partition(is_safety);
    let newest_safety = safety.into_iter().max_by_key(|s| (s.time, s.id));
    if regular.is_empty() {
        if let Some(s) = newest_safety {
            return Err(Error::not_found(format!(
                "no snapshot to take as latest: the only snapshots that match are safety backups \
                 (the newest is {}, taken before a restore overwrote {}), which latest skips; \
                 name one by its id, or add --tag {SAFETY_TAG}",
                s.id.short(),
                s.source.location
            )));
        }
    }
    let chosen = Repository::<Indexed>::resolve_snapshot(spec, &regular)?.clone();
    let skipped = newest_safety.filter(|s| (s.time, s.id) > (chosen.time, chosen.id));
    Ok((chosen, skipped))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_snapshot as snap;

    #[test]
    fn latest_skips_safety_backups_unless_asked_for() {
        let backup = snap(100, &[]);
        let safety = snap(200, &[SAFETY_TAG]);
        let all = vec![backup.clone(), safety.clone()];
        let none = SnapshotFilter::default();
        let (chosen, skipped) = resolve_noting("latest", all.clone(), &none).unwrap();
        assert_eq!(chosen.id, backup.id);
        assert_eq!(skipped.map(|s| s.id), Some(safety.id));
        // Asked for by tag, or by id: the safety backup.
        let tagged = SnapshotFilter {
            tags: vec![SAFETY_TAG.into()],
            ..SnapshotFilter::default()
        };
        assert_eq!(
            resolve("latest", all.clone(), &tagged).unwrap().id,
            safety.id
        );
        let prefix = &safety.id.to_hex()[..12];
        assert_eq!(resolve(prefix, all, &none).unwrap().id, safety.id);
        // Only safety backups: an error that names the newest and how to ask for it.
        let e = resolve("latest", vec![safety.clone()], &none).unwrap_err();
        assert_eq!(e.kind(), coffer_core::ErrorKind::NotFound);
        let text = format!("{e:#}");
        assert!(
            text.contains(&safety.id.short()) && text.contains("--tag safety"),
            "{text}"
        );
    }
}
