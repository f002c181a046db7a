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

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a repository.
    Init(InitArgs),
    /// Back up files and folders.
    Backup(BackupArgs),
    /// List snapshots, oldest first.
    #[command(alias = "list")]
    Snapshots(SnapshotFilter),
    /// Print a snapshot's manifest.
    Show(SnapArg),
    /// List the files in a snapshot.
    Ls(LsArgs),
    /// Restore files from a snapshot.
    Restore(RestoreArgs),
    /// Read every blob a snapshot needs and check every MAC and SHA-256.
    Verify(SnapArg),
    /// Check the repository's structure, and with --read-data its data.
    Check(CheckArgs),
    /// Delete snapshots (their data is freed by a later prune).
    Delete(DeleteArgs),
    /// Sizes, deduplication and compression, per source.
    Stats,
    /// Compare two snapshots.
    Diff(DiffArgs),
    /// Copy snapshots to another repository (any backend, password, compression, encryption).
    Copy(CopyArgs),
    /// Manage the passwords that open the repository.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Remove stale locks.
    Unlock(UnlockArgs),
    /// Maintain the index.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Delete the snapshots a retention policy does not keep (their data is freed by a later
    /// prune).
    Forget(ForgetArgs),
    /// Write a database snapshot's plain dump to stdout (SQL, the .db file, the .rdb file).
    Dump(DumpArgs),
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

/// `init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// zstd[:LEVEL] (default zstd:3), lz4, gzip[:LEVEL], bzip2[:LEVEL] or none.
    #[arg(long, default_value = "zstd:3")]
    pub compression: String,
    /// aes256-gcm (default), aes128-gcm, chacha20-poly1305, or none (needs
    /// --insecure-no-encryption).
    #[arg(long, default_value = "aes256-gcm")]
    pub encryption: String,
    /// Allow --encryption none: data stays authenticated but anyone can read it.
    #[arg(long)]
    pub insecure_no_encryption: bool,
    /// Chunk sizes in bytes, MIN,AVG,MAX (for benchmarks; the default is measured, see
    /// docs/format.md).
    #[arg(long, hide = true)]
    pub chunker: Option<String>,
}

/// `backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and folders to back up, or one database URL: postgres://USER@HOST:PORT/DB,
    /// mysql://USER@HOST:PORT/DB (or mariadb://), sqlite:///PATH/TO/DB, redis://HOST:PORT.
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
    /// Database tables dumped at once (default: the number of cores, at most 4).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Back up every database of the server (also what a URL without a database means).
    #[arg(long)]
    pub all_databases: bool,
    /// Read the database password from the first line of this file (otherwise: the URL, or
    /// PGPASSWORD / .pgpass, MYSQL_PWD, REDISCLI_AUTH).
    #[arg(long, value_name = "FILE")]
    pub db_password_file: Option<PathBuf>,
    /// full, incremental (default when a parent exists) or differential.
    #[arg(long = "type")]
    pub backup_type: Option<String>,
    /// Skip paths matching this glob (repeatable).
    #[arg(long = "exclude")]
    pub excludes: Vec<String>,
    /// Read exclude globs from this file, one per line (repeatable).
    #[arg(long = "exclude-file")]
    pub exclude_files: Vec<PathBuf>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Name the snapshot.
    #[arg(long)]
    pub name: Option<String>,
    /// Describe the snapshot.
    #[arg(long)]
    pub description: Option<String>,
    /// Record this host name instead of this machine's.
    #[arg(long)]
    pub host: Option<String>,
    /// Set the snapshot's time (RFC 3339, or "YYYY-MM-DD HH:MM:SS" in UTC).
    #[arg(long)]
    pub time: Option<String>,
    /// Do not copy the new snapshot to the mirrors listed in the repository's settings.
    #[arg(long)]
    pub no_mirrors: bool,
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

/// `ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// Only list below this path.
    pub path: Option<String>,
    /// Filters for `latest`.
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

/// `restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// Folder to restore into, or for a database snapshot the database URL.
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// Database: restore only this table, NAME or SCHEMA.NAME (repeatable).
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,
    /// Database: which database of a whole-server snapshot.
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// Database: restore only the schema.
    #[arg(long, conflicts_with = "data_only")]
    pub schema_only: bool,
    /// Database: restore only the data (the schema must exist).
    #[arg(long)]
    pub data_only: bool,
    /// Database: drop the objects the restore replaces first (needed when the target is not
    /// empty).
    #[arg(long)]
    pub clean: bool,
    /// Database: tables restored at once (default: the number of cores, at most 4).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Database: do not back up a non-empty target before overwriting it.
    #[arg(long)]
    pub no_safety_backup: bool,
    /// Database: do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Database: check the snapshot and print what would be restored; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Database: read the target's password from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub db_password_file: Option<PathBuf>,
    /// Restore only this path (repeatable).
    #[arg(long = "include")]
    pub includes: Vec<String>,
    /// Skip paths matching this glob (repeatable).
    #[arg(long = "exclude")]
    pub excludes: Vec<String>,
    /// Allow a target that is not empty; existing files are replaced.
    #[arg(long)]
    pub overwrite: bool,
    /// Filters for `latest`.
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

/// `check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Read and authenticate all pack data.
    #[arg(long)]
    pub read_data: bool,
    /// Read this share of the packs, e.g. 10%.
    #[arg(long)]
    pub read_data_subset: Option<String>,
}

/// `delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Snapshots (ids or unique prefixes).
    #[arg(required = true)]
    pub snapshots: Vec<String>,
}

/// `copy`.
#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The repository to copy from.
    #[arg(long)]
    pub from: String,
    /// The repository to copy to (it must exist: `coffer init` it first).
    #[arg(long)]
    pub to: String,
    /// The password file of the source (default: the global password options).
    #[arg(long, env = "COFFER_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<PathBuf>,
    /// The password file of the target (default: the global password options).
    #[arg(long, env = "COFFER_TO_PASSWORD_FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Snapshots to copy (ids, prefixes or `latest`; default: all).
    pub snapshots: Vec<String>,
}

/// `diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The older snapshot.
    pub first: String,
    /// The newer snapshot.
    pub second: String,
}

/// `key` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List key files.
    List,
    /// Add a password.
    Add(NewPassword),
    /// Remove a key file (not the one in use).
    Remove {
        /// Key id or unique prefix.
        id: String,
    },
    /// Change the password of the key in use.
    Passwd(NewPassword),
}

/// Where a new password comes from.
#[derive(Args, Debug)]
pub struct NewPassword {
    /// Read the new password from this file.
    #[arg(long, env = "COFFER_NEW_PASSWORD_FILE")]
    pub new_password_file: Option<PathBuf>,
}

/// `index` subcommands.
#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Merge all index files into one (each backup writes its own).
    Compact,
}

/// `unlock`.
#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Remove every lock, not only stale ones.
    #[arg(long)]
    pub remove_all: bool,
}

/// A retention policy's flags (see `coffer_core::retention` for the exact rules), shared by
/// `forget` and `config set-retention`.
#[derive(Args, Debug, Clone, Default)]
pub struct PolicyArgs {
    /// Keep the N newest snapshots (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_last: Option<i32>,
    /// Keep the newest snapshot of each of the N newest hours that have one (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_hourly: Option<i32>,
    /// Keep the newest snapshot of each of the N newest days that have one (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_daily: Option<i32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have one (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_weekly: Option<i32>,
    /// Keep the newest snapshot of each of the N newest months that have one (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_monthly: Option<i32>,
    /// Keep the newest snapshot of each of the N newest years that have one (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_yearly: Option<i32>,
    /// Keep every snapshot within this of the group's newest (30d, 1y2m, 2w3d4h).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep the newest snapshot of each hour within this of the group's newest.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_hourly: Option<String>,
    /// Keep the newest snapshot of each day within this of the group's newest.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_daily: Option<String>,
    /// Keep the newest snapshot of each ISO week within this of the group's newest.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_weekly: Option<String>,
    /// Keep the newest snapshot of each month within this of the group's newest.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_monthly: Option<String>,
    /// Keep the newest snapshot of each year within this of the group's newest.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_yearly: Option<String>,
    /// Keep snapshots with this tag (repeatable: any of them; `a,b` needs both).
    #[arg(long = "keep-tag", value_name = "TAG[,TAG]")]
    pub keep_tags: Vec<String>,
    /// Never keep fewer than N snapshots per group (the newest removed ones are kept again).
    #[arg(long, value_name = "N")]
    pub min_keep: Option<u32>,
    /// Never keep more than N snapshots per group (the oldest go first).
    #[arg(long, value_name = "N")]
    pub max_keep: Option<u32>,
    /// Remove the oldest snapshots until the kept ones hold at most SIZE (estimated from each
    /// snapshot's added bytes), never below --min-keep.
    #[arg(long, value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Group snapshots by these fields: host, source, tags (default host,source).
    #[arg(long, value_name = "FIELDS")]
    pub group_by: Option<String>,
    /// Count hours, days, weeks, months and years in this IANA time zone (default: this
    /// machine's).
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
}

/// `forget`: apply a retention policy (the flags, or the repository's stored policy).
#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// The policy (none given: the repository's, set by `coffer config set-retention`).
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Only print what would be removed.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Then prune: delete the data no remaining snapshot references.
    #[arg(long)]
    pub prune: bool,
    /// Prune tuning (with --prune).
    #[command(flatten)]
    pub prune_tuning: crate::commands::prune::PruneTuning,
}

/// `dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// Which database of a whole-server snapshot.
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// Only this table (repeatable).
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,
    /// Only the schema.
    #[arg(long, conflicts_with = "data_only")]
    pub schema_only: bool,
    /// Only the data.
    #[arg(long)]
    pub data_only: bool,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Filters for `latest`.
    #[command(flatten)]
    pub filter: SnapshotFilter,
}
