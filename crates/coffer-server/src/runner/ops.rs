//! [`OpsRunner`]: a job's steps run in the daemon's own process through `coffer_ops`.
//!
//! A backup task is: the backup (files, or one database URL), copied to the repository's own
//! mirrors under its lock; then the job's verification (`check`, a sampled `check`, or a full
//! `verify` of the new snapshot); then its retention (`forget`, with `prune` after it when the
//! job says so); then the job's mirrors. A prune task is a prune.
//!
//! Jobs used to run as child processes of the daemon (`coffer backup ...`). They run in-process
//! now because the server and the dashboard need what only an in-process call gives: typed
//! reports instead of parsed output, progress events, and cancellation that stops at a safe
//! point and releases the lock. What a child process gave is kept otherwise: every step runs in
//! its own task, so a panic fails the run and not the daemon; storage calls have time limits
//! (`storage.timeout`); and a run dropped by the scheduler (job timeout, shutdown) cancels its
//! token, and its task goes on to the next safe point and releases its lock.

use super::{JobRunner, RunError, RunOutcome};
use crate::catalog::TaskKind;
use crate::config::{Config, Job, Prune, Repository, Retention, Verify};
use async_trait::async_trait;
use coffer_core::check::CheckOptions;
use coffer_core::prune::PruneOptions;
use coffer_core::snapshot::BackupType;
use coffer_ops::assemble::Labels;
use coffer_ops::backup::database::{backup_database, database_url, DatabaseBackup};
use coffer_ops::backup::files::{backup_files, FilesBackup};
use coffer_ops::backup::{BackupReport, BackupRequest};
use coffer_ops::password::PasswordSource;
use coffer_ops::{CancellationToken, Progress, RepoSpec, Silent, SnapshotFilter};
use coffer_storage::StorageOptions;
use std::sync::Arc;

/// Runs jobs in-process.
pub struct OpsRunner {
    /// Transfer settings every repository gets (connections, limits, cache, Object Lock); each
    /// repository's own options are added to them.
    base: StorageOptions,
    /// Where a repository without a password file or command gets its password.
    fallback_password: PasswordSource,
    /// Receives the events of every operation.
    progress: Arc<dyn Progress>,
}

impl OpsRunner {
    /// A runner whose repositories get the transfer settings of `base` (its service options are
    /// ignored: each repository has its own) and, when the config gives them no password file or
    /// command, the password of `fallback_password`.
    pub fn new(base: StorageOptions, fallback_password: PasswordSource) -> OpsRunner {
        let mut base = base;
        base.extra.clear();
        OpsRunner {
            base,
            fallback_password,
            progress: Arc::new(Silent),
        }
    }

    /// Sends every operation's events to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> OpsRunner {
        self.progress = progress;
        self
    }

    /// The spec of a configured repository.
    fn spec(&self, repo: &Repository) -> Result<RepoSpec, RunError> {
        let mut options = self.base.clone();
        for (k, v) in &repo.options {
            options
                .set(k, v)
                .map_err(|e| RunError::fatal(format!("{e:#}"), RunOutcome::default()))?;
        }
        let password = match (&repo.password_file, &repo.password_command) {
            (Some(f), _) => PasswordSource::File(f.clone()),
            (None, Some(c)) => PasswordSource::Command(c.clone()),
            (None, None) => self.fallback_password.clone(),
        };
        Ok(RepoSpec {
            url: repo.url.clone(),
            options,
            password,
        })
    }

    /// The backup step.
    async fn back_up(
        &self,
        spec: &RepoSpec,
        job: &Job,
        cancel: &CancellationToken,
    ) -> Result<BackupReport, RunError> {
        let request = BackupRequest {
            labels: Labels {
                tags: job.tags.clone(),
                host: job.host.clone(),
                ..Labels::default()
            },
            requested: job.backup_type.map(|t| match t {
                crate::config::BackupType::Full => BackupType::Full,
                crate::config::BackupType::Incremental => BackupType::Incremental,
                crate::config::BackupType::Differential => BackupType::Differential,
            }),
            mirrors: true,
        };
        let database = job
            .sources
            .iter()
            .find(|s| coffer_sources::database::is_database_url(s));
        let result = match database {
            Some(url) => {
                let url = database_url(url, None).map_err(|e| failed("backup", e))?;
                let opts = DatabaseBackup {
                    url,
                    request,
                    jobs: None,
                    all_databases: false,
                };
                backup_database(spec, opts, self.progress.clone(), cancel).await
            }
            None => {
                let opts = FilesBackup {
                    paths: job.sources.iter().map(Into::into).collect(),
                    excludes: job.excludes.clone(),
                    request,
                };
                backup_files(spec, opts, self.progress.clone(), cancel).await
            }
        };
        result.map_err(|e| failed("backup", e))
    }

    /// The verification step; damage is a failure that no retry cures.
    async fn verify(
        &self,
        spec: &RepoSpec,
        job: &Job,
        snapshot: &str,
        outcome: &RunOutcome,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let what = format!("verification ({})", job.verify.name());
        let (ok, errors) = match &job.verify {
            Verify::None => return Ok(()),
            Verify::Metadata | Verify::Sample(_) => {
                let subset = match &job.verify {
                    Verify::Sample(share) => Some(
                        coffer_ops::check::parse_subset(share)
                            .map_err(|e| RunError::fatal(format!("{e:#}"), outcome.clone()))?,
                    ),
                    _ => None,
                };
                let opts = CheckOptions {
                    read_data: subset.is_some(),
                    subset,
                };
                let r = coffer_ops::check::check(spec, &opts, false, &*self.progress, cancel)
                    .await
                    .map_err(|e| RunError::fatal(failed(&what, e).message, outcome.clone()))?;
                (r.ok, r.errors)
            }
            Verify::Full => {
                let r = coffer_ops::verify::verify(
                    spec,
                    snapshot,
                    &SnapshotFilter::default(),
                    false,
                    &*self.progress,
                    cancel,
                )
                .await
                .map_err(|e| RunError::fatal(failed(&what, e).message, outcome.clone()))?;
                (r.ok, r.errors)
            }
        };
        if ok {
            return Ok(());
        }
        Err(RunError::fatal(
            format!("{what} found damage: {}", damage_summary(&errors)),
            outcome.clone(),
        ))
    }

    /// The retention step (with its prune when the job says so).
    async fn forget(
        &self,
        spec: &RepoSpec,
        job: &Job,
        outcome: &RunOutcome,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let Some(retention) = &job.retention else {
            return Ok(());
        };
        let (policy, timezone) = match retention {
            Retention::Policy(p) => (Some((**p).clone()), Some(job.timezone.name().to_string())),
            Retention::Repository => (None, None),
        };
        let f = coffer_ops::forget::Forget {
            policy,
            group_by: None,
            timezone,
            dry_run: false,
            prune: matches!(job.prune, Prune::AfterForget).then(PruneOptions::default),
        };
        coffer_ops::forget::forget(spec, &f, &*self.progress, cancel)
            .await
            .map(|_| ())
            .map_err(|e| RunError::fatal(failed("forget", e).message, outcome.clone()))
    }

    /// Copies the new snapshot to the job's mirrors.
    async fn mirror(
        &self,
        config: &Config,
        spec: &RepoSpec,
        job: &Job,
        snapshot: &str,
        outcome: &mut RunOutcome,
    ) -> Result<(), RunError> {
        for name in &job.mirrors {
            let to = self.spec(config.repository(name))?;
            let outcomes = coffer_ops::mirror::mirror_snapshot(spec, snapshot, &[to]).await;
            for o in outcomes {
                if let Some(e) = o.error {
                    return Err(RunError::fatal(
                        format!("copy to mirror {name:?} failed: {e}"),
                        outcome.clone(),
                    ));
                }
            }
            outcome.notes.push(format!("copied to {name}"));
        }
        Ok(())
    }

    /// A backup task: backup, verification, retention, mirrors.
    async fn backup_task(
        &self,
        config: &Config,
        job: &Job,
        cancel: &CancellationToken,
    ) -> Result<RunOutcome, RunError> {
        let spec = self.spec(config.repository(&job.repository))?;
        let report = self.back_up(&spec, job, cancel).await?;
        let id = report.snapshot.id.to_string();
        let mut outcome = RunOutcome {
            snapshot_id: Some(id.clone()),
            bytes_added: Some(report.snapshot.stats.bytes_added),
            partial: report.is_partial(),
            notes: Vec::new(),
        };
        if outcome.partial {
            outcome.notes.push(format!(
                "{} source file(s) could not be read (see the snapshot)",
                report.unreadable.len()
            ));
        }
        if let Some(m) = report.mirrors.iter().find(|m| !m.ok) {
            return Err(RunError::fatal(
                format!(
                    "snapshot {} is saved, but copying it to the mirror {} failed: {}",
                    report.snapshot.id.short(),
                    m.url,
                    m.error.as_deref().unwrap_or("unknown error")
                ),
                outcome,
            ));
        }
        self.verify(&spec, job, &id, &outcome, cancel).await?;
        self.forget(&spec, job, &outcome, cancel).await?;
        self.mirror(config, &spec, job, &id, &mut outcome).await?;
        Ok(outcome)
    }

    /// A prune task.
    async fn prune_task(
        &self,
        config: &Config,
        job: &Job,
        cancel: &CancellationToken,
    ) -> Result<RunOutcome, RunError> {
        let spec = self.spec(config.repository(&job.repository))?;
        coffer_ops::prune::prune(&spec, &PruneOptions::default(), &*self.progress, cancel)
            .await
            .map_err(|e| failed("prune", e))?;
        Ok(RunOutcome::default())
    }
}

/// A step's error as a run error: `STEP failed: the whole chain`, retryable unless retrying
/// cannot help (a usage or configuration problem, a wrong password, a missing repository,
/// damage, a full disk).
fn failed(step: &str, e: coffer_core::Error) -> RunError {
    use coffer_core::ErrorKind::*;
    let message = format!("{step} failed: {e:#}");
    match e.kind() {
        Usage | InvalidInput | WrongPassword | RepositoryNotFound | Corrupt | Unsupported
        | StorageFull => RunError::fatal(message, RunOutcome::default()),
        _ => RunError::retryable(message),
    }
}

/// At most three of `errors`, and how many there are in all.
fn damage_summary(errors: &[String]) -> String {
    let shown: Vec<&str> = errors.iter().take(3).map(String::as_str).collect();
    let more = errors.len().saturating_sub(shown.len());
    let mut text = format!("{} problem(s): {}", errors.len(), shown.join("; "));
    if more > 0 {
        text.push_str(&format!(
            "; and {more} more (run `coffer check --read-data`)"
        ));
    }
    text
}

#[async_trait]
impl JobRunner for OpsRunner {
    async fn run(
        &self,
        config: &Config,
        job: &Job,
        kind: TaskKind,
    ) -> Result<RunOutcome, RunError> {
        // The work runs in its own task, so that a panic fails this run only, and so that a
        // run dropped by the scheduler (job timeout, shutdown) still reaches a safe point and
        // releases its lock: dropping this future cancels the token, the task goes on.
        let cancel = CancellationToken::new();
        let _stop_on_drop = cancel.clone().drop_guard();
        let runner = OpsRunner {
            base: self.base.clone(),
            fallback_password: self.fallback_password.clone(),
            progress: self.progress.clone(),
        };
        let (config, job) = (config.clone(), job.clone());
        let task = tokio::spawn(async move {
            match kind {
                TaskKind::Backup => runner.backup_task(&config, &job, &cancel).await,
                TaskKind::Prune => runner.prune_task(&config, &job, &cancel).await,
            }
        });
        match task.await {
            Ok(r) => r,
            Err(e) => Err(RunError::retryable(format!("the run stopped: {e}"))),
        }
    }
}
