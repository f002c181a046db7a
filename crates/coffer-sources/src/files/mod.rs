//! File trees: backup (walk, read, chunk) and restore (recreate contents and metadata).

mod backup;
mod exclude;
mod meta;
mod promise;
mod restore;

pub use backup::{backup_files, FileBackupOptions, FileBackupResult, Unreadable};
pub use exclude::Excludes;
pub use restore::{restore_files, RestoreOptions, RestoreReport};
