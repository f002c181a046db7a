//! `coffer serve`: the scheduler daemon. It loads the config (refusing to start when it has
//! any problem), opens the catalog, and runs `coffer_server::scheduler` with the wall clock
//! until SIGTERM or SIGINT, then shuts down gracefully.
//!
//! Jobs run in-process through `coffer_server::runner::OpsRunner`, which calls the same typed
//! operations (`coffer_ops`) as the commands a person would type; its docs say why they no
//! longer run as child processes.

use crate::commands::schedule::{load_config, open_catalog, print_event};
use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::{Context as _, Result};
use clap::Args;
use coffer_ops::password::PasswordSource;
use coffer_ops::Event;
use coffer_server::clock::SystemClock;
use coffer_server::runner::OpsRunner;
use coffer_server::scheduler::{default_owner, Scheduler};
use std::path::PathBuf;
use std::sync::Arc;

/// `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The daemon's config (default: coffer.toml, or COFFER_CONFIG).
    #[arg(long, env = "COFFER_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Runs `serve`.
pub async fn run(ctx: &Ctx, a: ServeArgs) -> Result<u8> {
    let config = Arc::new(load_config(a.config.as_deref())?);
    let (catalog, location) = open_catalog(&config).await?;
    let runner = Arc::new(ops_runner(ctx)?);
    let quiet = ctx.global.quiet;
    if !quiet {
        eprintln!(
            "coffer: daemon started (pid {}): {} job(s) from {}, catalog {}",
            std::process::id(),
            config.jobs.len(),
            config.path.display(),
            location
        );
    }
    let scheduler = Scheduler::new(
        Arc::clone(&config),
        catalog,
        runner,
        Arc::new(SystemClock),
        default_owner(),
    )
    .with_observer(Arc::new(move |e| {
        if !quiet {
            print_event(e)
        }
    }));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let summary = scheduler.run_until(shutdown).await?;
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "started": summary.started, "succeeded": summary.succeeded,
            "failed": summary.failed, "interrupted": summary.interrupted,
        }));
    } else if !quiet {
        eprintln!(
            "coffer: daemon stopped: {} run(s), {} succeeded, {} failed, {} interrupted",
            summary.started, summary.succeeded, summary.failed, summary.interrupted
        );
    }
    Ok(code::OK)
}

/// The runner of the daemon's jobs: in-process operations (see
/// `coffer_server::runner::OpsRunner`), with this command's transfer settings (connections,
/// limits, cache, Object Lock) and, for repositories the config gives no password file or
/// command, this command's password options (`--password-file`, `COFFER_PASSWORD`...).
pub fn ops_runner(ctx: &Ctx) -> Result<OpsRunner> {
    let fallback = match ctx.password_source()? {
        PasswordSource::Missing(_) => PasswordSource::Missing(
            "no password for this repository: give its [repository] table a password_file or \
             password_command, or start the daemon with COFFER_PASSWORD_FILE"
                .into(),
        ),
        other => other,
    };
    let quiet = ctx.global.quiet;
    let warnings = move |e: Event| {
        if let (Event::Warning { message }, false) = (e, quiet) {
            eprintln!("coffer: warning: {message}");
        }
    };
    Ok(OpsRunner::new(ctx.storage_options()?, fallback).with_progress(Arc::new(warnings)))
}
