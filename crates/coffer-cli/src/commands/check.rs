//! `coffer check`: check the repository's structure, and with --read-data its data.

use crate::cli::CheckArgs;
use crate::context::Ctx;
use crate::output::{self, code, UsageError};
use anyhow::Result;
use coffer_core::check::CheckOptions;

fn parse_subset(s: &str) -> Result<f64> {
    let v: f64 = s.trim_end_matches('%').parse().map_err(|_| {
        UsageError(format!(
            "--read-data-subset {s:?} is not a percentage such as 10%"
        ))
    })?;
    if !(v > 0.0 && v <= 100.0) {
        return Err(UsageError(format!(
            "--read-data-subset {s:?} must be above 0% and at most 100%"
        ))
        .into());
    }
    Ok(v / 100.0)
}

/// Runs `check`.
pub async fn run(ctx: &Ctx, a: CheckArgs) -> Result<u8> {
    let subset = a
        .read_data_subset
        .as_deref()
        .map(parse_subset)
        .transpose()?;
    let (repo, lock) = ctx.open_for_reading("check").await?;
    let opts = CheckOptions {
        read_data: a.read_data || subset.is_some(),
        subset,
    };
    let report = repo.check(&opts).await;
    lock.release().await.ok();
    let report = report?;
    if ctx.global.json {
        output::print_json(&report);
    } else {
        for e in &report.errors {
            eprintln!("coffer: error: {e:#}");
        }
        if !ctx.global.quiet {
            for n in &report.notes {
                println!("note: {n}");
            }
            println!(
                "checked {} snapshots, {} packs, {} blobs{}",
                report.snapshots,
                report.packs,
                report.blobs,
                if opts.read_data {
                    format!(", read {} packs", report.packs_read)
                } else {
                    String::new()
                }
            );
            println!(
                "{}",
                if report.ok {
                    "no errors were found".to_string()
                } else {
                    format!(
                        "{} error(s) found: the repository is damaged",
                        report.errors.len()
                    )
                }
            );
        }
    }
    Ok(if report.ok { code::OK } else { code::FAILURE })
}
