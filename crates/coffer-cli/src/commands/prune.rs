//! `coffer prune` (and `forget --prune`): placeholder until prune lands.

use crate::context::Ctx;
use anyhow::Result;
use clap::Args;

/// How prune decides what to repack (shared by `prune` and `forget --prune`).
#[derive(Args, Debug, Clone, Default)]
pub struct PruneTuning {}

/// `prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Tuning.
    #[command(flatten)]
    pub tuning: PruneTuning,
    /// Print what would be deleted and repacked; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

/// Runs `prune`.
pub async fn run(_ctx: &Ctx, _a: PruneArgs) -> Result<u8> {
    anyhow::bail!("prune is not available in this build yet")
}
