//! The PostgreSQL source: logical, transaction-consistent backups of a database or a whole
//! server (one exported snapshot per database shared by `pg_dump --schema-only` and parallel
//! COPY workers, each table in its own stream), restores into the same or another database
//! (whole, per table, schema or data only, with `--clean`), and plain SQL dumps.
//!
//! * [`backup`] (`backup.rs`): streams and manifest; what restore needs is in `catalog.rs`.
//! * [`probe_target`], [`restore`] (`restore.rs`, roles in `globals.rs`, per-table entry
//!   selection in `toc.rs`).
//! * [`dump`] (`dump.rs`).
//! * `connect.rs` resolves connections and passwords; `tools.rs` finds `pg_dump` and friends.

mod backup;
mod catalog;
mod connect;
mod dump;
mod globals;
mod restore;
mod sql;
mod stage;
mod toc;
mod tools;

use crate::database::{
    BackupContext, DbManifest, DumpRequest, RestoreReport, RestoreRequest, StreamSource,
    TargetState,
};
use coffer_core::Result;

/// Backs up the database (or, without a database or with `ctx.all_databases`, the whole
/// server) that `ctx.url` names into `ctx.sink`.
pub async fn backup(ctx: &BackupContext) -> Result<DbManifest> {
    backup::backup(ctx).await
}

/// Describes the restore target: whether it exists, is empty, and which tables the restore
/// would replace.
pub async fn probe_target(m: &DbManifest, req: &RestoreRequest) -> Result<TargetState> {
    restore::probe_target(m, req).await
}

/// Restores a snapshot into `req.target` and compares row counts with the manifest.
pub async fn restore(
    src: &StreamSource,
    m: &DbManifest,
    req: &RestoreRequest,
) -> Result<RestoreReport> {
    restore::restore(src, m, req).await
}

/// Writes the plain SQL dump of a snapshot to `out` (for `psql`), needing no server.
pub async fn dump(
    src: &StreamSource,
    m: &DbManifest,
    req: &DumpRequest,
    out: &mut (dyn std::io::Write + Send),
) -> Result<()> {
    dump::dump(src, m, req, out).await
}
