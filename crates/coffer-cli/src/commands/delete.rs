//! `coffer delete`: delete snapshots. Their data stays until a prune frees it.

use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::Result;
use clap::Args;
use coffer_core::Repository;

/// `delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Snapshots (ids or unique prefixes).
    #[arg(required = true)]
    pub snapshots: Vec<String>,
}

/// Runs `delete`.
pub async fn run(ctx: &Ctx, a: DeleteArgs) -> Result<u8> {
    let repo = ctx.open().await?;
    let lock = repo.lock(true, "delete").await?;
    let all = repo.list_snapshots().await?;
    // Resolve every argument before deleting anything: a typo deletes nothing.
    let mut ids = Vec::new();
    for spec in &a.snapshots {
        match Repository::<coffer_core::Open>::resolve_snapshot(spec, &all) {
            Ok(s) => ids.push(s.id),
            Err(e) => {
                lock.release().await.ok();
                return Err(e.into());
            }
        }
    }
    for id in &ids {
        repo.delete_snapshot(id).await?;
    }
    lock.release().await.ok();
    if ctx.global.json {
        output::print_json(&serde_json::json!({ "deleted": ids }));
    } else if !ctx.global.quiet {
        for id in &ids {
            println!("deleted snapshot {}", id.short());
        }
    }
    Ok(code::OK)
}
