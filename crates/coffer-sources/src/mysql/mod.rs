//! The MySQL/MariaDB source (`mysql://USER@HOST:PORT/DB`, `mariadb://`; no database or
//! `--all-databases`: the whole server with users and grants).
//!
//! Backup: each database's schema (tables, sequences, views, routines) from
//! `mariadb-dump --no-data`; each table's rows read by Coffer inside one consistent snapshot
//! and stored as INSERT statements in a stream of its own (so an unchanged table dedups to
//! nothing), with the exact row count taken while streaming; triggers and events stored
//! apart so a restore creates them after the data. See [`layout`] for the stream paths.
//! Passwords reach the client tools through a private `--defaults-extra-file`, never argv.

mod backup;
mod client;
mod conn;
mod dump;
pub mod layout;
mod restore;
mod sql;
mod users;

use crate::database::{
    BackupContext, DbManifest, DumpRequest, RestoreReport, RestoreRequest, StreamSource,
    TargetState,
};
use coffer_core::Result;

/// Backs up the database `ctx.url` names (or the whole server) into `ctx.sink`.
pub async fn backup(ctx: &BackupContext) -> Result<DbManifest> {
    backup::backup(ctx).await
}

/// Describes the restore target: which databases exist and which tables would be replaced.
pub async fn probe_target(m: &DbManifest, req: &RestoreRequest) -> Result<TargetState> {
    restore::probe_target(m, req).await
}

/// Restores a snapshot into the target, then compares row counts.
pub async fn restore(
    src: &StreamSource,
    m: &DbManifest,
    req: &RestoreRequest,
) -> Result<RestoreReport> {
    restore::restore(src, m, req).await
}

/// Writes the plain SQL dump.
pub async fn dump(
    src: &StreamSource,
    m: &DbManifest,
    req: &DumpRequest,
    out: &mut (dyn std::io::Write + Send),
) -> Result<()> {
    dump::dump(src, m, req, out).await
}
