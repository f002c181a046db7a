//! The scheduler: runs each job's tasks at their times.
//!
//! - Every job has a backup task on its schedule, and a prune task when it has a prune
//!   schedule. Times come from the [`Clock`], so tests drive days of schedule in milliseconds.
//! - At most `max_concurrent_jobs` tasks run at once; the others wait for a slot.
//! - A task never runs twice at once: a time that comes while the previous run is still going
//!   waits for it (and further times in the meantime are skipped, not queued), and the catalog
//!   refuses a second running run of the job from another daemon or `coffer schedule run`.
//! - Each run is first claimed in the catalog, so with a shared catalog each scheduled time runs
//!   on exactly one daemon.
//! - At start-up, the last scheduled time of each task, if it was missed (no run recorded), is
//!   no older than `catch_up_window` and came after the job was first seen, runs once.
//! - A failed run is retried with exponential backoff ([`crate::retry::RetryPolicy`]) when the
//!   failure is retryable; a run longer than `job_timeout` is stopped.
//! - On shutdown no new run starts, backoff waits end (the run is recorded as failed), and
//!   running tasks get `shutdown_timeout` to finish; then they are stopped and recorded as
//!   interrupted.

use crate::catalog::{
    busy_since, Catalog, Claim, Finish, NewRun, RunRecord, RunStatus, TaskKind, Trigger,
};
use crate::clock::Clock;
use crate::config::{Config, Prune};
use crate::error::{Error, ErrorKind, Result};
use crate::runner::{JobRunner, RunError, RunOutcome};
use crate::schedule::Schedule;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Something the scheduler did, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A run was claimed and starts.
    Started {
        /// The job.
        job: String,
        /// The task.
        kind: TaskKind,
        /// The time it is for.
        scheduled_at: DateTime<Utc>,
        /// How it started.
        trigger: Trigger,
    },
    /// A try failed; another follows after `delay`.
    Retrying {
        /// The job.
        job: String,
        /// The task.
        kind: TaskKind,
        /// The try that comes next (2 for the first retry).
        attempt: u32,
        /// The wait before it.
        delay: Duration,
        /// Why the last try failed.
        error: String,
    },
    /// A run ended.
    Finished {
        /// The job.
        job: String,
        /// The task.
        kind: TaskKind,
        /// How it ended.
        status: RunStatus,
        /// The snapshot made.
        snapshot_id: Option<String>,
        /// Why it failed.
        error: Option<String>,
    },
    /// A scheduled time was not run.
    Skipped {
        /// The job.
        job: String,
        /// The task.
        kind: TaskKind,
        /// The time.
        scheduled_at: DateTime<Utc>,
        /// Why.
        reason: String,
    },
    /// Shutdown began with this many runs still going.
    ShuttingDown {
        /// Runs still going.
        running: usize,
    },
}

/// A callback receiving [`Event`]s.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// What a scheduler did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Runs started.
    pub started: usize,
    /// Runs that ended in success (or partial success).
    pub succeeded: usize,
    /// Runs that failed.
    pub failed: usize,
    /// Runs stopped by the shutdown timeout or the job timeout.
    pub interrupted: usize,
}

/// One schedulable task: a job's backup or its prune.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Index of the job in the config.
    pub job: usize,
    /// Which task.
    pub kind: TaskKind,
    /// When it runs.
    pub schedule: Schedule,
    /// In which time zone.
    pub timezone: Tz,
}

/// The tasks of a config: each job's backup, then its prune when it has a prune schedule.
pub fn tasks(config: &Config) -> Vec<TaskSpec> {
    let mut out = Vec::new();
    for (i, j) in config.jobs.iter().enumerate() {
        out.push(TaskSpec {
            job: i,
            kind: TaskKind::Backup,
            schedule: j.schedule.clone(),
            timezone: j.timezone,
        });
        if let Prune::Schedule(s) = &j.prune {
            out.push(TaskSpec {
                job: i,
                kind: TaskKind::Prune,
                schedule: (**s).clone(),
                timezone: j.timezone,
            });
        }
    }
    out
}

/// This process as a catalog owner: `HOST/PID`.
pub fn default_owner() -> String {
    format!("{}/{}", host_name(), std::process::id())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The parts a run needs, shared by the loop and its tasks.
struct Shared {
    config: Arc<Config>,
    catalog: Arc<dyn Catalog>,
    runner: Arc<dyn JobRunner>,
    clock: Arc<dyn Clock>,
    owner: String,
    observer: Option<Observer>,
    slots: Semaphore,
}

impl Shared {
    fn emit(&self, e: Event) {
        match &e {
            Event::Started {
                job,
                kind,
                scheduled_at,
                trigger,
            } => tracing::info!("{job} ({kind}): starting the run for {scheduled_at} ({trigger})"),
            Event::Retrying {
                job,
                kind,
                attempt,
                delay,
                error,
            } => tracing::warn!(
                "{job} ({kind}): failed ({error}); try {attempt} in {}",
                coffer_core::duration::format(*delay)
            ),
            Event::Finished {
                job,
                kind,
                status,
                error,
                ..
            } => match error {
                Some(e) => tracing::warn!("{job} ({kind}): {status}: {e}"),
                None => tracing::info!("{job} ({kind}): {status}"),
            },
            Event::Skipped {
                job,
                kind,
                scheduled_at,
                reason,
            } => {
                tracing::info!("{job} ({kind}): not running {scheduled_at}: {reason}")
            }
            Event::ShuttingDown { running } => {
                tracing::info!("shutting down, {running} run(s) still going")
            }
        }
        if let Some(o) = &self.observer {
            o(&e);
        }
    }
}

/// The scheduler (see the module docs).
pub struct Scheduler {
    shared: Arc<Shared>,
}

/// How a task's run ended, for the loop's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    NotRun,
    Status(RunStatus),
}

impl Scheduler {
    /// A scheduler for `config`, recording in `catalog`, running tasks with `runner`, reading
    /// time from `clock`; runs are claimed as `owner` (see [`default_owner`]).
    pub fn new(
        config: Arc<Config>,
        catalog: Arc<dyn Catalog>,
        runner: Arc<dyn JobRunner>,
        clock: Arc<dyn Clock>,
        owner: String,
    ) -> Scheduler {
        let slots = Semaphore::new(config.settings.max_concurrent_jobs.max(1));
        Scheduler {
            shared: Arc::new(Shared {
                config,
                catalog,
                runner,
                clock,
                owner,
                observer: None,
                slots,
            }),
        }
    }

    /// Sends every [`Event`] to `observer` too.
    pub fn with_observer(self, observer: Observer) -> Scheduler {
        let s = Arc::try_unwrap(self.shared)
            .unwrap_or_else(|_| unreachable!("the scheduler is not shared before it runs"));
        Scheduler {
            shared: Arc::new(Shared {
                observer: Some(observer),
                ..s
            }),
        }
    }

    /// Marks the runs left `running` by dead processes of this host as interrupted.
    async fn clean_orphans(&self) -> Result<()> {
        let host = host_name();
        for r in self.shared.catalog.running().await? {
            let Some((h, pid)) = r.owner.rsplit_once('/') else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            let alive =
                pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists();
            if h == host && !alive {
                self.shared
                    .catalog
                    .finish(
                        r.id,
                        &Finish {
                            status: RunStatus::Interrupted,
                            finished_at: self.shared.clock.now(),
                            snapshot_id: None,
                            bytes_added: None,
                            error: Some(format!("the daemon running it ({}) stopped", r.owner)),
                            notes: Vec::new(),
                        },
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// The missed time each task should catch up on at start-up, if any.
    async fn catch_up(
        &self,
        specs: &[TaskSpec],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<DateTime<Utc>>>> {
        let sh = &self.shared;
        let window =
            TimeDelta::from_std(sh.config.settings.catch_up_window).unwrap_or(TimeDelta::MAX / 2);
        let mut out = Vec::with_capacity(specs.len());
        for s in specs {
            let job = &sh.config.jobs[s.job].name;
            let mut missed = None;
            if window > TimeDelta::zero() {
                if let Some(last) = s.schedule.last_at_or_before(now, s.timezone) {
                    let seen = sh.catalog.first_seen(job).await?;
                    if now - last <= window
                        && seen.is_some_and(|f| last > f)
                        && !sh.catalog.has_run(job, s.kind, last).await?
                    {
                        missed = Some(last);
                    }
                }
            }
            out.push(missed);
        }
        Ok(out)
    }

    /// Runs until `shutdown` completes, then stops gracefully (see the module docs).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<Summary> {
        let sh = Arc::clone(&self.shared);
        let specs = tasks(&sh.config);
        self.clean_orphans().await?;
        let names: Vec<String> = sh.config.jobs.iter().map(|j| j.name.clone()).collect();
        let start = sh.clock.now();
        let missed = self.catch_up(&specs, start).await?;
        sh.catalog.register_jobs(&names, start).await?;

        let n = specs.len();
        let mut next: Vec<Option<DateTime<Utc>>> = specs
            .iter()
            .map(|s| s.schedule.next_after(start, s.timezone))
            .collect();
        let mut pending: Vec<Option<(DateTime<Utc>, Trigger)>> = missed
            .into_iter()
            .map(|m| m.map(|t| (t, Trigger::CatchUp)))
            .collect();
        let mut active = vec![false; n];
        let mut summary = Summary::default();
        let mut set: JoinSet<(usize, Ended)> = JoinSet::new();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (kill_tx, kill_rx) = watch::channel(false);
        tokio::pin!(shutdown);

        loop {
            for i in 0..n {
                if active[i] {
                    continue;
                }
                if let Some((at, trigger)) = pending[i].take() {
                    active[i] = true;
                    let sh = Arc::clone(&sh);
                    let spec = specs[i].clone();
                    let (stop, kill) = (stop_rx.clone(), kill_rx.clone());
                    set.spawn(async move {
                        let ended = execute(&sh, &spec, at, trigger, stop, kill).await;
                        (i, ended)
                    });
                }
            }
            let wake = next.iter().flatten().min().copied();
            let clock = Arc::clone(&sh.clock);
            let sleep = async move {
                match wake {
                    Some(t) => clock.sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                Some(done) = set.join_next(), if !set.is_empty() => {
                    let (i, ended) = done.map_err(|e| Error::new(ErrorKind::Catalog, format!("a run panicked: {e}")))?;
                    active[i] = false;
                    tally(&mut summary, ended);
                }
                _ = sleep => {
                    let now = sh.clock.now();
                    for i in 0..n {
                        let Some(t) = next[i] else { continue };
                        if t > now {
                            continue;
                        }
                        if let Some((queued, _)) = pending[i] {
                            sh.emit(Event::Skipped {
                                job: sh.config.jobs[specs[i].job].name.clone(),
                                kind: specs[i].kind,
                                scheduled_at: t,
                                reason: format!("the run for {queued} is still waiting for the previous one to end"),
                            });
                        } else {
                            pending[i] = Some((t, Trigger::Schedule));
                        }
                        next[i] = specs[i].schedule.next_after(now.max(t), specs[i].timezone);
                    }
                }
            }
        }

        // Shutdown: no new runs; backoff waits end; running tasks get the timeout.
        let _ = stop_tx.send(true);
        sh.emit(Event::ShuttingDown { running: set.len() });
        let deadline = {
            let clock = Arc::clone(&sh.clock);
            let d = sh.config.settings.shutdown_timeout;
            async move { clock.sleep(d).await }
        };
        tokio::pin!(deadline);
        let mut killed = false;
        while !set.is_empty() {
            tokio::select! {
                Some(done) = set.join_next() => {
                    if let Ok((_, ended)) = done {
                        tally(&mut summary, ended);
                    }
                }
                _ = &mut deadline, if !killed => {
                    killed = true;
                    let _ = kill_tx.send(true);
                }
            }
        }
        Ok(summary)
    }

    /// Runs a job's task now, in the caller (`coffer schedule run`): claimed as a manual run, no
    /// retries. Fails with [`ErrorKind::Busy`] when a run of the job is in progress.
    pub async fn run_now(&self, job: &str, kind: TaskKind) -> Result<RunRecord> {
        let sh = &self.shared;
        let j = sh.config.job(job)?;
        sh.catalog
            .register_jobs(&[job.to_string()], sh.clock.now())
            .await?;
        let now = sh.clock.now();
        let claim = sh
            .catalog
            .claim(
                &NewRun {
                    job: job.to_string(),
                    kind,
                    scheduled_at: now,
                    trigger: Trigger::Manual,
                    owner: sh.owner.clone(),
                    started_at: now,
                },
                busy_since(now, sh.config.settings.job_timeout),
            )
            .await?;
        let id = match claim {
            Claim::Claimed(id) => id,
            Claim::AlreadyClaimed | Claim::Busy => {
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!("job {job:?} ({kind}) is already running"),
                ))
            }
        };
        sh.emit(Event::Started {
            job: job.to_string(),
            kind,
            scheduled_at: now,
            trigger: Trigger::Manual,
        });
        let result = sh.runner.run(&sh.config, j, kind).await;
        let finish = finish_of(result, sh.clock.now());
        sh.catalog.finish(id, &finish).await?;
        emit_finished(sh, job, kind, &finish);
        let mut hist = sh.catalog.history(Some(job), 20).await?;
        hist.retain(|r| r.id == id);
        hist.pop()
            .ok_or_else(|| Error::catalog(format!("run {id} vanished from the catalog")))
    }
}

fn tally(s: &mut Summary, ended: Ended) {
    match ended {
        Ended::NotRun => {}
        Ended::Status(st) => {
            s.started += 1;
            match st {
                RunStatus::Success | RunStatus::Partial => s.succeeded += 1,
                RunStatus::Failed => s.failed += 1,
                RunStatus::Interrupted | RunStatus::Running => s.interrupted += 1,
            }
        }
    }
}

fn finish_of(result: std::result::Result<RunOutcome, RunError>, at: DateTime<Utc>) -> Finish {
    match result {
        Ok(o) => Finish {
            status: if o.partial {
                RunStatus::Partial
            } else {
                RunStatus::Success
            },
            finished_at: at,
            snapshot_id: o.snapshot_id,
            bytes_added: o.bytes_added,
            error: None,
            notes: o.notes,
        },
        Err(e) => Finish {
            status: RunStatus::Failed,
            finished_at: at,
            snapshot_id: e.partial_outcome.snapshot_id,
            bytes_added: e.partial_outcome.bytes_added,
            error: Some(e.message),
            notes: e.partial_outcome.notes,
        },
    }
}

fn emit_finished(sh: &Shared, job: &str, kind: TaskKind, f: &Finish) {
    sh.emit(Event::Finished {
        job: job.to_string(),
        kind,
        status: f.status,
        snapshot_id: f.snapshot_id.clone(),
        error: f.error.clone(),
    });
}

/// Waits until the watch channel says true.
async fn flagged(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Claims and runs one scheduled time of a task, with retries.
async fn execute(
    sh: &Shared,
    spec: &TaskSpec,
    scheduled_at: DateTime<Utc>,
    trigger: Trigger,
    stop: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
) -> Ended {
    let job = &sh.config.jobs[spec.job];
    let name = job.name.clone();
    let kind = spec.kind;
    let settings = &sh.config.settings;
    let skipped = |reason: String| {
        sh.emit(Event::Skipped {
            job: name.clone(),
            kind,
            scheduled_at,
            reason,
        });
        Ended::NotRun
    };
    let permit = tokio::select! {
        p = sh.slots.acquire() => match p { Ok(p) => p, Err(_) => return Ended::NotRun },
        _ = flagged(stop.clone()) => return skipped("the daemon is shutting down".into()),
    };
    let now = sh.clock.now();
    let claim = sh
        .catalog
        .claim(
            &NewRun {
                job: name.clone(),
                kind,
                scheduled_at,
                trigger,
                owner: sh.owner.clone(),
                started_at: now,
            },
            busy_since(now, settings.job_timeout),
        )
        .await;
    let id = match claim {
        Ok(Claim::Claimed(id)) => id,
        Ok(Claim::AlreadyClaimed) => {
            return skipped("already claimed (by another daemon, or before a restart)".into())
        }
        Ok(Claim::Busy) => return skipped("another run of the job is in progress".into()),
        Err(e) => return skipped(format!("cannot claim the run: {e}")),
    };
    sh.emit(Event::Started {
        job: name.clone(),
        kind,
        scheduled_at,
        trigger,
    });
    let mut permit = Some(permit);
    let mut attempt = 1u32;
    let finish = loop {
        if permit.is_none() {
            permit = tokio::select! {
                p = sh.slots.acquire() => p.ok(),
                _ = flagged(stop.clone()) => None,
            };
            if permit.is_none() {
                break Finish {
                    status: RunStatus::Failed,
                    finished_at: sh.clock.now(),
                    snapshot_id: None,
                    bytes_added: None,
                    error: Some("not retried: the daemon is shutting down".into()),
                    notes: Vec::new(),
                };
            }
        }
        let result = tokio::select! {
            r = sh.runner.run(&sh.config, job, kind) => Some(r),
            _ = sh.clock.sleep(settings.job_timeout) => None,
            _ = flagged(kill.clone()) => {
                break Finish {
                    status: RunStatus::Interrupted,
                    finished_at: sh.clock.now(),
                    snapshot_id: None,
                    bytes_added: None,
                    error: Some(format!(
                        "stopped: the daemon shut down and the run did not end within {}",
                        coffer_core::duration::format(settings.shutdown_timeout)
                    )),
                    notes: Vec::new(),
                };
            }
        };
        let Some(result) = result else {
            break Finish {
                status: RunStatus::Interrupted,
                finished_at: sh.clock.now(),
                snapshot_id: None,
                bytes_added: None,
                error: Some(format!(
                    "stopped: the run took longer than job_timeout ({})",
                    coffer_core::duration::format(settings.job_timeout)
                )),
                notes: Vec::new(),
            };
        };
        let err = match result {
            Ok(_) => break finish_of(result, sh.clock.now()),
            Err(e) => e,
        };
        let delay = settings.retry.delay_before(attempt + 1);
        let (true, Some(delay), false) = (err.retryable, delay, *stop.borrow()) else {
            let mut f = finish_of(Err(err), sh.clock.now());
            if attempt > 1 {
                f.error = f.error.map(|e| format!("{e} (after {attempt} tries)"));
            }
            break f;
        };
        attempt += 1;
        permit = None;
        if let Err(e) = sh.catalog.retrying(id, attempt, &err.message).await {
            tracing::warn!("{name}: cannot record the retry: {e}");
        }
        sh.emit(Event::Retrying {
            job: name.clone(),
            kind,
            attempt,
            delay,
            error: err.message.clone(),
        });
        tokio::select! {
            _ = sh.clock.sleep(delay) => {}
            _ = flagged(stop.clone()) => {
                break Finish {
                    status: RunStatus::Failed,
                    finished_at: sh.clock.now(),
                    snapshot_id: None,
                    bytes_added: None,
                    error: Some(format!("{} (not retried: the daemon is shutting down)", err.message)),
                    notes: Vec::new(),
                };
            }
        }
    };
    drop(permit);
    if let Err(e) = sh.catalog.finish(id, &finish).await {
        tracing::error!("{name}: cannot record the end of run {id}: {e}");
    }
    emit_finished(sh, &name, kind, &finish);
    Ended::Status(finish.status)
}

#[cfg(test)]
mod tests;
