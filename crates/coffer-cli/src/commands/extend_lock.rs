//! `coffer extend-lock`: move the S3 Object Lock retention of every current object of the
//! repository (lock files aside) to now plus the `--object-lock` period, so that packs reused
//! by later backups, the keys and the config stay protected.

use crate::context::Ctx;
use crate::output::{self, code, UsageError};
use anyhow::Result;
use clap::Args;

/// `extend-lock`: takes its period from `--object-lock DURATION` (or `COFFER_OBJECT_LOCK`, or
/// `-o s3.object_lock=DURATION`).
#[derive(Args, Debug)]
pub struct ExtendLockArgs {}

/// The usage error for a run without a retention period.
fn no_period() -> UsageError {
    UsageError(
        "extend-lock needs the retention period to set: give --object-lock DURATION (or \
         COFFER_OBJECT_LOCK, or -o s3.object_lock=DURATION), e.g. `coffer --object-lock 30d \
         extend-lock`"
            .into(),
    )
}

/// Runs `extend-lock`.
pub async fn run(ctx: &Ctx, _a: ExtendLockArgs) -> Result<u8> {
    let opts = ctx.storage_options()?;
    let has_option = opts
        .extra
        .get("s3.object_lock")
        .is_some_and(|v| !v.trim().is_empty());
    if opts.object_lock.is_none() && !has_option {
        return Err(no_period().into());
    }
    let url = ctx.repo_url()?;
    if !matches!(
        coffer_storage::Location::parse(&url)?,
        coffer_storage::Location::S3 { .. }
    ) {
        return Err(coffer_core::Error::new(
            coffer_core::ErrorKind::Unsupported,
            "extend-lock works only on S3 repositories (s3://BUCKET/PREFIX on a bucket with \
             Object Lock enabled): other storage has no Object Lock",
        )
        .into());
    }
    // Opening checks the repository and the password; the shared lock keeps prune away.
    let repo = ctx.open().await?;
    let lock = repo.lock(false, "extend-lock").await?;
    let report = coffer_storage::extend_retention(&url, &opts).await;
    lock.release().await.ok();
    let report = report?;
    let until = report.until.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "until": until,
            "mode_for_unlocked": format!("{:?}", report.mode).to_lowercase(),
            "objects": report.objects,
            "extended": report.extended,
            "already_later": report.already_later,
            "gone": report.gone,
            "failed": report
                .failed
                .iter()
                .map(|(path, error)| serde_json::json!({ "path": path, "error": error }))
                .collect::<Vec<_>>(),
        }));
    } else {
        for (path, why) in &report.failed {
            eprintln!("coffer: cannot extend the retention of {path}: {why}");
        }
        if !ctx.global.quiet {
            println!(
                "Object Lock retention of {} object(s) until {until}: {} extended, {} already \
                 later, {} failed{}",
                report.objects,
                report.extended,
                report.already_later,
                report.failed.len(),
                if report.gone > 0 {
                    format!(", {} deleted meanwhile", report.gone)
                } else {
                    String::new()
                }
            );
        }
    }
    if report.failed.is_empty() {
        Ok(code::OK)
    } else {
        if !ctx.global.json {
            eprintln!(
                "coffer: error: the retention of {} object(s) was not extended (listed above); \
                 run extend-lock again",
                report.failed.len()
            );
        }
        Ok(code::FAILURE)
    }
}
