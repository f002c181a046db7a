//! The database manifest: what a database snapshot holds, stored in the snapshot's `extra`
//! field (encrypted with the rest of the manifest).

use serde::{Deserialize, Serialize};

/// Everything a database backup records besides its streams' content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DbManifest {
    /// `postgres`, `mysql`, `sqlite` or `redis`.
    pub engine: String,
    /// The server's version string (`PostgreSQL 15.8`, `10.11.6-MariaDB`, `3.46.0`, `7.0.15`).
    pub server_version: String,
    /// Whether the backup holds a whole server (all databases, plus roles and grants).
    #[serde(default)]
    pub whole_server: bool,
    /// The databases backed up (one unless `whole_server`; Redis: one per non-empty db).
    pub databases: Vec<DatabaseInfo>,
    /// Every stream of the snapshot with its size and SHA-256, in the order written.
    #[serde(default)]
    pub streams: Vec<StreamInfo>,
    /// Engine-specific facts (the dump tool's version, the snapshot id, WAL position, ...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// One database of a backup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// Its name (Redis: the db number).
    pub name: String,
    /// Its size on the server, in bytes, when the server says.
    #[serde(default)]
    pub size_bytes: u64,
    /// Its tables with exact row counts taken inside the backup's snapshot.
    #[serde(default)]
    pub tables: Vec<TableInfo>,
    /// The application's schema version, when it keeps one (`alembic_version`,
    /// `schema_migrations`, `flyway_schema_history`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    /// Redis: the number of keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// SQLite: the page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u64>,
    /// SQLite: the result of `PRAGMA integrity_check` on the copy (`ok` when sound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity_check: Option<String>,
}

/// One table of a database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    /// Its schema (PostgreSQL), `None` elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Its name.
    pub name: String,
    /// Exact row count inside the backup's snapshot.
    pub rows: u64,
    /// The stream holding its data, when it has one of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
}

impl TableInfo {
    /// `schema.name`, or `name` without a schema.
    pub fn qualified(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether `--table ARG` names this table: `name`, or `schema.name`.
    pub fn matches(&self, arg: &str) -> bool {
        arg == self.name || arg == self.qualified()
    }
}

/// One stream as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Its path in the snapshot's tree.
    pub path: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

impl DbManifest {
    /// Reads the manifest from a snapshot's `extra` field.
    pub fn from_snapshot(snap: &coffer_core::snapshot::Snapshot) -> coffer_core::Result<Self> {
        serde_json::from_value(snap.extra.clone()).map_err(|e| {
            coffer_core::Error::corrupt(format!(
                "snapshot {} has no readable database manifest: {e}",
                snap.id.short()
            ))
        })
    }

    /// The database named `name`, or the only one.
    pub fn database(&self, name: Option<&str>) -> Option<&DatabaseInfo> {
        match name {
            Some(n) => self.databases.iter().find(|d| d.name == n),
            None if self.databases.len() == 1 => self.databases.first(),
            None => None,
        }
    }
}
