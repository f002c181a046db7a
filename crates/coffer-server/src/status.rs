//! The state of each task for `coffer status`: its last run, its last success, its next time,
//! and whether it is overdue or failing.
//!
//! A task is **overdue** when a scheduled time that is at least `overdue_margin` old came after
//! its last successful run started (or, with no success yet, after a daemon first saw the job):
//! for a regular schedule that is "the last success is older than the interval plus the
//! margin". A job no daemon has seen yet is never overdue. A task is **failing** when its last
//! finished run failed.

use crate::catalog::{Catalog, RunRecord, RunStatus, TaskKind};
use crate::config::Config;
use crate::error::Result;
use crate::scheduler::tasks;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// The state of one task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskStatus {
    /// The job.
    pub job: String,
    /// The task.
    pub kind: TaskKind,
    /// The schedule as written.
    pub schedule: String,
    /// The time zone.
    pub timezone: String,
    /// Its newest run.
    pub last_run: Option<RunRecord>,
    /// Its newest successful run.
    pub last_success: Option<RunRecord>,
    /// Its next scheduled time.
    pub next_run: Option<DateTime<Utc>>,
    /// The scheduled time it missed, when overdue.
    pub overdue_since: Option<DateTime<Utc>>,
    /// Whether it is overdue.
    pub overdue: bool,
    /// Whether its last finished run failed.
    pub failing: bool,
    /// One word: `ok`, `running`, `failing`, `overdue`, `never-run`.
    pub state: &'static str,
}

/// The state of every task of `config` at `now`.
pub async fn statuses(
    config: &Config,
    catalog: &dyn Catalog,
    now: DateTime<Utc>,
) -> Result<Vec<TaskStatus>> {
    let mut out = Vec::new();
    for spec in tasks(config) {
        let job = &config.jobs[spec.job];
        let (last_run, last_success) = catalog.last_runs(&job.name, spec.kind).await?;
        let first_seen = catalog.first_seen(&job.name).await?;
        let reference = last_success.as_ref().map(|r| r.started_at).or(first_seen);
        let margin = TimeDelta::from_std(job.overdue_margin).unwrap_or(TimeDelta::MAX / 2);
        let expected = now
            .checked_sub_signed(margin)
            .and_then(|t| spec.schedule.last_at_or_before(t, spec.timezone));
        let overdue_since = match (reference, expected) {
            (Some(r), Some(e)) if e > r => Some(e),
            _ => None,
        };
        let failing = last_run
            .as_ref()
            .is_some_and(|r| r.status == RunStatus::Failed);
        let running = last_run
            .as_ref()
            .is_some_and(|r| r.status == RunStatus::Running);
        let state = if failing {
            "failing"
        } else if overdue_since.is_some() {
            "overdue"
        } else if running {
            "running"
        } else if last_run.is_none() {
            "never-run"
        } else {
            "ok"
        };
        out.push(TaskStatus {
            job: job.name.clone(),
            kind: spec.kind,
            schedule: spec.schedule.written().to_string(),
            timezone: spec.timezone.name().to_string(),
            next_run: spec.schedule.next_after(now, spec.timezone),
            overdue: overdue_since.is_some(),
            overdue_since,
            failing,
            last_run,
            last_success,
            state,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Claim, Finish, NewRun, SqliteCatalog, Trigger};
    use chrono::TimeZone;
    use std::path::Path;

    const CONFIG: &str = r#"
timezone = "UTC"
overdue_margin = "30min"
[repository.r]
url = "/tmp/r"
[[job]]
name = "daily"
source = "/src"
repository = "r"
schedule = "0 2 * * *"
"#;

    fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, d, h, m, 0).unwrap()
    }

    async fn record(c: &SqliteCatalog, scheduled: DateTime<Utc>, status: RunStatus) {
        let Claim::Claimed(id) = c
            .claim(
                &NewRun {
                    job: "daily".into(),
                    kind: TaskKind::Backup,
                    scheduled_at: scheduled,
                    trigger: Trigger::Schedule,
                    owner: "h/1".into(),
                    started_at: scheduled,
                },
                scheduled,
            )
            .await
            .unwrap()
        else {
            panic!("claim")
        };
        c.finish(
            id,
            &Finish {
                status,
                finished_at: scheduled + TimeDelta::minutes(5),
                snapshot_id: None,
                bytes_added: None,
                error: None,
                notes: vec![],
            },
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn overdue_and_failing() {
        let config = Config::parse(CONFIG, Path::new("/etc/coffer.toml")).unwrap();
        let c = SqliteCatalog::in_memory().unwrap();
        // Never seen by a daemon: nothing to compare with.
        let s = &statuses(&config, &c, at(10, 12, 0)).await.unwrap()[0];
        assert_eq!((s.state, s.overdue), ("never-run", false));

        c.register_jobs(&["daily".into()], at(1, 12, 0))
            .await
            .unwrap();
        // Seen on the 1st at noon; the 2nd's 02:00 run is not 30 minutes late at 02:20...
        let s = &statuses(&config, &c, at(2, 2, 20)).await.unwrap()[0];
        assert!(!s.overdue, "{s:?}");
        // ...and is at 02:31.
        let s = &statuses(&config, &c, at(2, 2, 31)).await.unwrap()[0];
        assert_eq!((s.state, s.overdue_since), ("overdue", Some(at(2, 2, 0))));

        record(&c, at(2, 2, 0), RunStatus::Success).await;
        let s = &statuses(&config, &c, at(3, 1, 0)).await.unwrap()[0];
        assert_eq!(s.state, "ok");
        assert_eq!(s.next_run, Some(at(3, 2, 0)));
        // A day and a half later the 3rd's run is missing.
        let s = &statuses(&config, &c, at(3, 14, 0)).await.unwrap()[0];
        assert_eq!(s.overdue_since, Some(at(3, 2, 0)));

        record(&c, at(3, 2, 0), RunStatus::Failed).await;
        let s = &statuses(&config, &c, at(3, 14, 0)).await.unwrap()[0];
        assert!(s.failing && s.overdue, "{s:?}");
        assert_eq!(s.state, "failing");
        assert_eq!(
            s.last_success.as_ref().map(|r| r.scheduled_at),
            Some(at(2, 2, 0))
        );
    }
}
