//! Executing one task of a job: the [`JobRunner`] trait, and [`OpsRunner`], which runs a job's
//! steps (backup, verification, retention, prune, mirrors) in-process through `coffer_ops`, the
//! same typed operations the `coffer` command calls. The scheduler's tests use fakes.

mod ops;

pub use ops::OpsRunner;

use crate::catalog::TaskKind;
use crate::config::{Config, Job};
use async_trait::async_trait;

/// Re-exported so implementers need not depend on `async-trait` themselves.
pub use async_trait::async_trait as job_runner_impl;
use std::fmt;

/// What a successful task produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutcome {
    /// The snapshot made (backups).
    pub snapshot_id: Option<String>,
    /// The bytes the backup added to the repository.
    pub bytes_added: Option<u64>,
    /// The snapshot was saved but some source files could not be read.
    pub partial: bool,
    /// Things worth knowing, such as a step that was skipped.
    pub notes: Vec<String>,
}

/// Why a task failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError {
    /// What went wrong.
    pub message: String,
    /// Whether trying again may help (a backup that failed: yes; a verification that found
    /// damage after the snapshot was saved: no, another try would only add a snapshot).
    pub retryable: bool,
    /// What the task produced before it failed (a snapshot whose verification failed, say).
    pub partial_outcome: RunOutcome,
}

impl RunError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        RunError {
            message: message.into(),
            retryable: true,
            partial_outcome: RunOutcome::default(),
        }
    }

    /// A failure not worth retrying, after `outcome` was produced.
    pub fn fatal(message: impl Into<String>, outcome: RunOutcome) -> Self {
        RunError {
            message: message.into(),
            retryable: false,
            partial_outcome: outcome,
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs one task of a job. Dropping the future must stop the work (the daemon drops it at the
/// job timeout and when the shutdown timeout runs out).
#[async_trait]
pub trait JobRunner: Send + Sync {
    /// Runs `kind` of `job` (whose repositories are in `config`) once.
    async fn run(&self, config: &Config, job: &Job, kind: TaskKind)
        -> Result<RunOutcome, RunError>;
}
