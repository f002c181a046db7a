//! `coffer check`: check the repository's structure, and with --read-data its data.

use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::Result;
use clap::Args;
use coffer_core::check::CheckOptions;
use coffer_ops::check::parse_subset;

/// `check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Read and authenticate all pack data.
    #[arg(long)]
    pub read_data: bool,
    /// Read this share of the packs, e.g. 10%.
    #[arg(long)]
    pub read_data_subset: Option<String>,
}

/// Runs `check`.
pub async fn run(ctx: &Ctx, a: CheckArgs) -> Result<u8> {
    let subset = a
        .read_data_subset
        .as_deref()
        .map(parse_subset)
        .transpose()?;
    let opts = CheckOptions {
        read_data: a.read_data || subset.is_some(),
        subset,
    };
    let display = crate::commands::progress::display(ctx);
    let sigint = crate::commands::progress::cancel_on_sigint("interrupted: stopping the check");
    let report = coffer_ops::check::check(
        &ctx.spec()?,
        &opts,
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
            eprintln!("coffer: error: {e}");
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
