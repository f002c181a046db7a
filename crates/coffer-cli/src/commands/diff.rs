//! `coffer diff`: paths added, removed and modified between two snapshots.

use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::Result;
use clap::Args;
use coffer_core::tree::Node;
use coffer_core::walk::walk_tree;
use coffer_ops::select::find_snapshot;
use coffer_ops::SnapshotFilter;
use std::collections::BTreeMap;

/// `diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The older snapshot.
    pub first: String,
    /// The newer snapshot.
    pub second: String,
}

type Summary = (String, u64, Option<String>, u32, i64, Option<Vec<u8>>);

async fn summarize(
    repo: &coffer_core::Repository<coffer_core::Indexed>,
    tree: coffer_core::Id,
) -> Result<BTreeMap<Vec<u8>, Summary>> {
    let mut m = BTreeMap::new();
    let mut visit = |p: &[u8], n: &Node| {
        m.insert(
            p.to_vec(),
            (
                format!("{:?}", n.kind),
                n.size,
                n.sha256.clone(),
                n.mode,
                n.mtime_ns,
                n.link_target.as_ref().map(|t| t.0.clone()),
            ),
        );
        Ok(())
    };
    walk_tree(&repo.blob_reader(), tree, &mut visit).await?;
    Ok(m)
}

/// Runs `diff`.
pub async fn run(ctx: &Ctx, a: DiffArgs) -> Result<u8> {
    let repo = ctx.open_indexed().await?;
    let f = SnapshotFilter::default();
    let (s1, s2) = (
        find_snapshot(&repo, &a.first, &f).await?,
        find_snapshot(&repo, &a.second, &f).await?,
    );
    let (m1, m2) = (
        summarize(&repo, s1.tree).await?,
        summarize(&repo, s2.tree).await?,
    );
    let mut changes: Vec<(char, String)> = Vec::new();
    for (p, v) in &m1 {
        match m2.get(p) {
            None => changes.push(('-', String::from_utf8_lossy(p).into_owned())),
            Some(w) if w != v => changes.push(('M', String::from_utf8_lossy(p).into_owned())),
            _ => {}
        }
    }
    for p in m2.keys().filter(|p| !m1.contains_key(*p)) {
        changes.push(('+', String::from_utf8_lossy(p).into_owned()));
    }
    changes.sort_by(|a, b| a.1.cmp(&b.1));
    if ctx.global.json {
        let v: Vec<_> = changes.iter().map(|(c, p)| serde_json::json!({"change": match c { '+' => "added", '-' => "removed", _ => "modified" }, "path": format!("/{p}")})).collect();
        output::print_json(&serde_json::json!({"first": s1.id, "second": s2.id, "changes": v}));
    } else {
        for (c, p) in &changes {
            println!("{c} /{p}");
        }
        if !ctx.global.quiet {
            let count = |k: char| changes.iter().filter(|(c, _)| *c == k).count();
            println!(
                "{} added, {} removed, {} modified",
                count('+'),
                count('-'),
                count('M')
            );
        }
    }
    Ok(code::OK)
}
