//! The PostgreSQL source: logical, transaction-consistent backups of a database or a whole
//! server (one exported snapshot per database shared by `pg_dump --schema-only` and parallel
//! COPY workers, each table in its own stream), restores into the same or another database
//! (whole, per table, schema or data only, with `--clean`), and plain SQL dumps.
//!
//! [`PostgresEngine`] implements [`DatabaseEngine`] with:
//! * backup (`backup.rs`): streams and manifest; what restore needs is in `catalog.rs`.
//! * target probe and restore (`restore.rs`, roles in `globals.rs`, per-table entry selection
//!   in `toc.rs`).
//! * dump (`dump.rs`).
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
    BackupContext, DatabaseEngine, DbManifest, DumpRequest, Engine, RestoreReport, RestoreRequest,
    StreamSource, TargetState,
};
use async_trait::async_trait;
use coffer_core::Result;

/// The PostgreSQL engine ([`DatabaseEngine`]).
pub struct PostgresEngine;

#[async_trait]
impl DatabaseEngine for PostgresEngine {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn example_target(&self) -> &'static str {
        "postgres://USER@HOST:5432/NEWDB"
    }

    async fn backup(&self, ctx: &BackupContext) -> Result<DbManifest> {
        backup::backup(ctx).await
    }

    async fn probe_target(&self, m: &DbManifest, req: &RestoreRequest) -> Result<TargetState> {
        restore::probe_target(m, req).await
    }

    async fn restore(
        &self,
        src: &StreamSource,
        m: &DbManifest,
        req: &RestoreRequest,
    ) -> Result<RestoreReport> {
        restore::restore(src, m, req).await
    }

    async fn dump(
        &self,
        src: &StreamSource,
        m: &DbManifest,
        req: &DumpRequest,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<()> {
        dump::dump(src, m, req, out).await
    }
}
