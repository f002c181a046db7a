//! `coffer stats`: snapshot count, logical and stored sizes, dedup and compression ratios.

use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::Result;
use coffer_core::FileType;
use std::collections::BTreeMap;

/// Runs `stats`.
pub async fn run(ctx: &Ctx) -> Result<u8> {
    let repo = ctx.open_indexed().await?;
    let snaps = repo.list_snapshots().await?;
    let stored: u64 = repo
        .backend()
        .list(FileType::Pack)
        .await?
        .iter()
        .map(|(_, s)| s)
        .sum();
    // Content (data blobs) and metadata (tree blobs) apart: logical sizes count content only.
    let (mut unique, mut sealed, mut meta) = (0u64, 0u64, 0u64);
    for loc in repo.index().iter() {
        if loc.entry.blob_type == coffer_core::pack::BlobType::Data {
            unique += loc.entry.ulen as u64;
            sealed += loc.entry.length as u64;
        } else {
            meta += loc.entry.length as u64;
        }
    }
    let logical: u64 = snaps.iter().map(|s| s.stats.total_bytes).sum();
    let mut per: BTreeMap<String, (u64, u64, String)> = BTreeMap::new();
    for s in &snaps {
        let e = per
            .entry(format!(
                "{} {}:{}",
                s.source.kind, s.hostname, s.source.location
            ))
            .or_insert((0, 0, String::new()));
        e.0 += 1;
        e.1 = s.stats.total_bytes;
        e.2 = s.time.format("%Y-%m-%d %H:%M:%S").to_string();
    }
    let dedup = if unique > 0 {
        logical as f64 / unique as f64
    } else {
        0.0
    };
    let compression = if sealed > 0 {
        unique as f64 / sealed as f64
    } else {
        0.0
    };
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "snapshots": snaps.len(), "logical_bytes": logical, "unique_bytes": unique, "stored_bytes": stored,
            "metadata_bytes": meta, "dedup_ratio": dedup, "compression_ratio": compression, "blobs": repo.index().len(), "packs": repo.index().pack_count(),
            "sources": per.iter().map(|(k, v)| serde_json::json!({"source": k, "snapshots": v.0, "latest_bytes": v.1, "latest": v.2})).collect::<Vec<_>>(),
        }));
        return Ok(code::OK);
    }
    println!("snapshots          {}", snaps.len());
    println!(
        "logical size       {} (all snapshots added up)",
        output::size(logical)
    );
    println!(
        "unique data        {} in {} blobs",
        output::size(unique),
        repo.index().len()
    );
    println!(
        "stored size        {} in {} packs",
        output::size(stored),
        repo.index().pack_count()
    );
    println!("dedup ratio        {dedup:.2}x");
    println!("compression ratio  {compression:.2}x");
    for (k, v) in per {
        println!(
            "  {k}: {} snapshot(s), latest {} ({})",
            v.0,
            v.2,
            output::size(v.1)
        );
    }
    Ok(code::OK)
}
