//! `coffer verify`: read every blob of a snapshot and check every file's SHA-256.

use crate::cli::SnapArg;
use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::Result;

/// Runs `verify`.
pub async fn run(ctx: &Ctx, a: SnapArg) -> Result<u8> {
    let display = crate::commands::progress::display(ctx);
    let sigint =
        crate::commands::progress::cancel_on_sigint("interrupted: stopping the verification");
    let report = coffer_ops::verify::verify(
        &ctx.spec()?,
        &a.snapshot,
        &a.filter.ops(),
        ctx.global.no_lock,
        &*display,
        &sigint.token,
    )
    .await;
    display.finish();
    let report = report?;
    if ctx.global.json {
        output::print_json(&report);
    } else {
        for e in &report.errors {
            eprintln!("coffer: damaged: {e}");
        }
        if !ctx.global.quiet {
            if report.ok {
                println!(
                    "snapshot {} verified: every blob authenticated, every file's SHA-256 matches",
                    report.snapshot_id.short()
                );
            } else {
                println!(
                    "snapshot {} is DAMAGED: {} problem(s), listed above",
                    report.snapshot_id.short(),
                    report.errors.len()
                );
            }
        }
    }
    Ok(if report.ok { code::OK } else { code::FAILURE })
}
