//! The storage trait: what the repository needs from a place that keeps objects. It speaks the
//! repository's language (`FileType`, `Id`); `coffer-storage` implements it over OpenDAL.
//!
//! The layout suits object stores: every object is written once, whole, under a name that never
//! changes; nothing is renamed, appended to or edited in place; listing works by prefix.

use crate::error::Result;
use crate::id::Id;
use async_trait::async_trait;
use bytes::Bytes;

/// The kinds of object a repository holds, each under its own prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// The single `config` object (its id is ignored).
    Config,
    /// `keys/<id>`: a password-wrapped copy of the master key.
    Key,
    /// `data/<first two hex digits>/<id>`: a pack file of encrypted blobs.
    Pack,
    /// `index/<id>`: an encrypted index of packs.
    Index,
    /// `snapshots/<id>`: an encrypted snapshot manifest.
    Snapshot,
    /// `locks/<id>`: an encrypted lock.
    Lock,
    /// `settings/<id>`: the encrypted settings every client shares (retention, mirrors).
    Settings,
}

impl FileType {
    /// Every file type, in the order a repository is created.
    pub const ALL: [FileType; 7] = [
        FileType::Config,
        FileType::Key,
        FileType::Pack,
        FileType::Index,
        FileType::Snapshot,
        FileType::Lock,
        FileType::Settings,
    ];

    /// The folder that holds objects of this type (empty for `config`).
    pub fn dir(self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys",
            FileType::Pack => "data",
            FileType::Index => "index",
            FileType::Snapshot => "snapshots",
            FileType::Lock => "locks",
            FileType::Settings => "settings",
        }
    }

    /// A short name for messages ("pack", "index", ...).
    pub fn name(self) -> &'static str {
        match self {
            FileType::Config => "config",
            FileType::Key => "key",
            FileType::Pack => "pack",
            FileType::Index => "index",
            FileType::Snapshot => "snapshot",
            FileType::Lock => "lock",
            FileType::Settings => "settings",
        }
    }
}

/// The path of an object relative to the repository root. Every backend uses this one layout.
pub fn object_path(ft: FileType, id: &Id) -> String {
    match ft {
        FileType::Config => "config".to_string(),
        FileType::Pack => {
            let hex = id.to_hex();
            format!("data/{}/{}", &hex[..2], hex)
        }
        _ => format!("{}/{}", ft.dir(), id.to_hex()),
    }
}

/// Where a repository's objects live.
///
/// Errors use [`crate::ErrorKind::NotFound`] for a missing object and
/// [`crate::ErrorKind::Storage`] (with `is_retryable`) for everything else. Implementations
/// retry temporary failures themselves; an error returned here is final for this call.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A human-readable location, with any secret removed (safe for logs and manifests).
    fn location(&self) -> String;

    /// Prepares an empty repository location (folders on a file system; a write probe on an
    /// object store). Fails clearly if the location cannot be written.
    async fn create(&self) -> Result<()>;

    /// Lists the objects of one type with their sizes. Names that are not ids are skipped.
    async fn list(&self, ft: FileType) -> Result<Vec<(Id, u64)>>;

    /// Reads a whole object. Used for small objects (config, keys, index, snapshots, locks);
    /// packs are read with [`Backend::read_range`].
    async fn read(&self, ft: FileType, id: &Id) -> Result<Bytes>;

    /// Reads `length` bytes at `offset` of an object. A short object is an error.
    async fn read_range(&self, ft: FileType, id: &Id, offset: u64, length: u64) -> Result<Bytes>;

    /// Writes a whole object. Durability: when this returns `Ok`, the object is stored durably
    /// (fsync'd on a file system, acknowledged by an object store) and is visible whole, never
    /// partially, to any reader. Overwrite: objects are immutable and named by content or by a
    /// fresh random id, so writing an existing name writes the same bytes; implementations may
    /// overwrite. A failed write leaves either nothing or a complete object.
    async fn write(&self, ft: FileType, id: &Id, data: Bytes) -> Result<()>;

    /// Removes an object. Removing an object that does not exist is not an error.
    async fn remove(&self, ft: FileType, id: &Id) -> Result<()>;

    /// The size of an object, or `None` if it does not exist.
    async fn stat(&self, ft: FileType, id: &Id) -> Result<Option<u64>>;
}
