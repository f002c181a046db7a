//! `coffer forget`: apply a retention policy (`coffer_core::retention`) to every snapshot of the
//! repository, print each one as kept or removed with the rules that decided it, and delete the
//! removed manifests (unless `--dry-run`); with `--prune`, prune right after under the same lock.
//! The work is `coffer_ops::forget`; this file parses the policy flags and prints.

use crate::context::Ctx;
use crate::output::{self, code, UsageError};
use anyhow::Result;
use clap::Args;
use coffer_core::retention::{ByteSize, GroupBy, Plan, Policy, Span};
use coffer_core::snapshot::Snapshot;
use coffer_ops::forget::{Forget, ForgetReport};
use std::collections::BTreeMap;

/// A retention policy's flags (see `coffer_core::retention` for the exact rules), shared by
/// `forget` and `config set-retention`.
#[derive(Args, Debug, Clone, Default)]
pub struct PolicyArgs {
    /// Keep the N newest snapshots (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_last: Option<i32>,
    /// Keep the newest snapshot of each of the N newest hours that have one (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_hourly: Option<i32>,
    /// Keep the newest snapshot of each of the N newest days that have one (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_daily: Option<i32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have one (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_weekly: Option<i32>,
    /// Keep the newest snapshot of each of the N newest months that have one (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_monthly: Option<i32>,
    /// Keep the newest snapshot of each of the N newest years that have one (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_yearly: Option<i32>,
    /// Keep every snapshot within this of the group's newest (30d, 1y2mo, 2w3d4h; mo for months).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep the newest snapshot of each hour within this of the group's newest.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_hourly: Option<String>,
    /// Keep the newest snapshot of each day within this of the group's newest.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_daily: Option<String>,
    /// Keep the newest snapshot of each ISO week within this of the group's newest.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_weekly: Option<String>,
    /// Keep the newest snapshot of each month within this of the group's newest.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_monthly: Option<String>,
    /// Keep the newest snapshot of each year within this of the group's newest.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_yearly: Option<String>,
    /// Keep snapshots with this tag (repeatable: any of them; `a,b` needs both).
    #[arg(long = "keep-tag", value_name = "TAG[,TAG]")]
    pub keep_tags: Vec<String>,
    /// Never keep fewer than N snapshots per group (the newest removed ones are kept again).
    #[arg(long, value_name = "N")]
    pub min_keep: Option<u32>,
    /// Never keep more than N snapshots per group (the oldest go first).
    #[arg(long, value_name = "N")]
    pub max_keep: Option<u32>,
    /// Remove the oldest snapshots until the kept ones hold at most SIZE (estimated from each
    /// snapshot's added bytes), never below --min-keep.
    #[arg(long, value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Group snapshots by these fields: host, source, tags (default host,source).
    #[arg(long, value_name = "FIELDS")]
    pub group_by: Option<String>,
    /// Count hours, days, weeks, months and years in this IANA time zone (default: this
    /// machine's).
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
}

/// `forget`: apply a retention policy (the flags, or the repository's stored policy).
#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// The policy (none given: the repository's, set by `coffer config set-retention`).
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Only print what would be removed.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Then prune: delete the data no remaining snapshot references.
    #[arg(long)]
    pub prune: bool,
    /// Prune tuning (with --prune).
    #[command(flatten)]
    pub prune_tuning: crate::commands::prune::PruneTuning,
}

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

/// Runs `forget`.
pub async fn run(ctx: &Ctx, a: ForgetArgs) -> Result<u8> {
    // Bad flags are usage errors before the repository is opened.
    let policy = policy_from(&a.policy)?;
    let prune = if a.prune {
        Some(a.prune_tuning.options(a.dry_run)?)
    } else {
        None
    };
    let f = Forget {
        policy,
        group_by: group_by(&a.policy)?,
        timezone: a.policy.timezone.clone(),
        dry_run: a.dry_run,
        prune,
    };
    let display = crate::commands::progress::display(ctx);
    let sigint = crate::commands::progress::cancel_on_sigint(
        "interrupted: forget stops before its next deletion",
    );
    let r = coffer_ops::forget::forget(&ctx.spec()?, &f, &*display, &sigint.token).await;
    display.finish();
    let r = r?;
    if !ctx.global.quiet {
        for n in &r.plan.notes {
            eprintln!("coffer: note: {n}");
        }
    }
    if ctx.global.json {
        let rows = json_rows(&r);
        match (&r.prune, &f.prune) {
            // With --prune, one document holds both.
            (Some(p), Some(opts)) => output::print_json(&serde_json::json!({
                "snapshots": rows,
                "prune": crate::commands::prune::json(p, opts),
            })),
            _ => output::print_json(&rows),
        }
    } else if !ctx.global.quiet {
        print_text(
            &r.policy,
            &r.zone,
            &r.snapshots,
            &r.plan,
            &r.local_times,
            r.dry_run,
            f.prune.is_some(),
        );
        if let (Some(p), Some(opts)) = (&r.prune, &f.prune) {
            println!();
            crate::commands::prune::print_text(p, opts);
        }
    }
    Ok(code::OK)
}

/// One JSON row per snapshot: what was decided and why.
fn json_rows(r: &ForgetReport) -> Vec<serde_json::Value> {
    r.snapshots
        .iter()
        .zip(&r.plan.decisions)
        .map(|(s, d)| {
            serde_json::json!({
                "id": s.id,
                "time": s.time,
                "hostname": s.hostname,
                "source": coffer_core::retention::SnapshotMeta::from(s).source,
                "tags": s.tags,
                "group": d.group,
                "keep": d.keep,
                "reasons": d.reasons,
                "removed_by": d.removed_by,
                "size_estimate": s.stats.bytes_added,
            })
        })
        .collect()
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
