//! `coffer show`: print one snapshot's manifest.

use crate::cli::SnapArg;
use crate::context::Ctx;
use crate::output;
use anyhow::Result;
use coffer_ops::select::find_snapshot;

/// Runs `show`.
pub async fn run(ctx: &Ctx, a: SnapArg) -> Result<u8> {
    let repo = ctx.open().await?;
    let s = find_snapshot(&repo, &a.snapshot, &a.filter.ops()).await?;
    if ctx.global.json {
        output::print_json(&s);
        return Ok(output::code::OK);
    }
    println!("snapshot     {}", s.id);
    if let Some(n) = &s.name {
        println!("name         {n}");
    }
    println!("time         {}", s.time.format("%Y-%m-%d %H:%M:%S UTC"));
    println!(
        "type         {}{}",
        s.backup_type,
        s.parent
            .map(|p| format!(" (parent {})", p.short()))
            .unwrap_or_default()
    );
    println!("source       {} {}", s.source.kind, s.source.location);
    println!("host         {} (user {})", s.hostname, s.username);
    if !s.tags.is_empty() {
        println!("tags         {}", s.tags.join(", "));
    }
    if let Some(d) = &s.description {
        println!("description  {d}");
    }
    println!(
        "files        {} ({} read, {} unchanged), {} dirs, {} others",
        s.stats.files, s.stats.files_read, s.stats.files_unchanged, s.stats.dirs, s.stats.others
    );
    println!(
        "size         {} ({} read, {} added)",
        output::size(s.stats.total_bytes),
        output::size(s.stats.bytes_read),
        output::size(s.stats.bytes_added)
    );
    println!(
        "took         {} (started {})",
        output::duration((s.finished - s.started).num_milliseconds() as f64 / 1000.0),
        s.started.format("%Y-%m-%d %H:%M:%S UTC")
    );
    println!("storage      {}, {}", s.compression, s.encryption);
    println!("tool         coffer {}", s.tool_version);
    println!("tree         {}", s.tree);
    Ok(output::code::OK)
}
