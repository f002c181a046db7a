//! `coffer restore`: restore a snapshot of files into a folder, or a database snapshot into a
//! database. The work is `coffer_ops::restore`; this file parses, asks for confirmation on a
//! terminal, prints and chooses the exit code.

use crate::cli::SnapshotFilter;
use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::Result;
use clap::Args;
use coffer_ops::restore::{
    restore, DatabaseRestore, DbRestoreOutcome, DbRestorePlan, DbRestoreReport, FilesRestore,
    FilesRestoreReport, Restore, RestoreReport,
};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// `restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// Folder to restore into, or for a database snapshot the database URL.
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// Database: restore only this table, NAME or SCHEMA.NAME (repeatable).
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,
    /// Database: which database of a whole-server snapshot.
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// Database: restore only the schema.
    #[arg(long, conflicts_with = "data_only")]
    pub schema_only: bool,
    /// Database: restore only the data (the schema must exist).
    #[arg(long)]
    pub data_only: bool,
    /// Database: drop the objects the restore replaces first (needed when the target is not
    /// empty).
    #[arg(long)]
    pub clean: bool,
    /// Database: tables restored at once (default: the number of cores, at most 4).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Database: do not back up a non-empty target before overwriting it.
    #[arg(long)]
    pub no_safety_backup: bool,
    /// Database: do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Database: check the snapshot and print what would be restored; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Database: read the target's password from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub db_password_file: Option<PathBuf>,
    /// Restore only this path (repeatable).
    #[arg(long = "include")]
    pub includes: Vec<String>,
    /// Skip paths matching this glob (repeatable).
    #[arg(long = "exclude")]
    pub excludes: Vec<String>,
    /// Allow a target that is not empty; existing files are replaced.
    #[arg(long)]
    pub overwrite: bool,
    /// Filters for `latest`.
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

/// What SIGINT means during a restore.
const INTERRUPTED: &str = "interrupted: stopping the restore at the next safe point";

/// Asks on the terminal; off a terminal there is no one to ask, and `--clean` was the consent.
fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return true;
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

/// Runs `restore`.
pub async fn run(ctx: &Ctx, a: RestoreArgs) -> Result<u8> {
    let req = Restore {
        snapshot: a.snapshot.clone(),
        filter: a.filter.ops(),
        target: a.target.to_string_lossy().into_owned(),
        files: FilesRestore {
            includes: a.includes.clone(),
            excludes: a.excludes.clone(),
            overwrite: a.overwrite,
        },
        database: DatabaseRestore {
            password_file: a.db_password_file.clone(),
            database: a.database.clone(),
            tables: a.tables.clone(),
            schema_only: a.schema_only,
            data_only: a.data_only,
            clean: a.clean,
            jobs: a.jobs,
            no_safety_backup: a.no_safety_backup,
            dry_run: a.dry_run,
        },
        no_lock: ctx.global.no_lock,
    };
    let yes = a.yes;
    let ask = move |p: &DbRestorePlan| {
        yes || confirm(&format!(
            "Restore snapshot {} into {}, replacing its current content ({})?",
            p.snapshot_id.short(),
            p.target,
            p.target_state.summary
        ))
    };
    let display = crate::commands::progress::display(ctx);
    let sigint = crate::commands::progress::cancel_on_sigint(INTERRUPTED);
    let report = restore(&ctx.spec()?, req, display.clone(), &sigint.token, &ask).await;
    display.finish();
    match report? {
        RestoreReport::Files(r) => Ok(print_files(ctx, &a, &r)),
        RestoreReport::Database(DbRestoreOutcome::DryRun(plan)) => Ok(print_dry_run(ctx, &plan)),
        RestoreReport::Database(DbRestoreOutcome::Declined(_)) => {
            eprintln!("coffer: restore cancelled; nothing was changed");
            Ok(code::FAILURE)
        }
        RestoreReport::Database(DbRestoreOutcome::Restored(r)) => Ok(print_database(ctx, &r)),
    }
}

/// Prints a file restore's report; exit code 1 when an entry could not be restored.
fn print_files(ctx: &Ctx, a: &RestoreArgs, r: &FilesRestoreReport) -> u8 {
    for f in &r.failed {
        eprintln!("coffer: could not restore {}: {}", f.path, f.error);
    }
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "snapshot_id": r.snapshot_id, "target": a.target, "files": r.files, "dirs": r.dirs,
            "others": r.others, "bytes": r.bytes, "duration_seconds": r.seconds,
            "failed": r.failed, "warnings": r.warnings,
        }));
    } else if !ctx.global.quiet {
        for w in &r.warnings {
            eprintln!("coffer: note: {w}");
        }
        println!(
            "restored snapshot {} to {}: {} files, {} dirs, {} others, {} in {}",
            r.snapshot_id.short(),
            a.target.display(),
            r.files,
            r.dirs,
            r.others,
            output::size(r.bytes),
            output::duration(r.seconds)
        );
        if !r.failed.is_empty() {
            println!(
                "{} entries could NOT be restored (listed above); everything else was restored \
                 and checked",
                r.failed.len()
            );
        }
    }
    if r.failed.is_empty() {
        code::OK
    } else {
        code::FAILURE
    }
}

/// Prints a database restore's report; exit code 1 when a count differs.
fn print_database(ctx: &Ctx, r: &DbRestoreReport) -> u8 {
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "snapshot_id": r.snapshot_id,
            "target": r.target,
            "restored": r.restored,
            "counts": r.counts,
            "mismatches": r.mismatches,
            "warnings": r.warnings,
            "safety_snapshot_id": r.safety_snapshot_id,
            "duration_seconds": r.seconds,
        }));
    } else if !ctx.global.quiet {
        for w in &r.warnings {
            eprintln!("coffer: note: {w}");
        }
        println!(
            "restored snapshot {} into {}: {} object(s), {} counts compared, in {}",
            r.snapshot_id.short(),
            r.target,
            r.restored.len(),
            r.counts.len(),
            output::duration(r.seconds)
        );
        if let Some(id) = r.safety_snapshot_id {
            println!(
                "  the target's previous content is in safety backup {}",
                id.short()
            );
        }
    }
    if r.mismatches.is_empty() {
        return code::OK;
    }
    for m in &r.mismatches {
        eprintln!(
            "coffer: error: {} has {} rows after the restore; the snapshot holds {}",
            m.object, m.actual, m.expected
        );
    }
    code::FAILURE
}

/// Prints what a dry run found.
fn print_dry_run(ctx: &Ctx, p: &DbRestorePlan) -> u8 {
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "dry_run": true,
            "snapshot_id": p.snapshot_id,
            "engine": p.engine,
            "target": p.target,
            "target_state": p.target_state,
            "plan": p.plan,
            "needs_clean": p.needs_clean,
            "clean": p.clean,
            "safety_backup": p.safety_backup,
        }));
        return code::OK;
    }
    println!(
        "would restore snapshot {} ({} backup of {}, {}) into {}",
        p.snapshot_id.short(),
        p.engine,
        p.source,
        p.time.format("%Y-%m-%d %H:%M:%S UTC"),
        p.target
    );
    println!("  target now: {}", p.target_state.summary);
    for l in &p.plan {
        println!("  {l}");
    }
    match (p.needs_clean, p.clean) {
        (true, false) => println!(
            "  the target is not empty: the restore needs --clean (without it, it is refused)"
        ),
        (true, true) => {
            println!("  the target is not empty: --clean replaces what the snapshot restores")
        }
        _ => {}
    }
    if p.safety_backup {
        println!("  a safety backup of the target would be taken first");
    }
    println!("dry run: nothing was changed");
    code::OK
}
