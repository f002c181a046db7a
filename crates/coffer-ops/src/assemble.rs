//! The one constructor of new snapshots, used by file and database backups alike: what the
//! caller asked to record ([`Labels`]), what the backup found (source, tree, statistics,
//! engine manifest) and what the run decided (type, parent, times) become one manifest.

use crate::parent::ParentChoice;
use chrono::{DateTime, Utc};
use coffer_core::snapshot::{Snapshot, SnapshotStats, SourceInfo};
use coffer_core::{Id, Indexed, Repository};
use serde::{Deserialize, Serialize};

/// What the person or job asked to record with a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Labels {
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A name.
    #[serde(default)]
    pub name: Option<String>,
    /// A description.
    #[serde(default)]
    pub description: Option<String>,
    /// The host to record (default: this machine's name).
    #[serde(default)]
    pub host: Option<String>,
    /// The snapshot's time (default: when the backup started).
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
}

impl Labels {
    /// The host recorded: the one given, else this machine's.
    pub fn host(&self) -> String {
        self.host
            .clone()
            .unwrap_or_else(coffer_core::repository::hostname)
    }
}

/// What a finished backup hands to [`assemble`].
pub struct Content {
    /// The source.
    pub source: SourceInfo,
    /// The root tree.
    pub tree: Id,
    /// Counters.
    pub stats: SnapshotStats,
    /// Source-specific metadata (a database manifest), or `Null`.
    pub extra: serde_json::Value,
    /// When the backup started.
    pub started: DateTime<Utc>,
}

/// The manifest of a new snapshot of `repo`.
pub fn assemble(
    repo: &Repository<Indexed>,
    labels: &Labels,
    parent: &ParentChoice,
    content: Content,
) -> Snapshot {
    Snapshot {
        id: Id::random(),
        name: labels.name.clone(),
        source: content.source,
        hostname: labels.host(),
        username: coffer_core::repository::username(),
        tags: labels.tags.clone(),
        description: labels.description.clone(),
        backup_type: parent.backup_type,
        parent: parent.parent.as_ref().map(|p| p.id),
        time: labels.time.unwrap_or(content.started),
        started: content.started,
        finished: Utc::now(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        tree: content.tree,
        stats: content.stats,
        compression: repo.config().compression.clone(),
        encryption: repo.config().encryption.clone(),
        extra: content.extra,
    }
}
