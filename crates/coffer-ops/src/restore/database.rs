//! Restoring a database snapshot into a database: the plan, a look at the target, a safety
//! backup of a non-empty target, the confirmation, the restore, the comparison of row counts,
//! and a clear account of any failure (whether the target was left as it was, where its
//! previous content is).

use super::Confirm;
use crate::backup::database::{database_url, default_jobs, store_database, DatabaseBackup};
use crate::backup::BackupRequest;
use crate::progress::{Phase, Progress};
use crate::CancellationToken;
use chrono::{DateTime, Utc};
use coffer_core::snapshot::{BackupType, Snapshot};
use coffer_core::{Error, Id, Indexed, Repository, Result};
use coffer_sources::database::{
    self, select_tables, CountCheck, DbManifest, Engine, RestoreRequest, StreamSource, TargetState,
};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Options of a database restore.
#[derive(Debug, Clone, Default)]
pub struct DatabaseRestore {
    /// Read the target's password from the first line of this file.
    pub password_file: Option<PathBuf>,
    /// Which database of a whole-server snapshot.
    pub database: Option<String>,
    /// Only these tables (`name` or `schema.name`).
    pub tables: Vec<String>,
    /// Only the schema.
    pub schema_only: bool,
    /// Only the data (the schema must exist).
    pub data_only: bool,
    /// Drop the objects the restore replaces first (needed when the target is not empty).
    pub clean: bool,
    /// Tables restored at once (default: the cores, at most 4).
    pub jobs: Option<usize>,
    /// Do not back up a non-empty target before overwriting it.
    pub no_safety_backup: bool,
    /// Check the snapshot and the target, say what would be done, change nothing.
    pub dry_run: bool,
}

impl DatabaseRestore {
    /// Whether any option that only databases take was given.
    pub fn is_set(&self) -> bool {
        !self.tables.is_empty()
            || self.database.is_some()
            || self.schema_only
            || self.data_only
            || self.clean
            || self.dry_run
            || self.no_safety_backup
    }
}

/// What a database restore would do.
#[derive(Debug, Clone, Serialize)]
pub struct DbRestorePlan {
    /// The snapshot.
    pub snapshot_id: Id,
    /// Its engine (`postgres`, `mysql`, `sqlite`, `redis`).
    pub engine: String,
    /// Where it was taken (no password).
    pub source: String,
    /// When.
    pub time: DateTime<Utc>,
    /// The target (no password).
    pub target: String,
    /// The target as it is now.
    pub target_state: TargetState,
    /// The databases and tables to restore, one line each.
    pub plan: Vec<String>,
    /// The target is not empty: the restore needs `--clean`.
    pub needs_clean: bool,
    /// `--clean` was given.
    pub clean: bool,
    /// A safety backup of the target would be taken first.
    pub safety_backup: bool,
}

/// What a finished database restore did.
#[derive(Debug, Clone, Serialize)]
pub struct DbRestoreReport {
    /// The snapshot restored.
    pub snapshot_id: Id,
    /// The target (no password).
    pub target: String,
    /// Tables (or databases, or Redis dbs) restored.
    pub restored: Vec<String>,
    /// Row (or key) counts compared with the snapshot's.
    pub counts: Vec<CountCheck>,
    /// The counts that differ (the restore is then a failure).
    pub mismatches: Vec<CountCheck>,
    /// Anything worth knowing (ignored errors, skipped objects).
    pub warnings: Vec<String>,
    /// The safety backup of the target's previous content.
    pub safety_snapshot_id: Option<Id>,
    /// Wall time of the restore itself, in seconds.
    pub seconds: f64,
}

/// How a database restore ended without an error.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DbRestoreOutcome {
    /// A dry run: nothing was changed.
    DryRun(DbRestorePlan),
    /// The confirmation was refused: nothing was changed.
    Declined(DbRestorePlan),
    /// The restore ran.
    Restored(DbRestoreReport),
}

/// An example target URL for an engine, for messages.
fn example_target(engine: &str) -> &'static str {
    match Engine::from_kind(engine) {
        Some(Engine::Postgres) => "postgres://USER@HOST:5432/NEWDB",
        Some(Engine::Mysql) => "mysql://USER@HOST:3306/NEWDB",
        Some(Engine::Sqlite) => "sqlite:///PATH/TO/NEW.db",
        _ => "redis://HOST:6379",
    }
}

/// The tables (or whole databases) a request selects, as lines for the plan. Naming a database
/// or table the snapshot lacks is a usage error listing what there is.
fn plan_lines(manifest: &DbManifest, req: &RestoreRequest) -> Result<Vec<String>> {
    let dbs: Vec<_> = match &req.database {
        Some(name) => vec![manifest
            .databases
            .iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| {
                Error::usage(format!(
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
        let tables = select_tables(db, &req.tables).map_err(|e| Error::usage(format!("{e:#}")))?;
        for t in tables {
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

/// Restores the database snapshot `snap` of `repo` (whose shared lock the caller holds) into
/// `target`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn restore_database(
    repo: &Repository<Indexed>,
    snap: &Snapshot,
    target: &str,
    opts: &DatabaseRestore,
    progress: &Arc<dyn Progress>,
    cancel: &CancellationToken,
    confirm: Confirm<'_>,
) -> Result<DbRestoreOutcome> {
    let manifest = DbManifest::from_snapshot(snap)?;
    if !database::is_database_url(target) {
        return Err(Error::usage(format!(
            "snapshot {} is a {} backup: give the database to restore into as --target URL \
             (for example {}), not a folder",
            snap.id.short(),
            manifest.engine,
            example_target(&manifest.engine)
        )));
    }
    let url = database_url(target, opts.password_file.as_deref())?;
    database::check_engine(&manifest, url.engine).map_err(|e| Error::usage(format!("{e:#}")))?;
    let req = RestoreRequest {
        target: Some(url.clone()),
        database: opts.database.clone(),
        tables: opts.tables.clone(),
        schema_only: opts.schema_only,
        data_only: opts.data_only,
        clean: opts.clean,
        jobs: opts.jobs.unwrap_or_else(default_jobs).max(1),
    };
    let lines = plan_lines(&manifest, &req)?;
    let shown = url.redacted();
    let state = database::probe_target(&manifest, &req).await?;
    let needs_clean = !state.empty && (req.tables.is_empty() || !state.conflicts.is_empty());
    let plan = DbRestorePlan {
        snapshot_id: snap.id,
        engine: manifest.engine.clone(),
        source: snap.source.location.clone(),
        time: snap.time,
        target: shown.clone(),
        target_state: state.clone(),
        plan: lines,
        needs_clean,
        clean: opts.clean,
        // Taken only by a restore that goes ahead: one refused for want of --clean takes none.
        safety_backup: !state.empty && !opts.no_safety_backup && (opts.clean || !needs_clean),
    };
    if opts.dry_run {
        return Ok(DbRestoreOutcome::DryRun(plan));
    }
    if needs_clean && !opts.clean {
        let what = if state.conflicts.is_empty() {
            String::new()
        } else {
            let first: Vec<String> = state.conflicts.iter().take(10).cloned().collect();
            format!(" (it already has {})", first.join(", "))
        };
        return Err(Error::usage(format!(
            "the target {} is not empty{what}: add --clean to replace what the snapshot \
             restores (a safety backup of the target is taken first), or restore into a new \
             database",
            state.summary
        )));
    }
    if !state.empty && !confirm(&plan) {
        return Ok(DbRestoreOutcome::Declined(plan));
    }

    // The safety backup: the target's current content, in the same repository, first.
    let mut safety_id = None;
    if plan.safety_backup {
        progress.phase(Phase::SafetyBackup);
        progress.note(format!(
            "taking a safety backup of {shown} before overwriting it"
        ));
        let backup = DatabaseBackup {
            url: url.clone(),
            request: BackupRequest {
                labels: crate::assemble::Labels {
                    tags: vec![crate::select::SAFETY_TAG.into()],
                    description: Some(format!(
                        "safety backup taken before restoring snapshot {} into it",
                        snap.id.short()
                    )),
                    ..Default::default()
                },
                requested: Some(BackupType::Full),
                mirrors: false,
            },
            jobs: Some(req.jobs),
            all_databases: false,
        };
        let stored = store_database(repo, &backup, progress, cancel)
            .await
            .map_err(|e| {
                e.context(format!(
                    "the safety backup of {shown} failed, so nothing was restored and the \
                     target is unchanged (--no-safety-backup skips it)"
                ))
            })?;
        progress.note(format!(
            "safety backup {} saved",
            stored.snapshot.id.short()
        ));
        safety_id = Some(stored.snapshot.id);
    }
    if cancel.is_cancelled() {
        return Err(crate::interrupted("the restore").untouched());
    }

    progress.phase(Phase::Restoring);
    let clock = Instant::now();
    let src = StreamSource::load(repo, snap).await?;
    let report = match database::restore(&src, &manifest, &req).await {
        Ok(r) => r,
        Err(e) => return Err(explain_failure(e, &shown, safety_id, state.empty)),
    };
    let mismatches = report.mismatches().into_iter().cloned().collect();
    Ok(DbRestoreOutcome::Restored(DbRestoreReport {
        snapshot_id: snap.id,
        target: shown,
        restored: report.restored,
        counts: report.counts,
        mismatches,
        warnings: report.warnings,
        safety_snapshot_id: safety_id,
        seconds: clock.elapsed().as_secs_f64(),
    }))
}

/// A failed restore's error, saying whether the target may be partly restored and where its
/// previous content is. The engines mark an error that left the target as it was (a SQLite
/// file is replaced by a rename, a Redis db is flushed only once the load can start): then the
/// safety backup is a spare copy, not the way back.
fn explain_failure(e: Error, shown: &str, safety: Option<Id>, was_empty: bool) -> Error {
    let untouched = e.target_untouched();
    let undo = match safety {
        Some(id) if untouched => {
            format!("; the safety backup {} holds its content too", id.short())
        }
        Some(id) => format!(
            "; its previous content is in the safety backup {}: coffer restore {} --target {} \
             --clean",
            id.short(),
            id.short(),
            shown
        ),
        None if was_empty => "; it was empty before".to_string(),
        None if untouched => String::new(),
        None => "; no safety backup was taken".to_string(),
    };
    let partly = if untouched {
        ""
    } else {
        " and the target may be partly restored"
    };
    e.context(format!("the restore into {shown} failed{partly}{undo}"))
}
