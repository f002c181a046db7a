//! `coffer restore SNAPSHOT --target URL` for database snapshots: plan, safety backup,
//! confirmation, restore, row-count comparison, and a clear account of any failure.

use crate::cli::RestoreArgs;
use crate::commands::db_backup::{backup_database, db_url, default_jobs, DbSnapshotOptions};
use crate::context::Ctx;
use crate::output::{self, code, UsageError};
use anyhow::Result;
use coffer_core::snapshot::{BackupType, Snapshot};
use coffer_core::{Indexed, Repository};
use coffer_sources::database::{
    self, select_tables, DbManifest, Engine, RestoreRequest, StreamSource, TargetState,
};
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// The tables (or whole databases) a request selects, as lines for the plan.
fn plan_lines(manifest: &DbManifest, req: &RestoreRequest) -> Result<Vec<String>> {
    let dbs: Vec<_> = match &req.database {
        Some(name) => vec![manifest
            .databases
            .iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| {
                UsageError(format!(
                    "the snapshot has no database {name:?} (it has: {})",
                    manifest
                        .databases
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?],
        None => manifest.databases.iter().collect(),
    };
    let mut lines = Vec::new();
    for db in dbs {
        let mut line = format!("database {}", db.name);
        if let Some(k) = db.keys {
            line.push_str(&format!(": {k} keys"));
        }
        if let Some(v) = &db.schema_version {
            line.push_str(&format!(" (schema version {v})"));
        }
        lines.push(line);
        for t in select_tables(db, &req.tables)? {
            let what = if req.schema_only {
                "schema only".to_string()
            } else {
                format!("{} rows", t.rows)
            };
            lines.push(format!("  table {}: {what}", t.qualified()));
        }
    }
    Ok(lines)
}

/// Asks on the terminal; off a terminal there is no one to ask, and `--clean` was the consent.
fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Restores a database snapshot; the caller holds the repository's shared lock.
pub async fn run(
    ctx: &Ctx,
    a: &RestoreArgs,
    repo: &Repository<Indexed>,
    snap: &Snapshot,
) -> Result<u8> {
    let manifest = DbManifest::from_snapshot(snap)?;
    let target_text = a.target.to_string_lossy();
    if !database::is_database_url(&target_text) {
        return Err(UsageError(format!(
            "snapshot {} is a {} backup: give the database to restore into as --target URL (for example {}), not a folder",
            snap.id.short(),
            manifest.engine,
            match Engine::from_kind(&manifest.engine) {
                Some(Engine::Postgres) => "postgres://USER@HOST:5432/NEWDB",
                Some(Engine::Mysql) => "mysql://USER@HOST:3306/NEWDB",
                Some(Engine::Sqlite) => "sqlite:///PATH/TO/NEW.db",
                _ => "redis://HOST:6379",
            }
        ))
        .into());
    }
    if !a.includes.is_empty() || !a.excludes.is_empty() || a.overwrite {
        return Err(UsageError(
            "--include, --exclude and --overwrite apply to file restores; for databases use --table and --clean".into(),
        )
        .into());
    }
    let target = db_url(&target_text, a.db_password_file.as_deref())?;
    database::check_engine(&manifest, target.engine).map_err(|e| UsageError(format!("{e:#}")))?;
    let req = RestoreRequest {
        target: Some(target.clone()),
        database: a.database.clone(),
        tables: a.tables.clone(),
        schema_only: a.schema_only,
        data_only: a.data_only,
        clean: a.clean,
        jobs: a.jobs.unwrap_or_else(default_jobs).max(1),
    };
    let plan =
        plan_lines(&manifest, &req).map_err(|e| match e.downcast::<coffer_core::Error>() {
            Ok(core) => anyhow::Error::new(UsageError(core.to_string())),
            Err(other) => other,
        })?;
    let shown = target.redacted();
    let state = database::probe_target(&manifest, &req).await?;
    let needs_clean = !state.empty && (req.tables.is_empty() || !state.conflicts.is_empty());
    let safety = !state.empty && !a.no_safety_backup;

    if a.dry_run {
        return dry_run(
            ctx,
            snap,
            &manifest,
            &shown,
            &state,
            &plan,
            needs_clean,
            safety,
        )
        .await;
    }
    if needs_clean && !a.clean {
        let what = if state.conflicts.is_empty() {
            String::new()
        } else {
            format!(
                " (it already has {})",
                state
                    .conflicts
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(UsageError(format!(
            "the target {} is not empty{what}: add --clean to replace what the snapshot restores (a safety backup of the target is taken first), or restore into a new database",
            state.summary
        ))
        .into());
    }
    if !a.yes
        && !state.empty
        && !confirm(&format!(
            "Restore snapshot {} into {}, replacing its current content ({})?",
            snap.id.short(),
            shown,
            state.summary
        ))?
    {
        eprintln!("coffer: restore cancelled; nothing was changed");
        return Ok(code::FAILURE);
    }

    // The safety backup: the target's current content, in the same repository, first.
    let mut safety_id = None;
    if safety {
        if !ctx.global.quiet && !ctx.global.json {
            eprintln!("coffer: taking a safety backup of {shown} before overwriting it");
        }
        let opts = DbSnapshotOptions {
            requested: Some(BackupType::Full),
            tags: vec!["safety".into()],
            name: None,
            description: Some(format!(
                "safety backup taken before restoring snapshot {} into it",
                snap.id.short()
            )),
            host: coffer_core::repository::hostname(),
            time: None,
            jobs: req.jobs,
            all_databases: false,
        };
        let (s, _, _) = backup_database(ctx, repo, &target, opts).await.map_err(|e| {
            e.context(format!(
                "the safety backup of {shown} failed, so nothing was restored and the target is unchanged (--no-safety-backup skips it)"
            ))
        })?;
        if !ctx.global.quiet && !ctx.global.json {
            eprintln!("coffer: safety backup {} saved", s.id.short());
        }
        safety_id = Some(s.id);
    }

    let clock = Instant::now();
    let src = StreamSource::load(repo, snap).await?;
    let report = match database::restore(&src, &manifest, &req).await {
        Ok(r) => r,
        Err(e) => {
            // The engine marks an error that left the target as it was (a SQLite file is
            // replaced by a rename, a Redis db is flushed only once the load can start): then
            // the safety backup is a spare copy, not the way back.
            let untouched = e.target_untouched();
            let undo = match safety_id {
                Some(id) if untouched => format!(
                    "; the safety backup {} holds its content too",
                    id.short()
                ),
                Some(id) => format!(
                    "; its previous content is in the safety backup {}: coffer restore {} --target {} --clean",
                    id.short(),
                    id.short(),
                    shown
                ),
                None if state.empty => "; it was empty before".to_string(),
                None if untouched => String::new(),
                None => "; no safety backup was taken".to_string(),
            };
            let partly = if untouched {
                ""
            } else {
                " and the target may be partly restored"
            };
            return Err(anyhow::Error::new(e)
                .context(format!("the restore into {shown} failed{partly}{undo}")));
        }
    };
    let secs = clock.elapsed().as_secs_f64();
    let mismatches = report.mismatches();
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "snapshot_id": snap.id,
            "target": shown,
            "restored": report.restored,
            "counts": report.counts,
            "mismatches": mismatches,
            "warnings": report.warnings,
            "safety_snapshot_id": safety_id,
            "duration_seconds": secs,
        }));
    } else if !ctx.global.quiet {
        for w in &report.warnings {
            eprintln!("coffer: note: {w}");
        }
        println!(
            "restored snapshot {} into {}: {} object(s), {} counts compared, in {}",
            snap.id.short(),
            shown,
            report.restored.len(),
            report.counts.len(),
            output::duration(secs)
        );
        if let Some(id) = safety_id {
            println!(
                "  the target's previous content is in safety backup {}",
                id.short()
            );
        }
    }
    if !mismatches.is_empty() {
        for m in &mismatches {
            eprintln!(
                "coffer: error: {} has {} rows after the restore; the snapshot holds {}",
                m.object, m.actual, m.expected
            );
        }
        return Ok(code::FAILURE);
    }
    Ok(code::OK)
}

#[allow(clippy::too_many_arguments)]
async fn dry_run(
    ctx: &Ctx,
    snap: &Snapshot,
    manifest: &DbManifest,
    shown: &str,
    state: &TargetState,
    plan: &[String],
    needs_clean: bool,
    safety: bool,
) -> Result<u8> {
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "dry_run": true,
            "snapshot_id": snap.id,
            "engine": manifest.engine,
            "target": shown,
            "target_state": state,
            "plan": plan,
            "needs_clean": needs_clean,
            "safety_backup": safety,
        }));
        return Ok(code::OK);
    }
    println!(
        "would restore snapshot {} ({} backup of {}, {}) into {}",
        snap.id.short(),
        manifest.engine,
        snap.source.location,
        snap.time.format("%Y-%m-%d %H:%M:%S UTC"),
        shown
    );
    println!("  target now: {}", state.summary);
    for l in plan {
        println!("  {l}");
    }
    if needs_clean {
        println!("  the target is not empty: the restore needs --clean");
    }
    if safety {
        println!("  a safety backup of the target would be taken first");
    }
    println!("dry run: nothing was changed");
    Ok(code::OK)
}
