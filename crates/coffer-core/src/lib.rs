//! Coffer's repository engine: ids, crypto, chunking, packs, index, trees, snapshots, the storage
//! trait and the repository itself. It knows nothing of HTTP, the CLI or databases.

pub mod backend;
pub mod backup;
pub mod check;
pub mod chunker;
pub mod compression;
pub mod config;
pub mod copy;
pub mod crypto;
pub mod error;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod memory;
pub mod pack;
pub mod prune;
pub mod read;
pub mod repository;
pub mod retention;
pub mod settings;
pub mod snapshot;
pub mod tree;
pub mod verify;
pub mod walk;

pub use backend::{object_path, Backend, FileType};
pub use backup::{BackupOptions, BackupSession, StreamContent};
pub use error::{Error, ErrorKind, Result};
pub use id::Id;
pub use read::BlobReader;
pub use repository::{Closed, Indexed, InitOptions, Open, Opened, Repository};
