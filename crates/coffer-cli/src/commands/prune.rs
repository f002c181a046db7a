//! `coffer prune` (and `forget --prune`): delete the data no snapshot references and repack packs
//! that are mostly unused, in two phases with a grace period (see `coffer_core::prune`).
//!
//! Tests stop a run abruptly with the hidden `COFFER_TEST_PRUNE_KILL_AT=<stage>` variable: the
//! process sends itself SIGKILL when it reaches that stage (`packs-written`, `index-written`,
//! `index-cleaned`, `pack-deleted`).

use crate::context::Ctx;
use crate::output::{self, code, UsageError};
use anyhow::Result;
use clap::Args;
use coffer_core::prune::{MaxUnused, PruneOptions, PruneReport, PruneStage, DEFAULT_GRACE};
use coffer_core::retention::ByteSize;
use std::sync::Arc;

/// The hidden variable that makes prune kill itself at a stage (crash tests).
const KILL_AT_VAR: &str = "COFFER_TEST_PRUNE_KILL_AT";

/// How prune decides what to repack (shared by `prune` and `forget --prune`).
#[derive(Args, Debug, Clone, Default)]
pub struct PruneTuning {
    /// Unused space tolerated before packs are repacked: a share of the stored blobs (10%), a
    /// size (500MiB), or `unlimited` (only fully unused packs are deleted) [default: 10%].
    #[arg(long, value_name = "LIMIT")]
    pub max_unused: Option<String>,
    /// Copy at most this much used data when repacking (500MiB, 2G) [default: no limit].
    #[arg(long, value_name = "SIZE")]
    pub max_repack_size: Option<String>,
    /// Packs taken out of the index are deleted by a prune run at least this long after they
    /// were marked (so that a backup whose lock went stale cannot lose data); 0s deletes them in
    /// the same run [default: 1h].
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<String>,
}

impl PruneTuning {
    /// The core options these flags describe; bad values are usage errors.
    pub fn options(&self, dry_run: bool) -> Result<PruneOptions> {
        let max_unused = match &self.max_unused {
            Some(s) => s
                .parse::<MaxUnused>()
                .map_err(|e| UsageError(format!("--max-unused: {e:#}")))?,
            None => MaxUnused::default(),
        };
        let max_repack_bytes = self
            .max_repack_size
            .as_deref()
            .map(|s| s.parse::<ByteSize>().map(|b| b.0))
            .transpose()
            .map_err(|e| UsageError(format!("--max-repack-size: {e:#}")))?;
        let grace = match self.grace.as_deref() {
            None => DEFAULT_GRACE,
            Some(s) => coffer_core::duration::parse(s)
                .map_err(|e| UsageError(format!("--grace: {e:#}")))?,
        };
        let hook = std::env::var(KILL_AT_VAR).ok().map(|at| {
            Arc::new(move |stage: PruneStage| {
                if stage.name() == at {
                    // SAFETY: kill(2) on our own pid; the point is to stop without any cleanup.
                    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                }
            }) as coffer_core::prune::PruneHook
        });
        Ok(PruneOptions {
            max_unused,
            max_repack_bytes,
            grace,
            dry_run,
            ignore_snapshots: Vec::new(),
            hook,
        })
    }
}

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
pub async fn run(ctx: &Ctx, a: PruneArgs) -> Result<u8> {
    let opts = a.tuning.options(a.dry_run)?;
    let display = crate::commands::progress::display(ctx);
    let sigint = crate::commands::progress::cancel_on_sigint(
        "interrupted: a prune that has started writing runs to its end",
    );
    let report = coffer_ops::prune::prune(&ctx.spec()?, &opts, &*display, &sigint.token).await;
    display.finish();
    let report = report?;
    if ctx.global.json {
        output::print_json(&json(&report, &opts));
    } else if !ctx.global.quiet {
        print_text(&report, &opts);
    }
    Ok(code::OK)
}

/// The report as JSON, with the settings it ran with.
pub fn json(r: &PruneReport, opts: &PruneOptions) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("the report serializes");
    v["grace_seconds"] = opts.grace.as_secs().into();
    v["max_unused"] = opts.max_unused.to_string().into();
    v
}

fn packs(n: usize) -> String {
    format!("{n} pack{}", if n == 1 { "" } else { "s" })
}

/// Prints the report for people.
pub fn print_text(r: &PruneReport, opts: &PruneOptions) {
    let would = |done: &str, would: &str| -> String {
        if r.dry_run {
            would.to_string()
        } else {
            done.to_string()
        }
    };
    println!(
        "{} snapshot{} use{} {} blobs ({}); the index holds {} of unused blobs",
        r.snapshots,
        if r.snapshots == 1 { "" } else { "s" },
        if r.snapshots == 1 { "s" } else { "" },
        r.blobs_used,
        output::size(r.used_bytes),
        output::size(r.unused_bytes)
    );
    if r.reindexed_packs.packs > 0 {
        println!(
            "{} {} back into the index: a snapshot written since they were marked uses their data",
            would("put", "would put"),
            packs(r.reindexed_packs.packs)
        );
    }
    if r.unused_packs.packs > 0 {
        println!(
            "unused: {} ({}) {} out of the index",
            packs(r.unused_packs.packs),
            output::size(r.unused_packs.bytes),
            would("taken", "would be taken")
        );
    }
    if r.repacked_packs.packs > 0 {
        println!(
            "repack: {} ({}) {}: {} blobs ({}) copied{}",
            packs(r.repacked_packs.packs),
            output::size(r.repacked_packs.bytes),
            would("repacked", "would be repacked"),
            r.repacked_blobs,
            output::size(r.repacked_bytes),
            if r.dry_run {
                String::new()
            } else {
                format!(
                    " into {} ({})",
                    packs(r.new_packs.packs),
                    output::size(r.new_packs.bytes)
                )
            }
        );
    }
    if r.unindexed_packs.packs > 0 {
        println!(
            "{} ({}) in no index (left by an interrupted backup) {} marked",
            packs(r.unindexed_packs.packs),
            output::size(r.unindexed_packs.bytes),
            would("were", "would be")
        );
    }
    println!(
        "{}: {}, {} freed",
        would("deleted", "would delete"),
        packs(r.deleted.packs),
        output::size(r.deleted.bytes)
    );
    if r.pending.packs > 0 {
        let when = r
            .next_deletion
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        println!(
            "pending deletion: {} ({}); a prune run after {when} deletes them (grace {})",
            packs(r.pending.packs),
            output::size(r.pending.bytes),
            coffer_core::duration::format(opts.grace)
        );
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
    println!(
        "repository: {} ({}) before, {} ({}) {}; {} unused left in the index (limit {})",
        packs(r.before.packs),
        output::size(r.before.bytes),
        packs(r.after.packs),
        output::size(r.after.bytes),
        would("now", "after"),
        output::size(r.unused_bytes_after),
        opts.max_unused
    );
    if r.dry_run {
        println!("dry run: nothing was changed");
    }
}
