//! `coffer forget`: apply a retention policy (`coffer_core::retention`) to every snapshot of the
//! repository, print each one as kept or removed with the rules that decided it, and delete the
//! removed manifests (unless `--dry-run`). Data is freed by a prune: with `--prune`, under the same
//! lock, right after (a dry run then shows what prune would do once the snapshots are gone);
//! every snapshot restores on its own, so removing any of them never breaks another.
//!
//! For `--max-size`, a snapshot's size is its `stats.bytes_added` (what its backup stored anew).
//! That under-estimates what the kept snapshots hold (data first stored by a removed snapshot and
//! still used by a kept one is not counted), so `--max-size` may leave the repository above the
//! cap, but never removes more than an exact count of unique bytes would. Computing exact unique
//! sizes needs every snapshot's trees, which is prune's work.

use crate::cli::{ForgetArgs, PolicyArgs};
use crate::context::Ctx;
use crate::output::{self, code, UsageError};
use anyhow::{Context as _, Result};
use chrono::{TimeZone, Utc};
use coffer_core::retention::{self, ByteSize, GroupBy, Plan, Policy, SnapshotMeta, Span};
use coffer_core::snapshot::Snapshot;
use coffer_core::{Open, Repository};
use std::collections::BTreeMap;
use std::fmt::Display;

/// Builds the policy from the flags; bad values are usage errors. `None`: no rule was given
/// (`--group-by` alone is not a rule).
pub(crate) fn policy_from(a: &PolicyArgs) -> Result<Option<Policy>> {
    let span = |flag: &str, v: &Option<String>| -> Result<Option<Span>> {
        v.as_deref()
            .map(|s| {
                s.parse::<Span>()
                    .map_err(|e| UsageError(format!("--{flag}: {e:#}")).into())
            })
            .transpose()
    };
    let policy = Policy {
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
        keep_within: span("keep-within", &a.keep_within)?,
        keep_within_hourly: span("keep-within-hourly", &a.keep_within_hourly)?,
        keep_within_daily: span("keep-within-daily", &a.keep_within_daily)?,
        keep_within_weekly: span("keep-within-weekly", &a.keep_within_weekly)?,
        keep_within_monthly: span("keep-within-monthly", &a.keep_within_monthly)?,
        keep_within_yearly: span("keep-within-yearly", &a.keep_within_yearly)?,
        keep_tags: a.keep_tags.clone(),
        min_keep: a.min_keep,
        max_keep: a.max_keep,
        max_size: a
            .max_size
            .as_deref()
            .map(|s| s.parse::<ByteSize>())
            .transpose()
            .map_err(|e| UsageError(format!("--max-size: {e:#}")))?,
        group_by: group_by(a)?.unwrap_or_default(),
    };
    policy
        .validate()
        .map_err(|e| UsageError(format!("{e:#}")))?;
    Ok((!policy.is_empty()).then_some(policy))
}

fn group_by(a: &PolicyArgs) -> Result<Option<GroupBy>> {
    a.group_by
        .as_deref()
        .map(|g| {
            g.parse()
                .map_err(|e| UsageError(format!("--group-by: {e:#}")).into())
        })
        .transpose()
}

/// The policy and time zone to apply: the flags', or else the repository's stored ones
/// (`--group-by` and `--timezone` still override); an error when there is neither.
async fn choose_policy(
    ctx: &Ctx,
    repo: &Repository<Open>,
    a: &PolicyArgs,
) -> Result<(Policy, Option<String>)> {
    if let Some(p) = policy_from(a)? {
        return Ok((p, a.timezone.clone()));
    }
    let stored = repo.load_settings().await?;
    let Some(mut p) = stored.settings.retention else {
        return Err(UsageError(
            "no retention policy given, so nothing would be removed: give at least one of \
             --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, \
             --keep-yearly, --keep-within[-hourly|-daily|-weekly|-monthly|-yearly], --keep-tag, \
             --max-keep or --max-size, or store a policy in the repository with \
             `coffer config set-retention`"
                .into(),
        )
        .into());
    };
    if let Some(g) = group_by(a)? {
        p.group_by = g;
    }
    if !ctx.global.quiet && !ctx.global.json {
        eprintln!(
            "coffer: applying the repository's retention policy (settings #{}; change it with \
             `coffer config set-retention`)",
            stored.sequence
        );
    }
    Ok((p, a.timezone.clone().or(stored.settings.timezone)))
}

/// The plan plus each snapshot's local time, computed in the chosen zone.
fn decide<T: TimeZone>(policy: &Policy, snaps: &[Snapshot], tz: &T) -> Result<(Plan, Vec<String>)>
where
    T::Offset: Display,
{
    let metas: Vec<SnapshotMeta> = snaps.iter().map(SnapshotMeta::from).collect();
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

/// Runs `forget`.
pub async fn run(ctx: &Ctx, a: ForgetArgs) -> Result<u8> {
    // Bad flags are usage errors before the repository is opened.
    policy_from(&a.policy)?;
    let prune_opts = if a.prune {
        Some(a.prune_tuning.options(a.dry_run)?)
    } else {
        None
    };
    let repo = ctx.open().await?;
    let (policy, tz) = choose_policy(ctx, &repo, &a.policy).await?;
    let tz = tz
        .as_deref()
        .map(retention::parse_timezone)
        .transpose()
        .map_err(|e| UsageError(format!("--timezone: {e:#}")))?;
    // A dry run changes nothing, so it does not need to exclude backups running meanwhile.
    let lock = repo
        .lock(
            !a.dry_run,
            if a.dry_run {
                "forget --dry-run"
            } else {
                "forget"
            },
        )
        .await?;
    let result = match forget(ctx, &repo, &policy, tz, a.dry_run, a.prune).await {
        Ok(done) => match prune_opts {
            Some(mut opts) => {
                // A dry run deleted nothing: prune as if the removed snapshots were gone.
                opts.ignore_snapshots = done.removed.clone();
                match repo.load_index().await {
                    Ok(repo) => crate::commands::prune::prune(&repo, &opts)
                        .await
                        .map(|r| (done, Some((r, opts)))),
                    Err(e) => Err(e.into()),
                }
            }
            None => Ok((done, None)),
        },
        Err(e) => Err(e),
    };
    lock.release().await.ok();
    let (done, pruned) = result?;
    if ctx.global.json {
        match &pruned {
            // With --prune, one document holds both.
            Some((r, opts)) => output::print_json(&serde_json::json!({
                "snapshots": done.rows,
                "prune": crate::commands::prune::json(r, opts),
            })),
            None => output::print_json(&done.rows),
        }
    } else if let (Some((r, opts)), false) = (&pruned, ctx.global.quiet) {
        println!();
        crate::commands::prune::print_text(r, opts);
    }
    Ok(code::OK)
}

/// What `forget` decided: the JSON rows, and the snapshots removed (or that would be).
struct Forgotten {
    rows: Vec<serde_json::Value>,
    removed: Vec<coffer_core::Id>,
}

async fn forget(
    ctx: &Ctx,
    repo: &Repository<Open>,
    policy: &Policy,
    tz: Option<retention::Tz>,
    dry_run: bool,
    pruning: bool,
) -> Result<Forgotten> {
    let snaps = repo.list_snapshots().await?;
    let (plan, times) = match tz {
        Some(tz) => decide(policy, &snaps, &tz)?,
        None => decide(policy, &snaps, &chrono::Local)?,
    };
    let zone = tz.map_or_else(|| "this machine's time zone".to_string(), |t| t.to_string());

    if !ctx.global.quiet {
        for n in &plan.notes {
            eprintln!("coffer: note: {n}");
        }
    }
    let mut rows = Vec::new();
    if ctx.global.json {
        rows = snaps
            .iter()
            .zip(&plan.decisions)
            .map(|(s, d)| {
                serde_json::json!({
                    "id": s.id,
                    "time": s.time,
                    "hostname": s.hostname,
                    "source": SnapshotMeta::from(s).source,
                    "tags": s.tags,
                    "group": d.group,
                    "keep": d.keep,
                    "reasons": d.reasons,
                    "removed_by": d.removed_by,
                    "size_estimate": s.stats.bytes_added,
                })
            })
            .collect();
    } else if !ctx.global.quiet {
        print_text(policy, &zone, &snaps, &plan, &times, dry_run, pruning);
    }

    let removed = plan.removed();
    if !dry_run {
        for (n, id) in removed.iter().enumerate() {
            repo.delete_snapshot(id).await.with_context(|| {
                format!(
                    "deleting snapshot {} ({n} of {} deleted before it)",
                    id.short(),
                    removed.len()
                )
            })?;
        }
    }
    Ok(Forgotten { rows, removed })
}

fn print_text(
    policy: &Policy,
    zone: &str,
    snaps: &[Snapshot],
    plan: &Plan,
    times: &[String],
    dry_run: bool,
    pruning: bool,
) {
    println!("policy: {policy} (time zone: {zone})");
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, d) in plan.decisions.iter().enumerate() {
        groups.entry(d.group.to_string()).or_default().push(i);
    }
    for (key, members) in &groups {
        let kept = members.iter().filter(|&&i| plan.decisions[i].keep).count();
        println!("\n{key}: keep {kept}, remove {}", members.len() - kept);
        // Oldest first, as `snapshots` lists them (the input is sorted that way).
        for &i in members {
            let d = &plan.decisions[i];
            let mut why = d.reasons.join(", ");
            if let Some(r) = &d.removed_by {
                why = format!("removed by {r} (matched: {why})");
            }
            let line = format!(
                "  {:<6}  {}  {}  {}",
                if d.keep { "keep" } else { "remove" },
                snaps[i].id.short(),
                times[i],
                why
            );
            println!("{}", line.trim_end());
        }
    }
    if policy.max_size.is_some() {
        println!(
            "\nestimated size of the kept snapshots: {} of {} (from each snapshot's added bytes)",
            output::size(plan.size_after),
            output::size(plan.size_before)
        );
    }
    let removed = plan.decisions.iter().filter(|d| !d.keep).count();
    let total = plan.decisions.len();
    if dry_run {
        println!("\ndry run: would remove {removed} of {total} snapshots");
    } else if removed > 0 {
        println!(
            "\nremoved {removed} of {total} snapshots; {}",
            if pruning {
                "prune frees their data:"
            } else {
                "their data stays until a prune frees it"
            }
        );
    } else {
        println!("\nremoved no snapshot ({total} kept)");
    }
}
