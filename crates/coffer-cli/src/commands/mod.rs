//! One module per subcommand; `run` dispatches.

pub mod backup;
pub mod check;
pub mod config;
pub mod copy;
pub mod delete;
pub mod diff;
pub mod dump;
pub mod extend_lock;
pub mod forget;
pub mod index;
pub mod init;
pub mod key;
pub mod ls;
pub mod progress;
pub mod prune;
pub mod restore;
pub mod schedule;
pub mod serve;
pub mod show;
pub mod snapshots;
pub mod stats;
pub mod status;
pub mod unlock;
pub mod verify;

use crate::cli::{Cli, Command};
use crate::context::Ctx;
use anyhow::Result;

/// Whether `command` only reads the repository (`--no-lock` is allowed). A restore of a
/// database snapshot may write its safety backup; that write fails on its own if refused.
fn reads_only(command: &Command) -> bool {
    matches!(
        command,
        Command::Snapshots(_)
            | Command::Show(_)
            | Command::Ls(_)
            | Command::Restore(_)
            | Command::Verify(_)
            | Command::Check(_)
            | Command::Stats
            | Command::Diff(_)
            | Command::Copy(_)
            | Command::Dump(_)
    )
}

/// Runs the parsed command; returns the exit code.
pub async fn run(cli: Cli) -> Result<u8> {
    if cli.global.no_lock && !reads_only(&cli.command) {
        return Err(crate::output::UsageError(
            "--no-lock applies only to commands that only read the repository (restore, verify, \
             check, dump, copy's source, and the listings); this command writes to it and must \
             lock it"
                .into(),
        )
        .into());
    }
    let ctx = Ctx::new(cli.global)?;
    match cli.command {
        Command::Init(a) => init::run(&ctx, a).await,
        Command::Backup(a) => backup::run(&ctx, a).await,
        Command::Snapshots(f) => snapshots::run(&ctx, f).await,
        Command::Show(a) => show::run(&ctx, a).await,
        Command::Ls(a) => ls::run(&ctx, a).await,
        Command::Restore(a) => restore::run(&ctx, a).await,
        Command::Verify(a) => verify::run(&ctx, a).await,
        Command::Check(a) => check::run(&ctx, a).await,
        Command::Delete(a) => delete::run(&ctx, a).await,
        Command::Stats => stats::run(&ctx).await,
        Command::Diff(a) => diff::run(&ctx, a).await,
        Command::Copy(a) => copy::run(&ctx, a).await,
        Command::Key(k) => key::run(&ctx, k).await,
        Command::Unlock(a) => unlock::run(&ctx, a).await,
        Command::Index(c) => index::run(&ctx, c).await,
        Command::Forget(a) => forget::run(&ctx, a).await,
        Command::Dump(a) => dump::run(&ctx, a).await,
        Command::Prune(a) => prune::run(&ctx, a).await,
        Command::Serve(a) => serve::run(&ctx, a).await,
        Command::Schedule(c) => schedule::run(&ctx, c).await,
        Command::Status(a) => status::run(&ctx, a).await,
        Command::Config(c) => config::run(&ctx, c).await,
        Command::ExtendLock(a) => extend_lock::run(&ctx, a).await,
    }
}
