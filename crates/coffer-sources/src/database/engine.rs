//! [`DatabaseEngine`]: what each engine module (`crate::postgres`, `mysql`, `sqlite`, `redis`)
//! offers, implemented once per module, and [`engine_for`], which picks the implementation of
//! an [`Engine`]. The dispatchers of `database` (`backup`, `probe_target`, `restore`, `dump`)
//! go through it, and so can callers that need an engine's own facts (the example target URL
//! of a message).

use super::{
    BackupContext, DbManifest, DumpRequest, Engine, RestoreReport, RestoreRequest, StreamSource,
    TargetState,
};
use async_trait::async_trait;
use coffer_core::Result;

/// One database engine: backup, target probe, restore and plain dump, and the facts about it
/// that messages show.
#[async_trait]
pub trait DatabaseEngine: Send + Sync {
    /// The engine this implements.
    fn engine(&self) -> Engine;

    /// A restore target URL to show in messages, with placeholders in capitals
    /// (`postgres://USER@HOST:5432/NEWDB`).
    fn example_target(&self) -> &'static str;

    /// Backs up what `ctx.url` names (a database, or the whole server without one or with
    /// `ctx.all_databases`) into `ctx.sink`. Returns the manifest; the streams are filled in
    /// by `database::backup`.
    async fn backup(&self, ctx: &BackupContext) -> Result<DbManifest>;

    /// Looks at the restore target before anything is written: does it exist, is it empty,
    /// what would be replaced.
    async fn probe_target(&self, m: &DbManifest, req: &RestoreRequest) -> Result<TargetState>;

    /// Restores the snapshot into `req.target` and compares row (or key) counts with the
    /// manifest.
    async fn restore(
        &self,
        src: &StreamSource,
        m: &DbManifest,
        req: &RestoreRequest,
    ) -> Result<RestoreReport>;

    /// Writes the plain dump (SQL for PostgreSQL and MySQL, the database file for SQLite, the
    /// RDB file for Redis) to `out`, needing no server.
    async fn dump(
        &self,
        src: &StreamSource,
        m: &DbManifest,
        req: &DumpRequest,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<()>;
}

/// The implementation of `engine`.
pub fn engine_for(engine: Engine) -> &'static dyn DatabaseEngine {
    match engine {
        Engine::Postgres => &crate::postgres::PostgresEngine,
        Engine::Mysql => &crate::mysql::MysqlEngine,
        Engine::Sqlite => &crate::sqlite::SqliteEngine,
        Engine::Redis => &crate::redis::RedisEngine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_engine_has_its_implementation_and_an_example_target_of_its_own() {
        for e in [
            Engine::Postgres,
            Engine::Mysql,
            Engine::Sqlite,
            Engine::Redis,
        ] {
            let imp = engine_for(e);
            assert_eq!(imp.engine(), e);
            let url = super::super::DbUrl::parse(imp.example_target()).unwrap();
            assert_eq!(url.engine, e, "{}", imp.example_target());
        }
    }
}
