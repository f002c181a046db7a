//! `coffer snapshots` (alias `list`): list snapshots, oldest first.

use crate::cli::SnapshotFilter;
use crate::context::Ctx;
use crate::output;
use anyhow::Result;

/// Runs `snapshots`.
pub async fn run(ctx: &Ctx, f: SnapshotFilter) -> Result<u8> {
    let repo = ctx.open().await?;
    let snaps = f.ops().apply(repo.list_snapshots().await?);
    if ctx.global.json {
        output::print_json(&snaps);
        return Ok(output::code::OK);
    }
    if snaps.is_empty() {
        if !ctx.global.quiet {
            println!("no snapshots");
        }
        return Ok(output::code::OK);
    }
    println!(
        "{:<8}  {:<19}  {:<12}  {:<15}  {:>10}  {:<20}  source",
        "id", "time (UTC)", "type", "host", "size", "tags"
    );
    for s in &snaps {
        println!(
            "{:<8}  {:<19}  {:<12}  {:<15}  {:>10}  {:<20}  {}",
            s.id.short(),
            s.time.format("%Y-%m-%d %H:%M:%S"),
            s.backup_type.to_string(),
            s.hostname,
            output::size(s.stats.total_bytes),
            s.tags.join(","),
            s.source.location
        );
    }
    println!("{} snapshot(s)", snaps.len());
    Ok(output::code::OK)
}
