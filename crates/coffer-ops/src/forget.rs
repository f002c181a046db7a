//! Applying a retention policy: every snapshot of the repository kept or removed with the rules
//! that decided it, the removed manifests deleted (unless a dry run), and, when asked, a prune
//! under the same exclusive lock right after. Every snapshot restores on its own, so removing
//! any of them never breaks another.
//!
//! For `max_size`, a snapshot's size is its `stats.bytes_added` (what its backup stored anew):
//! an under-estimate of what kept snapshots hold, so the cap may be exceeded, but never more
//! is removed than an exact count would remove.

use crate::progress::{Phase, Progress};
use crate::repo::{with_lock, LockMode, RepoSpec};
use crate::CancellationToken;
use chrono::{TimeZone, Utc};
use coffer_core::prune::{PruneOptions, PruneReport};
use coffer_core::retention::{self, GroupBy, Plan, Policy, SnapshotMeta};
use coffer_core::snapshot::Snapshot;
use coffer_core::{Error, Id, Open, Repository, Result};
use serde::Serialize;
use std::fmt::Display;

/// A forget.
#[derive(Debug, Clone, Default)]
pub struct Forget {
    /// The policy (`None`: the one stored in the repository's settings).
    pub policy: Option<Policy>,
    /// Overrides the grouping of the stored policy.
    pub group_by: Option<GroupBy>,
    /// The IANA zone in which hours, days... are counted (default: the stored one, else this
    /// machine's).
    pub timezone: Option<String>,
    /// Decide and report, delete nothing.
    pub dry_run: bool,
    /// Then prune with these options (a dry run prunes as if the removed snapshots were gone).
    pub prune: Option<PruneOptions>,
}

/// What a forget decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    /// The policy applied.
    pub policy: Policy,
    /// The zone it counted in (a name, or "this machine's time zone").
    pub zone: String,
    /// The settings sequence number, when the stored policy was applied.
    pub stored_settings: Option<u64>,
    /// Every snapshot considered, oldest first.
    pub snapshots: Vec<Snapshot>,
    /// Each snapshot's time in that zone (`2024-05-01 02:00:00 +02:00`), in the same order.
    pub local_times: Vec<String>,
    /// The decisions, in the same order.
    pub plan: Plan,
    /// The snapshots removed (or that a dry run would remove).
    pub removed: Vec<Id>,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// The prune that followed.
    pub prune: Option<PruneReport>,
}

/// The policy and zone to apply: the given ones, or else the repository's stored ones (the
/// given grouping and zone still win); an error when there is neither.
async fn choose_policy(
    repo: &Repository<Open>,
    f: &Forget,
) -> Result<(Policy, Option<String>, Option<u64>)> {
    if let Some(p) = &f.policy {
        return Ok((p.clone(), f.timezone.clone(), None));
    }
    let stored = repo.load_settings().await?;
    let Some(mut p) = stored.settings.retention else {
        return Err(Error::usage(
            "no retention policy given, so nothing would be removed: give at least one of \
             --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, \
             --keep-yearly, --keep-within[-hourly|-daily|-weekly|-monthly|-yearly], --keep-tag, \
             --max-keep or --max-size, or store a policy in the repository with \
             `coffer config set-retention`",
        ));
    };
    if let Some(g) = &f.group_by {
        p.group_by = *g;
    }
    let zone = f.timezone.clone().or(stored.settings.timezone);
    Ok((p, zone, Some(stored.sequence)))
}

/// What the policy sees of a snapshot. Safety backups (a restore's copy of the target it was
/// about to overwrite) are their own source, so that they never count as the newest backups of
/// the database they were taken of: `keep_last = 1` after a `--clean` restore keeps the backup
/// restored and the newest safety backup, not the safety backup alone.
fn meta(s: &Snapshot) -> SnapshotMeta {
    let mut m = SnapshotMeta::from(s);
    if crate::select::is_safety(s) {
        m.source = format!("{} (safety backups)", m.source);
    }
    m
}

/// The plan plus each snapshot's local time, computed in `tz`.
fn decide<T: TimeZone>(policy: &Policy, snaps: &[Snapshot], tz: &T) -> Result<(Plan, Vec<String>)>
where
    T::Offset: Display,
{
    let metas: Vec<SnapshotMeta> = snaps.iter().map(meta).collect();
    let plan = retention::apply(policy, &metas, Utc::now(), tz)?;
    let times = snaps
        .iter()
        .map(|s| {
            s.time
                .with_timezone(tz)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        })
        .collect();
    Ok((plan, times))
}

/// Applies the policy to the repository of `spec` under the exclusive lock (shared for a dry
/// run, which changes nothing), then prunes when asked. Once `cancel` fires no further snapshot
/// is deleted and no prune starts.
pub async fn forget(
    spec: &RepoSpec,
    f: &Forget,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<ForgetReport> {
    progress.phase(Phase::Opening);
    let repo = spec.open().await?;
    let (policy, zone, stored) = choose_policy(&repo, f).await?;
    if let Some(seq) = stored {
        progress.note(format!(
            "applying the repository's retention policy (settings #{seq}; change it with \
             `coffer config set-retention`)"
        ));
    }
    let tz = zone
        .as_deref()
        .map(retention::parse_timezone)
        .transpose()
        .map_err(|e| Error::usage(format!("--timezone: {e:#}")))?;
    let (mode, command) = if f.dry_run {
        (LockMode::Shared, "forget --dry-run")
    } else {
        (LockMode::Exclusive, "forget")
    };
    let repo = &repo;
    let policy = &policy;
    with_lock(repo, mode, command, || async move {
        progress.phase(Phase::Forgetting);
        let snapshots = repo.list_snapshots().await?;
        let (plan, local_times) = match tz {
            Some(tz) => decide(policy, &snapshots, &tz)?,
            None => decide(policy, &snapshots, &chrono::Local)?,
        };
        let removed = plan.removed();
        if !f.dry_run {
            for (n, id) in removed.iter().enumerate() {
                if cancel.is_cancelled() {
                    return Err(crate::interrupted(&format!(
                        "forget ({n} of {} snapshots deleted)",
                        removed.len()
                    )));
                }
                repo.delete_snapshot(id).await.map_err(|e| {
                    e.context(format!(
                        "deleting snapshot {} ({n} of {} deleted before it)",
                        id.short(),
                        removed.len()
                    ))
                })?;
            }
        }
        let prune = match &f.prune {
            Some(opts) if !cancel.is_cancelled() => {
                let mut opts = opts.clone();
                // A dry run deleted nothing: prune as if the removed snapshots were gone.
                opts.ignore_snapshots = removed.clone();
                opts.dry_run = f.dry_run;
                progress.phase(Phase::Pruning);
                let indexed = repo.clone().load_index().await?;
                Some(indexed.prune(&opts).await?)
            }
            Some(_) => return Err(crate::interrupted("forget --prune (before its prune)")),
            None => None,
        };
        Ok(ForgetReport {
            policy: policy.clone(),
            zone: tz.map_or_else(|| "this machine's time zone".to_string(), |t| t.to_string()),
            stored_settings: stored,
            snapshots,
            local_times,
            plan,
            removed,
            dry_run: f.dry_run,
            prune,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_snapshot as snap;

    #[test]
    fn a_safety_backup_never_counts_as_the_newest_backup_of_its_database() {
        let backup = snap(100, &[]);
        let safety = snap(200, &[crate::select::SAFETY_TAG]);
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let (plan, _) = decide(&policy, &[backup.clone(), safety.clone()], &Utc).unwrap();
        let kept: Vec<_> = plan
            .decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.id)
            .collect();
        assert_eq!(kept, vec![backup.id, safety.id]);
    }
}
