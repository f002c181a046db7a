//! The run history: one row per run of a job (scheduled time, start, end, status, snapshot,
//! bytes added, error). The catalog also decides who runs what: a run is *claimed* by inserting
//! its `(job, kind, scheduled time)` row, which succeeds for exactly one daemon, and a job with a
//! run in progress cannot be claimed again until that run ends (or is older than the job
//! timeout). [`SqliteCatalog`] is the embedded default; [`PostgresCatalog`] lets several daemons
//! share the work.

mod postgres;
mod sqlite;

pub use postgres::PostgresCatalog;
pub use sqlite::SqliteCatalog;

use crate::config::CatalogLocation;
use crate::error::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// The job's backup (with its verify, forget and copies).
    Backup,
    /// A prune of the job's repository, on the job's prune schedule.
    Prune,
}

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// At its scheduled time.
    Schedule,
    /// At start-up, for a time missed while no daemon ran.
    CatchUp,
    /// By `coffer schedule run`.
    Manual,
}

/// How a run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Still going.
    Running,
    /// Done.
    Success,
    /// Done, but some source files could not be read (the snapshot was saved).
    Partial,
    /// Failed (after its retries).
    Failed,
    /// Stopped: the daemon shut down or died, or the run exceeded the job timeout.
    Interrupted,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The name stored in the catalog and printed.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            /// Reads a stored name.
            pub fn parse(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok(<$t>::$v),)*
                    other => Err(Error::catalog(format!(
                        "unknown {} {other:?} in the catalog", stringify!($t)
                    ))),
                }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(TaskKind { Backup => "backup", Prune => "prune" });
names!(Trigger { Schedule => "schedule", CatchUp => "catch-up", Manual => "manual" });
names!(RunStatus {
    Running => "running",
    Success => "success",
    Partial => "partial",
    Failed => "failed",
    Interrupted => "interrupted",
});

impl RunStatus {
    /// Whether the run produced what it should (success or partial).
    pub fn is_success(self) -> bool {
        matches!(self, RunStatus::Success | RunStatus::Partial)
    }
}

/// A run to claim.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The job.
    pub job: String,
    /// The task.
    pub kind: TaskKind,
    /// The scheduled time it is for (the start time for manual runs).
    pub scheduled_at: DateTime<Utc>,
    /// How it was started.
    pub trigger: Trigger,
    /// Who runs it: `HOST/PID`.
    pub owner: String,
    /// When it starts.
    pub started_at: DateTime<Utc>,
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours: the run's id.
    Claimed(i64),
    /// That scheduled time was already claimed (by another daemon, or before a restart).
    AlreadyClaimed,
    /// Another run of the job is in progress.
    Busy,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// The status (not [`RunStatus::Running`]).
    pub status: RunStatus,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// The snapshot made, if any.
    pub snapshot_id: Option<String>,
    /// The bytes the backup added to the repository.
    pub bytes_added: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Things worth knowing (a skipped step, say).
    pub notes: Vec<String>,
}

/// One run, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// Its id.
    pub id: i64,
    /// The job.
    pub job: String,
    /// The task.
    pub kind: TaskKind,
    /// The scheduled time it was for.
    pub scheduled_at: DateTime<Utc>,
    /// How it was started.
    pub trigger: Trigger,
    /// Who ran it (`HOST/PID`).
    pub owner: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// How it went.
    pub status: RunStatus,
    /// Tries made.
    pub attempts: u32,
    /// The snapshot made.
    pub snapshot_id: Option<String>,
    /// The bytes added.
    pub bytes_added: Option<u64>,
    /// The (last) error.
    pub error: Option<String>,
    /// Notes.
    pub notes: Vec<String>,
}

/// The run history and the claims on runs.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Claims a run (see [`Claim`]): it is inserted as running unless its scheduled time was
    /// already claimed or another run of the job is in progress and started after
    /// `busy_since`.
    async fn claim(&self, run: &NewRun, busy_since: DateTime<Utc>) -> Result<Claim>;
    /// Records that try number `attempt` starts, after `error` ended the previous one.
    async fn retrying(&self, id: i64, attempt: u32, error: &str) -> Result<()>;
    /// Records the end of a run.
    async fn finish(&self, id: i64, finish: &Finish) -> Result<()>;
    /// The newest runs first, of one job or all, at most `limit`.
    async fn history(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>>;
    /// The newest run of a job's task, and its newest successful one.
    async fn last_runs(
        &self,
        job: &str,
        kind: TaskKind,
    ) -> Result<(Option<RunRecord>, Option<RunRecord>)>;
    /// Whether a run for that scheduled time exists.
    async fn has_run(&self, job: &str, kind: TaskKind, scheduled_at: DateTime<Utc>)
        -> Result<bool>;
    /// The runs still marked running.
    async fn running(&self) -> Result<Vec<RunRecord>>;
    /// Records the first time each job was seen by a daemon (kept if already there).
    async fn register_jobs(&self, jobs: &[String], now: DateTime<Utc>) -> Result<()>;
    /// When a job was first seen by a daemon.
    async fn first_seen(&self, job: &str) -> Result<Option<DateTime<Utc>>>;
}

/// Opens (and creates or upgrades) the catalog at `location`.
pub async fn open(location: &CatalogLocation) -> Result<Arc<dyn Catalog>> {
    Ok(match location {
        CatalogLocation::Sqlite(path) => Arc::new(SqliteCatalog::open(path)?),
        CatalogLocation::Postgres(url) => Arc::new(PostgresCatalog::connect(url).await?),
    })
}

/// Times are stored with millisecond precision; this is what reads back.
pub fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// `busy_since` for [`Catalog::claim`]: runs started before `now - job_timeout` no longer block.
pub fn busy_since(now: DateTime<Utc>, job_timeout: std::time::Duration) -> DateTime<Utc> {
    now - TimeDelta::from_std(job_timeout).unwrap_or(TimeDelta::MAX / 2)
}

fn join_notes(n: &[String]) -> Option<String> {
    (!n.is_empty()).then(|| n.join("\n"))
}

fn split_notes(s: Option<String>) -> Vec<String> {
    s.map(|s| s.lines().map(String::from).collect())
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests;
