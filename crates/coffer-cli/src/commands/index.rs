//! `coffer index compact`: merge the index files that backups accumulate into one.

use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::Result;
use clap::Subcommand;

/// `index` subcommands.
#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Merge all index files into one (each backup writes its own).
    Compact,
}

/// Runs `index ...`.
pub async fn run(ctx: &Ctx, c: IndexCommand) -> Result<u8> {
    match c {
        IndexCommand::Compact => {
            let locked = ctx
                .open_locked(coffer_ops::repo::LockMode::Exclusive, "index compact")
                .await?;
            let (before, after) = locked.run(async |repo| repo.compact_index().await).await?;
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
