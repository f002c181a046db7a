//! Applying a policy: [`apply`] decides, group by group, which snapshots are kept and why
//! ([`Decision`], [`Plan`]), from what it needs to know of each snapshot ([`SnapshotMeta`]).

use super::policy::{counted, tag_reason, within_buckets};
use super::spans::{bucket, Span, Unit};
use super::{GroupKey, Policy};
use crate::error::Result;
use crate::id::Id;
use crate::snapshot::Snapshot;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the policy needs to know of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The snapshot's id.
    pub id: Id,
    /// The snapshot's time.
    pub time: DateTime<Utc>,
    /// The host it was taken on.
    pub hostname: String,
    /// The source, as one string (a file tree's paths joined by `, `; a database's location).
    pub source: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// An estimate of the stored bytes this snapshot alone holds (for `max_size`).
    pub size: u64,
}

impl From<&Snapshot> for SnapshotMeta {
    /// Takes `stats.bytes_added` (the bytes its backup stored anew) as the size: see
    /// [`Policy::max_size`] and the `forget` docs for why this is an estimate.
    fn from(s: &Snapshot) -> Self {
        SnapshotMeta {
            id: s.id,
            time: s.time,
            hostname: s.hostname.clone(),
            source: if s.source.paths.is_empty() {
                s.source.location.clone()
            } else {
                s.source.paths.join(", ")
            },
            tags: s.tags.clone(),
            size: s.stats.bytes_added,
        }
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The snapshot's id.
    pub id: Id,
    /// Its group.
    pub group: GroupKey,
    /// Whether it is kept.
    pub keep: bool,
    /// The rules that matched it, e.g. `daily 1/7`, `within 30d`, `tag nightly`,
    /// `oldest yearly 2/3`, `min_keep 3`. Empty for a snapshot no rule kept.
    pub reasons: Vec<String>,
    /// For a snapshot that rules kept but a limit removed: `max_keep N` or `max_size S`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_by: Option<String>,
}

/// The outcome of [`apply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// One decision per input snapshot, in input order.
    pub decisions: Vec<Decision>,
    /// The sizes of all input snapshots, added up.
    pub size_before: u64,
    /// The sizes of the kept snapshots, added up.
    pub size_after: u64,
    /// Things the user should know: a size cap that cannot be met, a group that loses every
    /// snapshot, snapshots dated in the future.
    pub notes: Vec<String>,
}

impl Plan {
    /// The ids of the snapshots to remove, in input order.
    pub fn removed(&self) -> Vec<Id> {
        self.decisions
            .iter()
            .filter(|d| !d.keep)
            .map(|d| d.id)
            .collect()
    }
}

/// `1.50 GiB`-style sizes for notes.
fn approx_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

fn count_reason(name: &str, used: i32, count: i32) -> String {
    if count < 0 {
        name.to_string()
    } else {
        format!("{name} {used}/{count}")
    }
}

/// Decides which snapshots to keep. `now` only serves to ignore future-dated snapshots when
/// finding each group's newest; `tz` is the zone in which hours, days, weeks, months and years
/// are counted and durations subtracted (see the module docs). Fails if the policy is invalid
/// ([`Policy::validate`]). An empty policy keeps everything.
pub fn apply<T: TimeZone>(
    policy: &Policy,
    snaps: &[SnapshotMeta],
    now: DateTime<Utc>,
    tz: &T,
) -> Result<Plan> {
    policy.validate()?;
    let mut decisions: Vec<Decision> = snaps
        .iter()
        .map(|s| Decision {
            id: s.id,
            group: policy.group_by.key(s),
            keep: false,
            reasons: Vec::new(),
            removed_by: None,
        })
        .collect();
    let mut notes = Vec::new();

    // Groups, each ordered newest first.
    let mut groups: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    for (i, d) in decisions.iter().enumerate() {
        groups.entry(d.group.clone()).or_default().push(i);
    }
    let newer_first =
        |a: &usize, b: &usize| (snaps[*b].time, snaps[*b].id).cmp(&(snaps[*a].time, snaps[*a].id));
    for members in groups.values_mut() {
        members.sort_by(newer_first);
    }

    let future = snaps.iter().filter(|s| s.time > now).count();
    if future > 0 && policy.has_keep_rules() {
        notes.push(format!(
            "{future} snapshot(s) are dated after now ({}); durations are measured from the \
             newest snapshot that is not",
            now.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }

    for members in groups.values() {
        keep_by_rules(policy, snaps, members, now, tz, &mut decisions);
        let kept = |ds: &[Decision]| members.iter().filter(|&&i| ds[i].keep).count();
        if let Some(max) = policy.max_keep {
            let mut n = kept(&decisions);
            for &i in members.iter().rev() {
                if n <= max as usize {
                    break;
                }
                if decisions[i].keep {
                    decisions[i].keep = false;
                    decisions[i].removed_by = Some(format!("max_keep {max}"));
                    n -= 1;
                }
            }
        }
        if let Some(min) = policy.min_keep {
            let mut n = kept(&decisions);
            for &i in members {
                if n >= min as usize {
                    break;
                }
                if !decisions[i].keep {
                    decisions[i].keep = true;
                    decisions[i].reasons.push(format!("min_keep {min}"));
                    n += 1;
                }
            }
        }
    }

    let size_before: u64 = snaps.iter().map(|s| s.size).sum();
    let kept_size = |ds: &[Decision]| -> u64 {
        ds.iter()
            .zip(snaps)
            .filter(|(d, _)| d.keep)
            .map(|(_, s)| s.size)
            .sum()
    };
    if let Some(cap) = policy.max_size {
        let mut total = kept_size(&decisions);
        if total > cap.0 {
            let floor = policy.min_keep.unwrap_or(1).max(1) as usize;
            let mut left: BTreeMap<GroupKey, usize> = groups
                .iter()
                .map(|(k, m)| (k.clone(), m.iter().filter(|&&i| decisions[i].keep).count()))
                .collect();
            let mut oldest_first: Vec<usize> = (0..snaps.len()).collect();
            oldest_first.sort_by(|a, b| newer_first(b, a));
            for i in oldest_first {
                if total <= cap.0 {
                    break;
                }
                let d = &mut decisions[i];
                let n = left.get_mut(&d.group).expect("every group is counted");
                if d.keep && *n > floor {
                    d.keep = false;
                    d.removed_by = Some(format!("max_size {cap}"));
                    *n -= 1;
                    total -= snaps[i].size;
                }
            }
            if total > cap.0 {
                notes.push(format!(
                    "max_size {cap} cannot be met: the kept snapshots hold about {}, and every \
                     group is down to {floor} snapshot(s)",
                    approx_size(total)
                ));
            }
        }
    }

    for (key, members) in &groups {
        if members.iter().all(|&i| !decisions[i].keep) {
            notes.push(format!(
                "every snapshot of group {key} is removed (set min_keep to keep some)"
            ));
        }
    }

    let size_after = kept_size(&decisions);
    Ok(Plan {
        decisions,
        size_before,
        size_after,
        notes,
    })
}

/// The restic pass over one group (`members`: newest first): sets `keep` and `reasons`.
fn keep_by_rules<T: TimeZone>(
    policy: &Policy,
    snaps: &[SnapshotMeta],
    members: &[usize],
    now: DateTime<Utc>,
    tz: &T,
    decisions: &mut [Decision],
) {
    if !policy.has_keep_rules() {
        for &i in members {
            decisions[i].keep = true;
            decisions[i].reasons.push("all (no keep rule)".into());
        }
        return;
    }
    // The newest snapshot not dated in the future (or the newest of all, if all are).
    let latest = members
        .iter()
        .map(|&i| snaps[i].time)
        .find(|t| *t <= now)
        .or_else(|| members.first().map(|&i| snaps[i].time));
    let Some(latest) = latest else { return };
    // Each duration's cutoff; a `None` cutoff is before any representable time (all is within).
    let within = |c: Option<DateTime<Utc>>, t: DateTime<Utc>| c.is_none_or(|c| t > c);
    let keep_within = policy.keep_within.map(|s| (s, s.before(latest, tz)));
    struct BucketRule {
        name: &'static str,
        span: Span,
        unit: Unit,
        cutoff: Option<DateTime<Utc>>,
        last: Option<[i64; 5]>,
    }
    let mut bucket_rules: Vec<BucketRule> = within_buckets(policy)
        .into_iter()
        .filter_map(|(name, span, unit)| {
            span.map(|span| BucketRule {
                name,
                span,
                unit,
                cutoff: span.before(latest, tz),
                last: None,
            })
        })
        .collect();

    struct Counter {
        name: &'static str,
        count: i32,
        left: i32,
        unit: Option<Unit>,
        last: Option<[i64; 5]>,
    }
    let mut counters: Vec<Counter> = counted(policy)
        .into_iter()
        .filter_map(|(name, n, unit)| match n {
            Some(n) if n != 0 => Some(Counter {
                name,
                count: n,
                left: n,
                unit,
                last: None,
            }),
            _ => None,
        })
        .collect();

    for (nr, &i) in members.iter().enumerate() {
        let s = &snaps[i];
        let oldest = nr + 1 == members.len();
        let mut reasons = Vec::new();
        for spec in &policy.keep_tags {
            if spec
                .split(',')
                .all(|t| s.tags.iter().any(|x| x == t.trim()))
            {
                reasons.push(tag_reason(spec));
            }
        }
        if let Some((span, cutoff)) = keep_within {
            if within(cutoff, s.time) {
                reasons.push(format!("within {span}"));
            }
        }
        for c in counters.iter_mut() {
            if c.left == 0 {
                continue;
            }
            let val = match c.unit {
                Some(u) => bucket(u, s.time, tz),
                None => [nr as i64, 0, 0, 0, 0],
            };
            let repeat = c.last == Some(val);
            if !repeat || oldest {
                c.last = Some(val);
                if c.left > 0 {
                    c.left -= 1;
                }
                let used = c.count - c.left;
                let r = count_reason(c.name, used, c.count);
                reasons.push(if repeat { format!("oldest {r}") } else { r });
            }
        }
        for b in bucket_rules.iter_mut() {
            if within(b.cutoff, s.time) {
                let val = bucket(b.unit, s.time, tz);
                if b.last != Some(val) {
                    b.last = Some(val);
                    reasons.push(format!("{} within {}", b.name, b.span));
                }
            }
        }
        decisions[i].keep = !reasons.is_empty();
        decisions[i].reasons = reasons;
    }
}
