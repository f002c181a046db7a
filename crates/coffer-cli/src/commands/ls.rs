//! `coffer ls`: list the entries of a snapshot.

use crate::cli::SnapshotFilter;
use crate::context::Ctx;
use crate::output;
use anyhow::Result;
use clap::Args;
use coffer_core::tree::{Node, NodeKind};
use coffer_core::walk::walk_tree;
use coffer_ops::select::find_snapshot;

/// `ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// Only list below this path.
    pub path: Option<String>,
    /// Filters for `latest`.
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

fn kind_char(k: NodeKind) -> char {
    match k {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
    }
}

/// `rwxr-x---` from mode bits.
pub fn mode_string(mode: u32) -> String {
    let mut s = String::new();
    for shift in [6, 3, 0] {
        let b = (mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// Runs `ls`.
pub async fn run(ctx: &Ctx, a: LsArgs) -> Result<u8> {
    let repo = ctx.open_indexed().await?;
    let snap = find_snapshot(&repo, &a.snapshot, &a.filter.ops()).await?;
    let under = a
        .path
        .as_deref()
        .map(|p| coffer_ops::select::path_in_snapshot(p, &snap.source.paths))
        .filter(|p| !p.is_empty());
    let mut rows: Vec<(Vec<u8>, Node)> = Vec::new();
    let mut visit = |p: &[u8], n: &Node| {
        let keep = match &under {
            None => true,
            Some(u) => p == u.as_slice() || (p.starts_with(u) && p.get(u.len()) == Some(&b'/')),
        };
        if keep {
            let mut n = n.clone();
            n.content = Vec::new();
            rows.push((p.to_vec(), n));
        }
        Ok(())
    };
    walk_tree(&repo.blob_reader(), snap.tree, &mut visit).await?;
    if let (Some(u), true) = (&under, rows.is_empty()) {
        return Err(coffer_core::Error::not_found(format!(
            "{} is not in snapshot {}",
            String::from_utf8_lossy(u),
            snap.id.short()
        ))
        .into());
    }
    if ctx.global.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, n)| {
                serde_json::json!({
                    "path": format!("/{}", String::from_utf8_lossy(p)),
                    "path_bytes_hex": if std::str::from_utf8(p).is_err() { Some(hex::encode(p)) } else { None },
                    "kind": n.kind, "mode": n.mode, "size": n.size, "uid": n.uid, "gid": n.gid,
                    "mtime_ns": n.mtime_ns, "sha256": n.sha256, "link_target": n.link_target.as_ref().map(|t| t.lossy()),
                })
            })
            .collect();
        output::print_json(&v);
        return Ok(output::code::OK);
    }
    for (p, n) in rows {
        let t = chrono::DateTime::from_timestamp(n.mtime_ns.div_euclid(1_000_000_000), 0)
            .unwrap_or_default();
        let path = String::from_utf8_lossy(&p).escape_debug().to_string();
        let link = n
            .link_target
            .map(|t| format!(" -> {}", t.lossy()))
            .unwrap_or_default();
        println!(
            "{}{} {:>8} {:>8} {:>12} {} /{}{}",
            kind_char(n.kind),
            mode_string(n.mode),
            n.user.unwrap_or(n.uid.to_string()),
            n.group.unwrap_or(n.gid.to_string()),
            n.size,
            t.format("%Y-%m-%d %H:%M:%S"),
            path,
            link
        );
    }
    Ok(output::code::OK)
}
