//! The [`Policy`] type: its fields (as a config or the repository's settings write them), its
//! validation and its one-line summary; and [`ByteSize`], the sizes `max_size` is written in.

use super::spans::{Span, Unit};
use super::GroupBy;
use crate::error::{Error, Result};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

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
pub(super) fn counted(p: &Policy) -> [(&'static str, Option<i32>, Option<Unit>); 6] {
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
pub(super) fn within_buckets(p: &Policy) -> [(&'static str, Option<Span>, Unit); 5] {
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

pub(super) fn tag_reason(spec: &str) -> String {
    if spec.contains(',') {
        format!("tags {spec}")
    } else {
        format!("tag {spec}")
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
