//! File trees: backup (walk, read, chunk) and restore (recreate contents and metadata).

mod backup;
mod exclude;
mod lister;
mod meta;
mod page_cache;
mod promise;
mod restore;

pub use backup::{
    backup_files, backup_files_with, FileBackupOptions, FileBackupResult, Unreadable,
};
pub use exclude::Excludes;
pub use lister::ScanAhead;
pub use restore::{restore_files, RestoreOptions, RestoreReport, RestoreWatch};
