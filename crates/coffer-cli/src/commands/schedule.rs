//! `coffer schedule ...`: the daemon's jobs (placeholder until the scheduler lands).

use crate::context::Ctx;
use anyhow::Result;
use clap::Subcommand;

/// `schedule` subcommands.
#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// List the jobs with their next run times.
    List,
}

/// Runs `schedule`.
pub async fn run(_ctx: &Ctx, _c: ScheduleCommand) -> Result<u8> {
    anyhow::bail!("the scheduler is not available in this build yet")
}
