//! `coffer dump`: a database snapshot's plain dump on stdout (SQL for PostgreSQL and MySQL, the
//! database file for SQLite, the RDB file for Redis), so a restore never depends on Coffer
//! reaching a server.

use crate::cli::DumpArgs;
use crate::context::{find_snapshot, Ctx};
use crate::output::{code, UsageError};
use anyhow::{Context as _, Result};
use coffer_sources::database::{self, DbManifest, DumpRequest, Engine, StreamSource};
use std::io::Write;

/// Runs `dump`.
pub async fn run(ctx: &Ctx, a: DumpArgs) -> Result<u8> {
    let (repo, lock) = ctx.open_for_reading("dump").await?;
    let snap = find_snapshot(&repo, &a.snapshot, &a.filter).await?;
    if Engine::from_kind(&snap.source.kind).is_none() {
        lock.release().await.ok();
        return Err(UsageError(format!(
            "snapshot {} holds files, not a database: use `coffer restore` or `coffer ls`",
            snap.id.short()
        ))
        .into());
    }
    let manifest = DbManifest::from_snapshot(&snap)?;
    let req = DumpRequest {
        database: a.database.clone(),
        tables: a.tables.clone(),
        schema_only: a.schema_only,
        data_only: a.data_only,
    };
    let src = StreamSource::load(&repo, &snap).await?;
    let result = match &a.output {
        Some(path) => {
            // Written beside the destination, renamed into place when complete.
            let tmp = path.with_extension("coffer-partial");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            let r = database::dump(&src, &manifest, &req, &mut out).await;
            match r.map_err(anyhow::Error::new).and_then(|_| {
                let f = out.into_inner().map_err(|e| e.into_error())?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)?;
                Ok(())
            }) {
                Ok(()) => Ok(()),
                Err(e) => {
                    std::fs::remove_file(&tmp).ok();
                    Err(e)
                }
            }
        }
        None => {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
            database::dump(&src, &manifest, &req, &mut out)
                .await
                .map_err(anyhow::Error::new)
                .and_then(|_| out.flush().map_err(anyhow::Error::new))
        }
    };
    lock.release().await.ok();
    result.with_context(|| format!("dumping snapshot {}", snap.id.short()))?;
    let _ = ctx;
    Ok(code::OK)
}
