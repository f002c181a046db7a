//! Calendar spans ([`Span`]: `30d`, `1y2mo`, `2w3d4h`), how one is subtracted on a time zone's
//! wall clock, and the calendar buckets (hours, days, ISO weeks, months, years) the rules count.
//!
//! A span is written as numbers each followed by a unit: `y` (`year`), `mo` (`month`), `w`
//! (`week`), `d` (`day`), `h` (`hour`), any case, long words also in the plural, spaces allowed
//! between parts, each unit at most once. A bare `m` is refused: it is months to some and
//! minutes to others (exact durations, [`crate::duration`], write minutes as `min`), so the
//! error says to write `mo`. Settings stored in a repository by earlier versions, which wrote
//! months as `m`, are read with [`Span::parse_stored`].

use crate::duration::{rewrite_m, split};
use crate::error::{Error, Result};
use chrono::{
    DateTime, Datelike, Days, LocalResult, Months, NaiveDateTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc,
};
use serde::de;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A calendar duration: years, months, weeks, days and hours, written like `30d`, `1y2mo`,
/// `2w3d4h` or `1 year 6 months` (see the module docs for the units). See the
/// [module docs of `retention`](super) for how it is subtracted.
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

/// The units: the one [`Span`]'s `Display` writes, then every spelling the parser accepts
/// (lowercase).
const UNITS: [(&str, &[&str]); 5] = [
    ("y", &["y", "year", "years"]),
    ("mo", &["mo", "month", "months"]),
    ("w", &["w", "week", "weeks"]),
    ("d", &["d", "day", "days"]),
    ("h", &["h", "hour", "hours"]),
];

impl Span {
    /// Whether every part is zero.
    pub fn is_zero(&self) -> bool {
        *self == Span::default()
    }

    /// The parts in [`UNITS`] order.
    fn slots(&mut self) -> [&mut u32; 5] {
        [
            &mut self.years,
            &mut self.months,
            &mut self.weeks,
            &mut self.days,
            &mut self.hours,
        ]
    }

    /// Reads a span stored in a repository's settings: as [`FromStr`], except that a bare `m`
    /// is months, as every version before `mo` wrote them. Only for text Coffer wrote itself;
    /// what a person writes goes through [`FromStr`], which refuses `m`.
    pub fn parse_stored(s: &str) -> Result<Span> {
        let t = s.trim();
        match split(t) {
            Ok(parts) if parts.iter().any(|p| p.unit == "m") => rewrite_m(t, &parts, "mo").parse(),
            _ => t.parse(),
        }
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
    /// `1y2mo`, `2w3d4h`: what [`FromStr`] reads back (`0d` for the zero span, which it
    /// refuses).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0d");
        }
        let mut s = *self;
        for ((unit, _), n) in UNITS.iter().zip(s.slots()) {
            if *n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Span {
    type Err = Error;

    /// Parses `30d`, `1y2mo`, `2w3d4h`, `1y 6mo`, `1 year 6 months` (see the module docs).
    /// Errors are [`crate::ErrorKind::InvalidInput`]; a bare `m` is refused with the input
    /// rewritten with `mo` (`"2m" is ambiguous: write 2mo for months`).
    fn from_str(s: &str) -> Result<Span> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "{s:?} is not a duration ({why}): write it like 30d, 1y2mo or 2w3d4h \
                 (y years, mo months, w weeks, d days, h hours)"
            ))
        };
        let t = s.trim();
        let parts = split(t).map_err(|why| bad(&why))?;
        if parts.iter().any(|p| p.unit == "m") {
            return Err(Error::invalid(format!(
                "{s:?} is ambiguous: write {} for months",
                rewrite_m(t, &parts, "mo")
            )));
        }
        let mut span = Span::default();
        let mut seen = [false; 5];
        for p in &parts {
            let Some(i) = UNITS
                .iter()
                .position(|(_, words)| words.contains(&&*p.unit))
            else {
                return Err(bad(&format!("unknown unit {:?}", &t[p.unit_at.clone()])));
            };
            if std::mem::replace(&mut seen[i], true) {
                return Err(bad(&format!("the unit {} appears twice", UNITS[i].0)));
            }
            *span.slots()[i] = u32::try_from(p.number).map_err(|_| bad("a number is too large"))?;
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
        s.parse()
            .map_err(|e: Error| de::Error::custom(format!("{e:#}")))
    }
}

/// A calendar unit the rules count snapshots in.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// The bucket of `t` in `tz`. Hours carry the UTC offset so that the hour a fall-back change
/// repeats makes two buckets.
pub(super) fn bucket<T: TimeZone>(unit: Unit, t: DateTime<Utc>, tz: &T) -> [i64; 5] {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use chrono_tz::Tz;

    fn span(s: &str) -> Span {
        s.parse().unwrap_or_else(|e: Error| panic!("{s:?}: {e:#}"))
    }

    fn refused(s: &str) -> String {
        let e = s.parse::<Span>().expect_err(s);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{s:?}: {e:#}");
        e.to_string()
    }

    #[test]
    fn spans_parse_and_print() {
        let s = span("2w3d4h");
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
        assert_eq!(span("1y 2mo").to_string(), "1y2mo");
        assert_eq!(span("30d").days, 30);
        for (text, printed) in [
            ("1y", "1y"),
            ("1w", "1w"),
            ("1d", "1d"),
            ("12h", "12h"),
            ("2MO", "2mo"),
            ("1 year 6 months", "1y6mo"),
            ("1 month", "1mo"),
            ("3 weeks 1 day 2 hours", "3w1d2h"),
            ("4h3d2w1mo1y", "1y1mo2w3d4h"),
            ("0y1d", "1d"),
            (" 7d ", "7d"),
        ] {
            assert_eq!(span(text).to_string(), printed, "{text:?}");
        }
    }

    #[test]
    fn a_bare_m_is_refused_with_the_unit_to_write() {
        assert_eq!(refused("2m"), "\"2m\" is ambiguous: write 2mo for months");
        assert_eq!(
            refused("1y2m"),
            "\"1y2m\" is ambiguous: write 1y2mo for months"
        );
        assert_eq!(
            refused("1y 6M 2d"),
            "\"1y 6M 2d\" is ambiguous: write 1y 6mo 2d for months"
        );
    }

    #[test]
    fn refuses_garbage_empty_zero_overflow_and_repeats() {
        for (s, why) in [
            ("", "it is empty"),
            ("d", "a number is missing"),
            ("5", "a unit is missing"),
            ("5x", "unknown unit \"x\""),
            ("10min", "unknown unit \"min\""),
            ("30s", "unknown unit \"s\""),
            ("0d", "it is zero"),
            ("0y0mo", "it is zero"),
            ("1d1d", "the unit d appears twice"),
            ("1 day 2 days", "the unit d appears twice"),
            ("-1d", "unexpected '-'"),
            ("1.5d", "unexpected '.'"),
            ("4294967296d", "a number is too large"),
            ("99999999999999999999999d", "a number is too large"),
        ] {
            let msg = refused(s);
            assert!(msg.contains(why), "{s:?}: {msg}");
            assert!(msg.contains("mo months"), "{s:?}: {msg}");
        }
        assert_eq!(span("4294967295d").days, u32::MAX);
    }

    #[test]
    fn display_reads_back() {
        let all = Span {
            years: 1,
            months: 2,
            weeks: 3,
            days: 4,
            hours: 5,
        };
        for s in [
            all,
            Span {
                months: u32::MAX,
                ..Span::default()
            },
            Span {
                hours: 1,
                ..Span::default()
            },
        ] {
            assert_eq!(span(&s.to_string()), s, "{s}");
        }
        assert_eq!(all.to_string(), "1y2mo3w4d5h");
    }

    #[test]
    fn stored_spans_read_m_as_months() {
        assert_eq!(Span::parse_stored("1y2m").unwrap(), span("1y2mo"));
        assert_eq!(Span::parse_stored("3m").unwrap(), span("3mo"));
        assert_eq!(Span::parse_stored("2w3d4h").unwrap(), span("2w3d4h"));
        assert_eq!(Span::parse_stored("1y2mo").unwrap(), span("1y2mo"));
        assert!(Span::parse_stored("5x").is_err());
        assert!(Span::parse_stored("").is_err());
    }

    #[test]
    fn serde_refuses_a_bare_m_with_the_message() {
        let e = serde_json::from_str::<Span>("\"6m\"").unwrap_err();
        assert!(e.to_string().contains("write 6mo for months"), "{e}");
        assert_eq!(serde_json::to_string(&span("6mo")).unwrap(), "\"6mo\"");
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
        // Month ends clamp: 2024-03-31 minus 1mo is 2024-02-29; 2024-02-29 minus 1y is 2023-02-28.
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
