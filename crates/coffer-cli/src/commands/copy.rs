//! `coffer copy`: copy snapshots between repositories, keeping their ids.

use crate::cli::{CopyArgs, SnapshotFilter};
use crate::context::{open_at, read_password_file, Ctx};
use crate::output::{self, code};
use anyhow::Result;
use coffer_core::Repository;
use std::time::Instant;

/// Runs `copy`.
pub async fn run(ctx: &Ctx, a: CopyArgs) -> Result<u8> {
    let password = |file: &Option<std::path::PathBuf>| -> Result<Vec<u8>> {
        match file {
            Some(f) => read_password_file(f),
            None => ctx.password(),
        }
    };
    let opts = ctx.storage_options()?;
    let src = open_at(&a.from, &opts, || password(&a.from_password_file)).await?;
    let dst = open_at(&a.to, &opts, || password(&a.to_password_file)).await?;
    // Locks first, then the indexes: a prune cannot change them while they are read.
    let src_lock = crate::context::read_lock(&src, "copy (source)", ctx.global.no_lock).await?;
    let dst_lock = match dst.lock(false, "copy (target)").await {
        Ok(l) => l,
        Err(e) => {
            src_lock.release().await.ok();
            return Err(e.into());
        }
    };
    let loaded =
        async { Ok::<_, coffer_core::Error>((src.load_index().await?, dst.load_index().await?)) }
            .await;
    let (src, dst) = match loaded {
        Ok(pair) => pair,
        Err(e) => {
            src_lock.release().await.ok();
            dst_lock.release().await.ok();
            return Err(e.into());
        }
    };
    let all = src.list_snapshots().await?;
    let chosen = if a.snapshots.is_empty() {
        all.clone()
    } else {
        let mut v = Vec::new();
        for spec in &a.snapshots {
            let candidates = if spec == "latest" {
                crate::context::filter_snapshots(all.clone(), &SnapshotFilter::default())
            } else {
                all.clone()
            };
            v.push(
                Repository::<coffer_core::Indexed>::resolve_snapshot(spec, &candidates)?.clone(),
            );
        }
        v
    };
    let clock = Instant::now();
    let report = src.copy_to(&dst, &chosen).await;
    src_lock.release().await.ok();
    dst_lock.release().await.ok();
    let report = report?;
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "copied": report.copied, "skipped": report.skipped, "blobs_added": report.blobs_added,
            "bytes_added": report.bytes_added, "duration_seconds": clock.elapsed().as_secs_f64(),
        }));
    } else if !ctx.global.quiet {
        for id in &report.copied {
            println!("copied snapshot {}", id.short());
        }
        println!(
            "{} copied, {} already in the target; added {} in {} blobs in {}",
            report.copied.len(),
            report.skipped.len(),
            output::size(report.bytes_added),
            report.blobs_added,
            output::duration(clock.elapsed().as_secs_f64())
        );
    }
    Ok(code::OK)
}
