//! `coffer restore`: restore files from a snapshot into a folder.

use crate::cli::RestoreArgs;
use crate::commands::ls::rel_path;
use crate::context::{find_snapshot, Ctx};
use crate::output::{self, code, UsageError};
use anyhow::Result;
use coffer_sources::files::{restore_files, Excludes, RestoreOptions};
use std::time::Instant;

/// Runs `restore`.
pub async fn run(ctx: &Ctx, a: RestoreArgs) -> Result<u8> {
    let excludes = Excludes::new(&a.excludes).map_err(|e| UsageError(format!("{e:#}")))?;
    let (repo, lock) = ctx.open_for_reading("restore").await?;
    let snap = find_snapshot(&repo, &a.snapshot, &a.filter).await?;
    if coffer_sources::database::Engine::from_kind(&snap.source.kind).is_some() {
        let r = crate::commands::db_restore::run(ctx, &a, &repo, &snap).await;
        lock.release().await.ok();
        return r;
    }
    if !a.tables.is_empty()
        || a.database.is_some()
        || a.schema_only
        || a.data_only
        || a.clean
        || a.dry_run
        || a.no_safety_backup
    {
        lock.release().await.ok();
        return Err(UsageError(format!(
            "snapshot {} holds files: --table, --database, --schema-only, --data-only, --clean, --dry-run and --no-safety-backup apply to database snapshots",
            snap.id.short()
        ))
        .into());
    }
    let clock = Instant::now();
    let opts = RestoreOptions {
        target: std::path::absolute(&a.target)?,
        includes: a
            .includes
            .iter()
            .map(|i| rel_path(i, &snap.source.paths))
            .collect(),
        excludes,
        overwrite: a.overwrite,
        workers: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2)
            * 2,
    };
    let (reader, handle, root) = (
        repo.blob_reader(),
        tokio::runtime::Handle::current(),
        snap.tree,
    );
    let report =
        tokio::task::spawn_blocking(move || restore_files(reader, handle, root, opts)).await?;
    lock.release().await.ok();
    let report = report?;
    let secs = clock.elapsed().as_secs_f64();
    for (p, e) in &report.failed {
        eprintln!("coffer: could not restore {p}: {e:#}");
    }
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "snapshot_id": snap.id, "target": a.target, "files": report.files, "dirs": report.dirs, "others": report.others,
            "bytes": report.bytes, "duration_seconds": secs,
            "failed": report.failed.iter().map(|(p, e)| serde_json::json!({"path": p, "error": e})).collect::<Vec<_>>(),
            "warnings": report.warnings,
        }));
    } else if !ctx.global.quiet {
        for w in &report.warnings {
            eprintln!("coffer: note: {w}");
        }
        println!(
            "restored snapshot {} to {}: {} files, {} dirs, {} others, {} in {}",
            snap.id.short(),
            a.target.display(),
            report.files,
            report.dirs,
            report.others,
            output::size(report.bytes),
            output::duration(secs)
        );
        if !report.failed.is_empty() {
            println!("{} entries could NOT be restored (listed above); everything else was restored and checked", report.failed.len());
        }
    }
    Ok(if report.failed.is_empty() {
        code::OK
    } else {
        code::FAILURE
    })
}
