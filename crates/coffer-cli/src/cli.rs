//! The command line: global options and one subcommand each.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Coffer: backups you can prove you can restore.
#[derive(Parser, Debug)]
#[command(name = "coffer", version, about, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Repository: a path or file:// URL (default: the embedded repository under the user's
    /// data directory).
    #[arg(short = 'r', long = "repo", env = "COFFER_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// Read the password from the first line of this file.
    #[arg(long, env = "COFFER_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this command (with sh -c) and use the first line it prints as the password.
    #[arg(long, env = "COFFER_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// A storage option, KEY=VALUE (repeatable), e.g. `-o s3.endpoint=http://minio:9000`;
    /// they override the environment (see the README for the keys).
    #[arg(short = 'o', long = "option", global = true, value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Parallel transfers to and from the storage (default 8).
    #[arg(long, global = true)]
    pub connections: Option<usize>,
    /// Do without the local cache of a remote repository's index files and snapshots.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Read without taking the repository's shared lock (restore, verify, check, dump, and the
    /// source of copy), for a repository this user may not write to. No prune may run
    /// meanwhile. Without it, a read-only repository is read without a lock after a warning.
    #[arg(long, global = true)]
    pub no_lock: bool,
    /// Keep the local cache here (default: the user's cache folder, ~/.cache/coffer).
    #[arg(long, global = true, value_name = "DIR", env = "COFFER_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Limit uploads to this many KiB/s (all transfers together).
    #[arg(
        long,
        global = true,
        value_name = "KIB_PER_S",
        env = "COFFER_LIMIT_UPLOAD"
    )]
    pub limit_upload: Option<u64>,
    /// Limit downloads to this many KiB/s (all transfers together).
    #[arg(
        long,
        global = true,
        value_name = "KIB_PER_S",
        env = "COFFER_LIMIT_DOWNLOAD"
    )]
    pub limit_download: Option<u64>,
    /// On S3 with Object Lock enabled on the bucket: write every object with a retention
    /// period of this length (e.g. 30d, 12h, 1y), so nobody can delete it before it ends.
    #[arg(
        long,
        global = true,
        value_name = "DURATION",
        env = "COFFER_OBJECT_LOCK"
    )]
    pub object_lock: Option<String>,
    /// Print one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more (repeat for debug output).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// Narrows which snapshots a command considers (and what `latest` means).
#[derive(Args, Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Only snapshots with this tag (repeatable: any of them).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only snapshots taken on this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots of this source path.
    #[arg(long)]
    pub source: Option<String>,
}

impl SnapshotFilter {
    /// The filter as the operations take it.
    pub fn ops(&self) -> coffer_ops::SnapshotFilter {
        coffer_ops::SnapshotFilter {
            tags: self.tags.clone(),
            host: self.host.clone(),
            source: self.source.clone(),
        }
    }
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a repository.
    Init(crate::commands::init::InitArgs),
    /// Back up files and folders.
    Backup(crate::commands::backup::BackupArgs),
    /// List snapshots, oldest first.
    #[command(alias = "list")]
    Snapshots(SnapshotFilter),
    /// Print a snapshot's manifest.
    Show(SnapArg),
    /// List the files in a snapshot.
    Ls(crate::commands::ls::LsArgs),
    /// Restore files from a snapshot.
    Restore(crate::commands::restore::RestoreArgs),
    /// Read every blob a snapshot needs and check every MAC and SHA-256.
    Verify(SnapArg),
    /// Check the repository's structure, and with --read-data its data.
    Check(crate::commands::check::CheckArgs),
    /// Delete snapshots (their data is freed by a later prune).
    Delete(crate::commands::delete::DeleteArgs),
    /// Sizes, deduplication and compression, per source.
    Stats,
    /// Compare two snapshots.
    Diff(crate::commands::diff::DiffArgs),
    /// Copy snapshots to another repository (any backend, password, compression, encryption).
    Copy(crate::commands::copy::CopyArgs),
    /// Manage the passwords that open the repository.
    #[command(subcommand)]
    Key(crate::commands::key::KeyCommand),
    /// Remove stale locks.
    Unlock(crate::commands::unlock::UnlockArgs),
    /// Maintain the index.
    #[command(subcommand)]
    Index(crate::commands::index::IndexCommand),
    /// Delete the snapshots a retention policy does not keep (their data is freed by a later
    /// prune).
    Forget(crate::commands::forget::ForgetArgs),
    /// Write a database snapshot's plain dump to stdout (SQL, the .db file, the .rdb file).
    Dump(crate::commands::dump::DumpArgs),
    /// Delete data no snapshot references and repack packs that are mostly unused.
    Prune(crate::commands::prune::PruneArgs),
    /// Run the scheduler daemon: the jobs of the config, at their times.
    Serve(crate::commands::serve::ServeArgs),
    /// The daemon's jobs: list, next, run, history.
    #[command(subcommand)]
    Schedule(crate::commands::schedule::ScheduleCommand),
    /// The last run of each job, and overdue jobs.
    Status(crate::commands::status::StatusArgs),
    /// The repository's shared settings: its retention policy and its mirrors.
    #[command(subcommand)]
    Config(crate::commands::config::ConfigCommand),
    /// S3 Object Lock: extend the retention of every current object to now + --object-lock.
    ExtendLock(crate::commands::extend_lock::ExtendLockArgs),
}

/// A snapshot argument plus filters.
#[derive(Args, Debug)]
pub struct SnapArg {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// Filters for `latest`.
    #[command(flatten)]
    pub filter: SnapshotFilter,
}
