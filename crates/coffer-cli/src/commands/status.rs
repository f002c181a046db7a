//! `coffer status`: the last run of each job, and overdue jobs (placeholder until the scheduler
//! lands).

use crate::context::Ctx;
use anyhow::Result;
use clap::Args;

/// `status`.
#[derive(Args, Debug)]
pub struct StatusArgs {}

/// Runs `status`.
pub async fn run(_ctx: &Ctx, _a: StatusArgs) -> Result<u8> {
    anyhow::bail!("the scheduler is not available in this build yet")
}
