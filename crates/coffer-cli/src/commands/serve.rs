//! `coffer serve`: the scheduler daemon (placeholder until it lands).

use crate::context::Ctx;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The daemon's config (default: coffer.toml, or COFFER_CONFIG).
    #[arg(long, env = "COFFER_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Runs `serve`.
pub async fn run(_ctx: &Ctx, _a: ServeArgs) -> Result<u8> {
    anyhow::bail!("the daemon is not available in this build yet")
}
