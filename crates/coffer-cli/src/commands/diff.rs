//! `coffer diff`: paths added, removed, modified and with new metadata only between two
//! snapshots (the comparison is `coffer_ops::diff`).

use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::Result;
use clap::Args;
use coffer_ops::diff::{diff_snapshots, Change};
use coffer_ops::select::find_snapshot;
use coffer_ops::SnapshotFilter;

/// `diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The older snapshot.
    pub first: String,
    /// The newer snapshot.
    pub second: String,
}

/// Runs `diff`.
pub async fn run(ctx: &Ctx, a: DiffArgs) -> Result<u8> {
    let repo = ctx.open_indexed().await?;
    let f = SnapshotFilter::default();
    let (s1, s2) = (
        find_snapshot(&repo, &a.first, &f).await?,
        find_snapshot(&repo, &a.second, &f).await?,
    );
    let report = diff_snapshots(&repo, &s1, &s2).await?;
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "first": s1.id,
            "second": s2.id,
            "changes": report.changes,
        }));
    } else {
        for c in &report.changes {
            println!("{} {}", c.change.marker(), c.path);
        }
        if !ctx.global.quiet {
            println!(
                "{} added, {} removed, {} modified, {} with new metadata only",
                report.count(Change::Added),
                report.count(Change::Removed),
                report.count(Change::Modified),
                report.count(Change::Metadata)
            );
        }
    }
    Ok(code::OK)
}
