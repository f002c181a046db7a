//! `coffer verify`: read every blob of a snapshot and check every file's SHA-256.

use crate::cli::SnapArg;
use crate::context::{find_snapshot, Ctx};
use crate::output::{self, code};
use anyhow::Result;

/// Runs `verify`.
pub async fn run(ctx: &Ctx, a: SnapArg) -> Result<u8> {
    let (repo, lock) = ctx.open_for_reading("verify").await?;
    let snap = find_snapshot(&repo, &a.snapshot, &a.filter).await?;
    let report = repo.verify_snapshot(&snap).await;
    lock.release().await.ok();
    let report = report?;
    if ctx.global.json {
        output::print_json(
            &serde_json::json!({ "ok": report.ok, "snapshot_id": snap.id, "errors": report.errors }),
        );
    } else {
        for e in &report.errors {
            eprintln!("coffer: damaged: {e:#}");
        }
        if !ctx.global.quiet {
            if report.ok {
                println!(
                    "snapshot {} verified: every blob authenticated, every file's SHA-256 matches",
                    snap.id.short()
                );
            } else {
                println!(
                    "snapshot {} is DAMAGED: {} problem(s), listed above",
                    snap.id.short(),
                    report.errors.len()
                );
            }
        }
    }
    Ok(if report.ok { code::OK } else { code::FAILURE })
}
