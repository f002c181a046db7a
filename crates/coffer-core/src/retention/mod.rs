//! Retention policies: which snapshots `forget` keeps, decided by one pure function, [`apply`],
//! from the snapshots' metadata, a [`Policy`], the current time and a time zone.
//!
//! # Semantics
//!
//! Snapshots are split into groups ([`GroupBy`]: by host and source unless configured), and each
//! group is ordered newest first (equal times: the larger id counts as newer, as for `latest`).
//! The keep rules are restic's:
//!
//! - `keep_last N`: the N newest snapshots.
//! - `keep_hourly/daily/weekly/monthly/yearly N`: walking from the newest, the first (newest)
//!   snapshot of each hour/day/week/month/year, for the N newest buckets that hold a snapshot;
//!   `-1` means every bucket. As in restic (0.17 and later), while a rule still has a count left
//!   the group's oldest snapshot is kept too even if its bucket already has a newer one (reason
//!   `oldest daily 3/7`): a young history keeps its beginning.
//! - `keep_within D`: every snapshot strictly newer than the group's newest snapshot minus D.
//! - `keep_within_hourly/daily/weekly/monthly/yearly D`: among those, the newest of each bucket.
//! - `keep_tags`: every snapshot that carries one of the listed tags; an entry `a,b` needs both.
//!
//! A snapshot is kept when any rule keeps it. A policy without keep rules keeps everything
//! (reason `all (no keep rule)`); `coffer forget` refuses an empty policy rather than do nothing.
//! Then this product's limits apply, in this order:
//!
//! 1. `max_keep N` (per group): while more than N are kept, the oldest kept one is removed.
//! 2. `min_keep N` (per group): while fewer than N are kept, the newest removed one is kept
//!    again. `min_keep` must not exceed `max_keep`, so the two never fight.
//! 3. `max_size S` (whole input): while the kept snapshots' sizes add up to more than S, the
//!    oldest kept snapshot of all groups is removed, skipping groups that are down to
//!    `min_keep` snapshots (or to one snapshot when `min_keep` is not set: a size cap never
//!    empties a group). If the cap cannot be met, a note says so.
//!
//! # Time
//!
//! **Durations are measured from the group's newest snapshot, not from now** (restic's choice):
//! a client that stopped backing up for a month does not lose its `keep_within 7d` history
//! when forget runs. `now` only serves to ignore snapshots dated in the future when finding that
//! newest snapshot. Durations ([`Span`], written `30d`, `1y2mo`, `2w3d4h`; months are `mo`, a bare
//! `m` is refused) are calendar durations: years, months, weeks and days are
//! subtracted from the wall-clock time in the policy's time zone (a day across a daylight-saving
//! change is 23 or 25 hours; a month back from March 31 is the last day of February, so
//! `2024-02-29` minus `1y` is `2023-02-28`), hours are exact hours. A wall-clock time that does
//! not exist (skipped by a spring-forward change) is read with the offset in force before the
//! gap, which moves it forward by the gap; an ambiguous one (repeated by a fall-back change)
//! takes the earlier instant, which keeps more.
//!
//! Buckets are computed from the wall-clock time in the time zone given to [`apply`]: days,
//! months and years are local calendar ones (the 23- and 25-hour days of daylight-saving changes
//! are one day each; February 29 is a day like any other), weeks are ISO 8601 weeks (Monday to
//! Sunday, numbered within the ISO week-year, so 2024-12-30 is in week 2025-W01), and hours are
//! local hours, the hour repeated by a fall-back change counting as two hours (02:30 CEST and
//! 02:30 CET are an hour apart, so they are two hourly buckets).

//!
//! # Files
//!
//! `spans` (calendar spans, their subtraction, buckets), `grouping` ([`GroupBy`], [`GroupKey`]),
//! `policy` ([`Policy`], [`ByteSize`]) and `apply` ([`apply`], [`Plan`], [`Decision`]); this
//! module re-exports what they make public.

mod apply;
mod grouping;
mod policy;
mod spans;

pub use apply::{apply, Decision, Plan, SnapshotMeta};
pub use grouping::{GroupBy, GroupKey};
pub use policy::{ByteSize, Policy};
pub use spans::Span;

use crate::error::{Error, Result};

/// IANA time zones (`Europe/Berlin`, `UTC`), for [`apply`] and [`parse_timezone`].
pub use chrono_tz::Tz;

/// Parses an IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz> {
    name.parse().map_err(|_| {
        Error::invalid(format!(
            "{name:?} is not a time zone: use an IANA name such as Europe/Berlin or UTC"
        ))
    })
}
