//! Snapshot manifests: what was backed up, when, from where, and the root tree.

use crate::id::Id;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a backup chose its parent and what it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Read everything; no parent.
    Full,
    /// Parent: the latest snapshot of the source; unchanged files are not read.
    Incremental,
    /// Parent: the latest full snapshot of the source; unchanged files are not read.
    Differential,
}

impl std::fmt::Display for BackupType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackupType::Full => "full",
            BackupType::Incremental => "incremental",
            BackupType::Differential => "differential",
        })
    }
}

impl std::str::FromStr for BackupType {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "full" => Ok(BackupType::Full),
            "incremental" | "incr" => Ok(BackupType::Incremental),
            "differential" | "diff" => Ok(BackupType::Differential),
            _ => Err(crate::Error::invalid(format!(
                "unknown backup type {s:?}: use full, incremental or differential"
            ))),
        }
    }
}

/// What was backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `files` (later also `postgres`, `mysql`, `sqlite`, `redis`).
    pub kind: String,
    /// Where the source is, with secrets removed.
    pub location: String,
    /// The source paths as given, made absolute (file trees).
    #[serde(default)]
    pub paths: Vec<String>,
}

/// Counters of one backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// Regular files in the snapshot.
    pub files: u64,
    /// Directories in the snapshot.
    pub dirs: u64,
    /// Other entries (symlinks, fifos, devices).
    #[serde(default)]
    pub others: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// New bytes stored in the repository (compressed and sealed).
    pub bytes_added: u64,
    /// Total logical size of the snapshot's content.
    pub total_bytes: u64,
    /// Files read because they were new or changed.
    #[serde(default)]
    pub files_read: u64,
    /// Files taken from the parent without reading.
    #[serde(default)]
    pub files_unchanged: u64,
    /// New blobs stored.
    #[serde(default)]
    pub blobs_added: u64,
}

/// A snapshot manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The snapshot's id (random; kept when copied between repositories).
    pub id: Id,
    /// An optional name.
    #[serde(default)]
    pub name: Option<String>,
    /// The source.
    pub source: SourceInfo,
    /// The host it was taken on.
    pub hostname: String,
    /// The user who took it.
    #[serde(default)]
    pub username: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A free-text description.
    #[serde(default)]
    pub description: Option<String>,
    /// Full, incremental or differential.
    pub backup_type: BackupType,
    /// The parent snapshot whose unchanged files were reused.
    #[serde(default)]
    pub parent: Option<Id>,
    /// The snapshot's time (normally the start; `--time` sets it).
    pub time: DateTime<Utc>,
    /// When the backup started.
    pub started: DateTime<Utc>,
    /// When the backup finished.
    pub finished: DateTime<Utc>,
    /// The Coffer version that wrote it.
    pub tool_version: String,
    /// The root tree.
    pub tree: Id,
    /// Counters.
    pub stats: SnapshotStats,
    /// The compression used for new blobs.
    pub compression: String,
    /// The encryption used.
    pub encryption: String,
    /// Source-specific metadata (database sources).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub extra: serde_json::Value,
}

impl Snapshot {
    /// A full-backup manifest of `source` with root `tree`, taken now on this host by this user
    /// with this version of Coffer: a fresh random id, no name, tags or parent, empty
    /// statistics, the default algorithms' names. Callers set the rest.
    pub fn new(source: SourceInfo, tree: Id) -> Snapshot {
        let now = Utc::now();
        Snapshot {
            id: Id::random(),
            name: None,
            source,
            hostname: crate::repository::hostname(),
            username: crate::repository::username(),
            tags: Vec::new(),
            description: None,
            backup_type: BackupType::Full,
            parent: None,
            time: now,
            started: now,
            finished: now,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            tree,
            stats: SnapshotStats::default(),
            compression: "zstd:3".to_string(),
            encryption: "aes256-gcm".to_string(),
            extra: serde_json::Value::Null,
        }
    }
}
