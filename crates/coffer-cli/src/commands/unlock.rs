//! `coffer unlock`: remove stale locks.

use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::Result;
use clap::Args;

/// `unlock`.
#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Remove every lock, not only stale ones.
    #[arg(long)]
    pub remove_all: bool,
}

/// Runs `unlock`.
pub async fn run(ctx: &Ctx, a: UnlockArgs) -> Result<u8> {
    let repo = ctx.open().await?;
    let n = repo.unlock(a.remove_all).await?;
    if ctx.global.json {
        output::print_json(&serde_json::json!({ "removed": n }));
    } else if !ctx.global.quiet {
        println!("removed {n} lock(s)");
    }
    Ok(code::OK)
}
