//! The MySQL/MariaDB source (`mysql://USER@HOST:PORT/DB`, `mariadb://`; no database or
//! `--all-databases`: the whole server with users and grants).
//!
//! Backup: each database's schema (tables, sequences, views, routines) from
//! `mariadb-dump --no-data`; each table's rows read by Coffer inside one consistent snapshot
//! and stored as INSERT statements in a stream of its own (so an unchanged table dedups to
//! nothing), with the exact row count taken while streaming; triggers and events stored
//! apart so a restore creates them after the data. See [`layout`] for the stream paths.
//! Passwords reach the client tools through a private `--defaults-extra-file`, never argv.
//!
//! [`MysqlEngine`] implements [`DatabaseEngine`] with `backup.rs`, `restore.rs` and `dump.rs`.

mod backup;
mod client;
mod conn;
mod dump;
pub mod layout;
mod restore;
mod sql;
mod users;

use crate::database::{
    BackupContext, DatabaseEngine, DbManifest, DumpRequest, Engine, RestoreReport, RestoreRequest,
    StreamSource, TargetState,
};
use async_trait::async_trait;
use coffer_core::Result;

/// The MySQL/MariaDB engine ([`DatabaseEngine`]).
pub struct MysqlEngine;

#[async_trait]
impl DatabaseEngine for MysqlEngine {
    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    fn example_target(&self) -> &'static str {
        "mysql://USER@HOST:3306/NEWDB"
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
