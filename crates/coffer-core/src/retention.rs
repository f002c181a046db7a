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
//! newest snapshot. Durations ([`Span`]) are calendar durations: years, months, weeks and days are
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

use crate::error::{Error, Result};
use crate::id::Id;
use crate::snapshot::Snapshot;
use chrono::{
    DateTime, Datelike, Days, LocalResult, Months, NaiveDateTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc,
};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// IANA time zones (`Europe/Berlin`, `UTC`), for [`apply`] and [`parse_timezone`].
pub use chrono_tz::Tz;

/// A retention policy. Every field is optional; the TOML/JSON field names are the ones below,
/// so a config can embed it as
/// `retention = { keep_daily = 7, keep_weekly = 4, keep_monthly = 12, min_keep = 3 }`.
/// Unknown fields are rejected (a typo must not silently keep or delete snapshots).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Keep the N newest snapshots (-1: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<i32>,
    /// Keep the newest snapshot of each of the N newest hours that have one (-1: every hour).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<i32>,
    /// Keep the newest snapshot of each of the N newest days that have one (-1: every day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<i32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have one (-1: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<i32>,
    /// Keep the newest snapshot of each of the N newest months that have one (-1: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<i32>,
    /// Keep the newest snapshot of each of the N newest years that have one (-1: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<i32>,
    /// Keep every snapshot newer than the group's newest minus this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<Span>,
    /// Keep the newest snapshot of each hour within this of the group's newest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_hourly: Option<Span>,
    /// Keep the newest snapshot of each day within this of the group's newest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_daily: Option<Span>,
    /// Keep the newest snapshot of each ISO week within this of the group's newest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_weekly: Option<Span>,
    /// Keep the newest snapshot of each month within this of the group's newest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_monthly: Option<Span>,
    /// Keep the newest snapshot of each year within this of the group's newest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_yearly: Option<Span>,
    /// Keep snapshots that carry any of these tags; an entry `a,b` needs all of its tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keep_tags: Vec<String>,
    /// Never keep fewer than this many snapshots per group: re-keep the newest removed ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_keep: Option<u32>,
    /// Never keep more than this many snapshots per group: the oldest go first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_keep: Option<u32>,
    /// Remove the oldest snapshots until the kept ones' sizes add up to at most this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<ByteSize>,
    /// How snapshots are grouped (default `host,source`).
    #[serde(skip_serializing_if = "GroupBy::is_default")]
    pub group_by: GroupBy,
}

/// The counted rules in evaluation order: name, count, bucket unit (`None`: each snapshot).
fn counted(p: &Policy) -> [(&'static str, Option<i32>, Option<Unit>); 6] {
    [
        ("last", p.keep_last, None),
        ("hourly", p.keep_hourly, Some(Unit::Hour)),
        ("daily", p.keep_daily, Some(Unit::Day)),
        ("weekly", p.keep_weekly, Some(Unit::Week)),
        ("monthly", p.keep_monthly, Some(Unit::Month)),
        ("yearly", p.keep_yearly, Some(Unit::Year)),
    ]
}

/// The per-bucket duration rules in evaluation order.
fn within_buckets(p: &Policy) -> [(&'static str, Option<Span>, Unit); 5] {
    [
        ("hourly", p.keep_within_hourly, Unit::Hour),
        ("daily", p.keep_within_daily, Unit::Day),
        ("weekly", p.keep_within_weekly, Unit::Week),
        ("monthly", p.keep_within_monthly, Unit::Month),
        ("yearly", p.keep_within_yearly, Unit::Year),
    ]
}

impl Policy {
    /// Whether any keep rule (`keep_*`) is set. Without one, every snapshot is kept before the
    /// limits (`max_keep`, `max_size`) apply.
    pub fn has_keep_rules(&self) -> bool {
        counted(self)
            .iter()
            .any(|(_, n, _)| n.is_some_and(|n| n != 0))
            || self.keep_within.is_some()
            || within_buckets(self).iter().any(|(_, s, _)| s.is_some())
            || !self.keep_tags.is_empty()
    }

    /// Whether the policy can remove nothing at all: no keep rule and no `max_keep`/`max_size`.
    /// `forget` refuses such a policy instead of silently keeping everything.
    pub fn is_empty(&self) -> bool {
        !self.has_keep_rules() && self.max_keep.is_none() && self.max_size.is_none()
    }

    /// Checks the values: counts are -1 or more, durations are not zero, tags are not empty,
    /// `max_keep` is at least 1 and not below `min_keep`, `max_size` is more than 0.
    pub fn validate(&self) -> Result<()> {
        for (name, n, _) in counted(self) {
            if let Some(n) = n {
                if n < -1 {
                    return Err(Error::invalid(format!(
                        "keep_{name} is {n}: use a count, or -1 for unlimited"
                    )));
                }
            }
        }
        let spans = std::iter::once(("keep_within".to_string(), self.keep_within)).chain(
            within_buckets(self)
                .into_iter()
                .map(|(n, s, _)| (format!("keep_within_{n}"), s)),
        );
        for (name, s) in spans {
            if s.is_some_and(|s| s.is_zero()) {
                return Err(Error::invalid(format!(
                    "{name} is zero: give a duration such as 30d"
                )));
            }
        }
        for t in &self.keep_tags {
            if t.split(',').any(|p| p.trim().is_empty()) {
                return Err(Error::invalid(format!(
                    "keep_tags entry {t:?} has an empty tag"
                )));
            }
        }
        if self.max_keep == Some(0) {
            return Err(Error::invalid(
                "max_keep is 0, which would remove every snapshot: use 1 or more",
            ));
        }
        if let (Some(min), Some(max)) = (self.min_keep, self.max_keep) {
            if min > max {
                return Err(Error::invalid(format!(
                    "min_keep ({min}) is more than max_keep ({max})"
                )));
            }
        }
        if self.max_size.is_some_and(|s| s.0 == 0) {
            return Err(Error::invalid("max_size is 0: give a size such as 50GiB"));
        }
        Ok(())
    }
}

impl fmt::Display for Policy {
    /// A one-line summary in the words the reasons use, e.g.
    /// `daily 7, weekly 4, min_keep 3; grouped by host,source`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (name, n, _) in counted(self) {
            match n {
                Some(-1) => parts.push(format!("{name} all")),
                Some(n) if n > 0 => parts.push(format!("{name} {n}")),
                _ => {}
            }
        }
        if let Some(s) = self.keep_within {
            parts.push(format!("within {s}"));
        }
        for (name, s, _) in within_buckets(self) {
            if let Some(s) = s {
                parts.push(format!("{name} within {s}"));
            }
        }
        for t in &self.keep_tags {
            parts.push(tag_reason(t));
        }
        if let Some(n) = self.min_keep {
            parts.push(format!("min_keep {n}"));
        }
        if let Some(n) = self.max_keep {
            parts.push(format!("max_keep {n}"));
        }
        if let Some(s) = self.max_size {
            parts.push(format!("max_size {s}"));
        }
        if parts.is_empty() {
            f.write_str("empty policy")?;
        } else {
            f.write_str(&parts.join(", "))?;
        }
        write!(f, "; grouped by {}", self.group_by)
    }
}

fn tag_reason(spec: &str) -> String {
    if spec.contains(',') {
        format!("tags {spec}")
    } else {
        format!("tag {spec}")
    }
}

/// A calendar duration: years, months, weeks, days and hours, written like `30d`, `1y2m`,
/// `2w3d4h` (`m` is months, as in restic; spaces between parts are allowed). See the module
/// docs for how it is subtracted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Years (12 months each).
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Weeks (7 days each).
    pub weeks: u32,
    /// Calendar days.
    pub days: u32,
    /// Exact hours.
    pub hours: u32,
}

impl Span {
    /// Whether every part is zero.
    pub fn is_zero(&self) -> bool {
        *self == Span::default()
    }

    /// `latest` minus this span, computed on the wall clock of `tz`; `None` when that is before
    /// any representable time (then everything is within).
    pub fn before<T: TimeZone>(&self, latest: DateTime<Utc>, tz: &T) -> Option<DateTime<Utc>> {
        let months = self.years.checked_mul(12)?.checked_add(self.months)?;
        let days = u64::from(self.weeks) * 7 + u64::from(self.days);
        let shifted = if months == 0 && days == 0 {
            // No calendar part: do not round-trip through the wall clock, which would move a
            // time in a repeated (fall-back) hour to its first occurrence.
            latest
        } else {
            let local = latest.with_timezone(tz).naive_local();
            let date = local
                .date()
                .checked_sub_months(Months::new(months))?
                .checked_sub_days(Days::new(days))?;
            resolve_local(tz, date.and_time(local.time()))?
        };
        shifted.checked_sub_signed(TimeDelta::hours(i64::from(self.hours)))
    }
}

/// The instant a wall-clock time in `tz` stands for: the earlier one when it is ambiguous (a
/// fall-back change repeats it); when it does not exist (a spring-forward change skipped it), it
/// is read with the offset in force just before the gap, which moves it forward by the gap.
fn resolve_local<T: TimeZone>(tz: &T, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => {
            // Gaps are at most a day long; look back hour by hour for a time that exists.
            for back in 1..=48 {
                let earlier = naive.checked_sub_signed(TimeDelta::hours(back))?;
                if let Some(t) = tz.from_local_datetime(&earlier).latest() {
                    let offset = i64::from(t.offset().fix().local_minus_utc());
                    let utc = naive.checked_sub_signed(TimeDelta::seconds(offset))?;
                    return Some(utc.and_utc());
                }
            }
            None
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0d");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.weeks, 'w'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Span {
    type Err = Error;

    /// Parses `30d`, `1y2m`, `2w3d4h`, `1y 6m`: numbers each followed by a unit, `y` (years),
    /// `m` (months), `w` (weeks), `d` (days) or `h` (hours), each unit at most once.
    fn from_str(s: &str) -> Result<Span> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "{s:?} is not a duration ({why}): write it like 30d, 1y2m or 2w3d4h \
                 (y years, m months, w weeks, d days, h hours)"
            ))
        };
        let mut span = Span::default();
        let mut seen = String::new();
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad("it is empty"));
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad("a number is missing"));
            }
            let n: u32 = rest[..digits]
                .parse()
                .map_err(|_| bad("a number is too large"))?;
            rest = &rest[digits..];
            let unit = rest
                .chars()
                .next()
                .ok_or_else(|| bad("a unit is missing"))?;
            let slot = match unit.to_ascii_lowercase() {
                'y' => &mut span.years,
                'm' => &mut span.months,
                'w' => &mut span.weeks,
                'd' => &mut span.days,
                'h' => &mut span.hours,
                _ => return Err(bad(&format!("unknown unit {unit:?}"))),
            };
            if seen.contains(unit.to_ascii_lowercase()) {
                return Err(bad(&format!("the unit {unit:?} appears twice")));
            }
            seen.push(unit.to_ascii_lowercase());
            *slot = n;
            rest = rest[unit.len_utf8()..].trim_start();
        }
        if span.is_zero() {
            return Err(bad("it is zero"));
        }
        Ok(span)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A size in bytes, written as a number of bytes or with a unit: `500MiB`, `50G`, `1.5TiB`,
/// `200MB`. `K`, `M`, `G`, `T` and `KiB`..`TiB` are powers of 1024 (as in restic); `KB`..`TB` are
/// powers of 1000. In TOML either an integer (bytes) or such a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    /// The exact size with the largest binary unit that divides it (`50GiB`), else bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 5] = [
            ("PiB", 1 << 50),
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, mult) in UNITS {
            // `mult` is a power of two: it divides the size when the size has as many low zeros.
            if self.0 >= mult && self.0.trailing_zeros() >= mult.trailing_zeros() {
                return write!(f, "{}{name}", self.0 / mult);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = Error;

    fn from_str(s: &str) -> Result<ByteSize> {
        let bad = || {
            Error::invalid(format!(
                "{s:?} is not a size: write it like 500MiB, 50G, 1.5TiB or 200MB"
            ))
        };
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = (&t[..split], t[split..].trim());
        if num.is_empty() {
            return Err(bad());
        }
        let mult: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "p" | "pib" => 1 << 50,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            "pb" => 1_000_000_000_000_000,
            _ => return Err(bad()),
        };
        if let Ok(n) = num.parse::<u64>() {
            return n.checked_mul(mult).map(ByteSize).ok_or_else(bad);
        }
        let x: f64 = num.parse().map_err(|_| bad())?;
        let bytes = (x * mult as f64).round();
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes or a size such as \"50GiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Which snapshot fields make up a group; written `host,source` (the default), `host,source,tags`,
/// `host`, or the empty string for one group of everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by source (a file tree's paths, a database's location).
    pub source: bool,
    /// Group by the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            source: true,
            tags: false,
        }
    }
}

impl GroupBy {
    /// Whether this is the default, `host,source`.
    pub fn is_default(&self) -> bool {
        *self == GroupBy::default()
    }

    /// The group of one snapshot.
    pub fn key(&self, s: &SnapshotMeta) -> GroupKey {
        GroupKey {
            host: self.host.then(|| s.hostname.clone()),
            source: self.source.then(|| s.source.clone()),
            tags: self.tags.then(|| {
                let mut t = s.tags.clone();
                t.sort();
                t.dedup();
                t
            }),
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = [
            (self.host, "host"),
            (self.source, "source"),
            (self.tags, "tags"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        if parts.is_empty() {
            f.write_str("nothing (one group)")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

impl FromStr for GroupBy {
    type Err = Error;

    /// Parses a comma-separated list of `host`, `source` (alias `paths`) and `tags` (alias `tag`);
    /// the empty string means one group.
    fn from_str(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy {
            host: false,
            source: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" | "hostname" => g.host = true,
                "source" | "paths" | "path" => g.source = true,
                "tags" | "tag" => g.tags = true,
                other => {
                    return Err(Error::invalid(format!(
                        "cannot group by {other:?}: use host, source and/or tags, \
                         comma-separated (or \"\" for one group)"
                    )))
                }
            }
        }
        Ok(g)
    }
}

impl Serialize for GroupBy {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let parts: Vec<&str> = [
            (self.host, "host"),
            (self.source, "source"),
            (self.tags, "tags"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        s.serialize_str(&parts.join(","))
    }
}

impl<'de> Deserialize<'de> for GroupBy {
    /// Accepts `"host,source"` or `["host", "source"]`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GroupBy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"host,source,tags\" or a list of those words")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<GroupBy, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<GroupBy, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    parts.push(p);
                }
                parts.join(",").parse().map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// The group a snapshot belongs to: the fields [`GroupBy`] selects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey {
    /// The host, when grouping by host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The source, when grouping by source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The sorted tags, when grouping by tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl fmt::Display for GroupKey {
    /// `host=web1 source=/srv tags=[a,b]`, or `all snapshots` for the single group.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host={h}"));
        }
        if let Some(s) = &self.source {
            parts.push(format!("source={s}"));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags=[{}]", t.join(",")));
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

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

/// Parses an IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz> {
    name.parse().map_err(|_| {
        Error::invalid(format!(
            "{name:?} is not a time zone: use an IANA name such as Europe/Berlin or UTC"
        ))
    })
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// The bucket of `t` in `tz`. Hours carry the UTC offset so that the hour a fall-back change
/// repeats makes two buckets.
fn bucket<T: TimeZone>(unit: Unit, t: DateTime<Utc>, tz: &T) -> [i64; 5] {
    let l = t.with_timezone(tz);
    let (y, m, d) = (
        i64::from(l.year()),
        i64::from(l.month()),
        i64::from(l.day()),
    );
    match unit {
        Unit::Hour => [
            y,
            m,
            d,
            i64::from(l.hour()),
            i64::from(l.offset().fix().local_minus_utc()),
        ],
        Unit::Day => [y, m, d, 0, 0],
        Unit::Week => {
            let w = l.iso_week();
            [i64::from(w.year()), i64::from(w.week()), 0, 0, 0]
        }
        Unit::Month => [y, m, 0, 0, 0],
        Unit::Year => [y, 0, 0, 0, 0],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print() {
        let s: Span = "2w3d4h".parse().unwrap();
        assert_eq!(
            s,
            Span {
                weeks: 2,
                days: 3,
                hours: 4,
                ..Span::default()
            }
        );
        assert_eq!(s.to_string(), "2w3d4h");
        assert_eq!("1y 2m".parse::<Span>().unwrap().to_string(), "1y2m");
        assert_eq!("30d".parse::<Span>().unwrap().days, 30);
        for bad in ["", "d", "5", "5x", "0d", "1d1d", "-1d", "1.5d"] {
            assert!(bad.parse::<Span>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!("50GiB".parse::<ByteSize>().unwrap().0, 50 << 30);
        assert_eq!("50G".parse::<ByteSize>().unwrap().0, 50 << 30);
        assert_eq!("200MB".parse::<ByteSize>().unwrap().0, 200_000_000);
        assert_eq!("1.5 KiB".parse::<ByteSize>().unwrap().0, 1536);
        assert_eq!("123".parse::<ByteSize>().unwrap().0, 123);
        assert_eq!(ByteSize(50 << 30).to_string(), "50GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        for bad in ["", "GiB", "5 parsecs", "-1G", "1..5G"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn group_by_parses() {
        assert_eq!(
            "host,source".parse::<GroupBy>().unwrap(),
            GroupBy::default()
        );
        let g: GroupBy = "tags".parse().unwrap();
        assert!(g.tags && !g.host && !g.source);
        let none: GroupBy = "".parse().unwrap();
        assert_eq!(none.to_string(), "nothing (one group)");
        assert!("hosts".parse::<GroupBy>().is_err());
    }

    #[test]
    fn validation_rejects_nonsense() {
        let p = |f: fn(&mut Policy)| {
            let mut p = Policy::default();
            f(&mut p);
            p.validate()
        };
        assert!(p(|p| p.keep_daily = Some(-2)).is_err());
        assert!(p(|p| p.keep_daily = Some(-1)).is_ok());
        assert!(p(|p| p.max_keep = Some(0)).is_err());
        assert!(p(|p| {
            p.min_keep = Some(5);
            p.max_keep = Some(3)
        })
        .is_err());
        assert!(p(|p| p.max_size = Some(ByteSize(0))).is_err());
        assert!(p(|p| p.keep_tags = vec!["a,".into()]).is_err());
        assert!(p(|p| p.keep_within = Some(Span::default())).is_err());
    }

    #[test]
    fn emptiness() {
        assert!(Policy::default().is_empty());
        let zero = Policy {
            keep_last: Some(0),
            min_keep: Some(3),
            ..Policy::default()
        };
        assert!(
            zero.is_empty(),
            "a zero count and min_keep alone remove nothing"
        );
        let capped = Policy {
            max_keep: Some(3),
            ..Policy::default()
        };
        assert!(!capped.is_empty() && !capped.has_keep_rules());
    }

    #[test]
    fn gap_and_overlap_resolution() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // 2026-03-30 02:30 CEST minus 1d is 2026-03-29 02:30, which does not exist: it moves
        // forward by the gap, to 03:30 CEST (01:30 UTC).
        let one_day = Span {
            days: 1,
            ..Span::default()
        };
        assert_eq!(
            one_day.before(at("2026-03-30T02:30:00+02:00"), &berlin),
            Some(at("2026-03-29T01:30:00Z"))
        );
        // 2026-10-26 02:30 CET minus 1d is 2026-10-25 02:30, which happens twice: the earlier.
        assert_eq!(
            one_day.before(at("2026-10-26T02:30:00+01:00"), &berlin),
            Some(at("2026-10-25T02:30:00+02:00"))
        );
        // Hours alone are exact, even from a time in the repeated hour (02:30 CET, 01:30 UTC).
        let hour = Span {
            hours: 1,
            ..Span::default()
        };
        assert_eq!(
            hour.before(at("2026-10-25T02:30:00+01:00"), &berlin),
            Some(at("2026-10-25T00:30:00Z"))
        );
        // Month ends clamp: 2024-03-31 minus 1m is 2024-02-29; 2024-02-29 minus 1y is 2023-02-28.
        let month = Span {
            months: 1,
            ..Span::default()
        };
        let year = Span {
            years: 1,
            ..Span::default()
        };
        assert_eq!(
            month.before(at("2024-03-31T12:00:00Z"), &Utc),
            Some(at("2024-02-29T12:00:00Z"))
        );
        assert_eq!(
            year.before(at("2024-02-29T12:00:00Z"), &Utc),
            Some(at("2023-02-28T12:00:00Z"))
        );
        // Far beyond the calendar's range: everything is within.
        let huge = Span {
            years: 4_000_000,
            ..Span::default()
        };
        assert_eq!(huge.before(at("2024-02-29T12:00:00Z"), &Utc), None);
    }
}
