//! `coffer index compact`: merge the index files that backups accumulate into one.

use crate::cli::IndexCommand;
use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::Result;

/// Runs `index ...`.
pub async fn run(ctx: &Ctx, c: IndexCommand) -> Result<u8> {
    match c {
        IndexCommand::Compact => {
            let (repo, lock) = ctx.open_locked(true, "index compact").await?;
            let r = repo.compact_index().await;
            lock.release().await.ok();
            let (before, after) = r?;
            if ctx.global.json {
                output::print_json(
                    &serde_json::json!({ "index_files_before": before, "index_files_after": after }),
                );
            } else if !ctx.global.quiet {
                println!("index files: {before} before, {after} now");
            }
            Ok(code::OK)
        }
    }
}
