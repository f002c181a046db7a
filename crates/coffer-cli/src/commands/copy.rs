//! `coffer copy`: copy snapshots between repositories, keeping their ids.

use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::Result;
use clap::Args;
use coffer_ops::password::PasswordSource;
use coffer_ops::RepoSpec;
use std::path::PathBuf;
use std::time::Instant;

/// `copy`.
#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The repository to copy from.
    #[arg(long)]
    pub from: String,
    /// The repository to copy to (it must exist: `coffer init` it first).
    #[arg(long)]
    pub to: String,
    /// The password file of the source (default: the global password options).
    #[arg(long, env = "COFFER_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<PathBuf>,
    /// The password file of the target (default: the global password options).
    #[arg(long, env = "COFFER_TO_PASSWORD_FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Snapshots to copy (ids, prefixes or `latest`; default: all).
    pub snapshots: Vec<String>,
}

/// Runs `copy`.
pub async fn run(ctx: &Ctx, a: CopyArgs) -> Result<u8> {
    let options = ctx.storage_options()?;
    let password = |file: &Option<PathBuf>| -> Result<PasswordSource> {
        match file {
            Some(f) => Ok(PasswordSource::File(f.clone())),
            None => ctx.password_source(),
        }
    };
    let from = RepoSpec {
        url: a.from.clone(),
        options: options.clone(),
        password: password(&a.from_password_file)?,
    };
    let to = RepoSpec {
        url: a.to.clone(),
        options,
        password: password(&a.to_password_file)?,
    };
    let opts = coffer_ops::copy::Copy {
        snapshots: a.snapshots.clone(),
        no_lock: ctx.global.no_lock,
    };
    let clock = Instant::now();
    let display = crate::commands::progress::display(ctx);
    let sigint = crate::commands::progress::cancel_on_sigint(
        "interrupted: the copy stops after the snapshot it is copying",
    );
    let report = coffer_ops::copy::copy(&from, &to, &opts, &*display, &sigint.token).await;
    display.finish();
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
