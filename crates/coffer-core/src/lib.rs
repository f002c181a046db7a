//! Coffer's repository engine: ids, crypto, chunking, packs, index, trees, snapshots, the storage
//! trait and the repository itself. It knows nothing of HTTP, the CLI or databases.
//!
//! Two layers:
//! - [`format`]: the bytes a repository holds (packs, index files, trees, key files, the
//!   config), each encoded and decoded in one module, as `docs/format.md` specifies them;
//!   re-exported at the crate root under their old paths (`coffer_core::pack`, ...).
//! - the operations on a repository, one module each: [`repository`] (open, list, read),
//!   [`backup`] (sessions that write blobs and packs), [`check`], [`verify`], [`copy`],
//!   [`retention`], [`prune`], [`lock`], [`settings`].

pub mod backend;
pub mod backup;
pub mod check;
pub mod chunker;
pub mod compression;
pub mod copy;
pub mod crypto;
pub mod duration;
pub mod error;
pub mod format;
pub mod id;
pub mod lock;
pub mod memory;
pub mod prune;
pub mod read;
pub mod repository;
pub mod retention;
pub mod settings;
pub mod snapshot;
pub mod verify;
pub mod walk;

pub use format::{config, index, keyfile, pack, tree};

pub use backend::{object_path, Backend, FileType};
pub use backup::{BackupOptions, BackupSession, StreamContent};
pub use error::{Error, ErrorKind, Result};
pub use id::Id;
pub use read::BlobReader;
pub use repository::{Closed, Indexed, InitOptions, Open, Opened, Repository};
