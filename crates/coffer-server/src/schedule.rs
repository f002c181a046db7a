//! When a job runs: a cron expression, an `@` shortcut or the friendly form, evaluated in the
//! job's IANA time zone (so `0 2 * * *` in `Europe/Berlin` is 02:00 Berlin time in winter and in
//! summer).
//!
//! - Cron: the standard 5 fields (`minute hour day-of-month month day-of-week`, such as
//!   `0 2 * * *`, `*/15 * * * *`, `0 2 * * 1-5`), with croner's extensions (`L`, `#`, `W`, names
//!   such as `MON` and `JAN`). As in Vixie cron, when both day fields are restricted a day
//!   matching either runs. A 6th leading field gives seconds (`*/2 * * * * *`): a testing aid,
//!   real jobs do not need it.
//! - Shortcuts: `@hourly`, `@daily` (`@midnight`), `@weekly` (Sunday 00:00), `@monthly`,
//!   `@yearly` (`@annually`).
//! - Friendly form ([`Friendly`]): `frequency = "hourly" | "daily" | "weekly" | "monthly"`, with
//!   `minute` (default 0), `hour` (default 0), `day_of_week` (weekly; `mon`, `monday`, `1`,
//!   `mon-fri`, `sat,sun`; default Monday) and `day_of_month` (monthly; 1 to 31, default 1; a
//!   month without that day is skipped).
//!
//! Daylight-saving changes follow the Open Cron Pattern Specification, as croner implements it:
//! a job at a fixed time that falls into the hour skipped in spring runs at the first instant
//! after the gap (02:30 becomes 03:00 in Berlin), and a fixed time repeated in autumn runs once
//! (at its first occurrence); jobs with a wildcard or stepped hour (`*/15 * * * *`) run at every
//! real instant that matches.

use crate::error::{Error, ErrorKind, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::Deserialize;
use std::fmt;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    expression: String,
    written: String,
}

/// How often the friendly form runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    /// Every hour, at `minute`.
    Hourly,
    /// Every day, at `hour:minute`.
    Daily,
    /// Every week, on `day_of_week` at `hour:minute`.
    Weekly,
    /// Every month, on `day_of_month` at `hour:minute`.
    Monthly,
}

/// The friendly form of a schedule (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Friendly {
    /// How often.
    pub frequency: Frequency,
    /// Weekly: which day(s), as cron's day-of-week field or day names.
    pub day_of_week: Option<String>,
    /// Monthly: the day of the month, 1 to 31.
    pub day_of_month: Option<u32>,
    /// The hour, 0 to 23 (not for hourly).
    pub hour: Option<u32>,
    /// The minute, 0 to 59.
    pub minute: Option<u32>,
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

fn day_name(s: &str) -> Option<&'static str> {
    let l = s.trim().to_ascii_lowercase();
    const DAYS: [(&str, &str); 7] = [
        ("monday", "MON"),
        ("tuesday", "TUE"),
        ("wednesday", "WED"),
        ("thursday", "THU"),
        ("friday", "FRI"),
        ("saturday", "SAT"),
        ("sunday", "SUN"),
    ];
    DAYS.iter()
        .find(|(full, short)| l == *full || l == short.to_ascii_lowercase())
        .map(|(_, short)| *short)
}

/// Turns `monday-friday`, `sat,sun` or `1-5` into cron's day-of-week field.
fn day_of_week_field(s: &str) -> Result<String> {
    let bad = || {
        Error::new(
            ErrorKind::Schedule,
            format!(
                "day_of_week {s:?} is not a day: use mon..sun, monday..sunday, 0..7, a range \
                 (mon-fri) or a list (sat,sun)"
            ),
        )
    };
    let mut out = Vec::new();
    for item in s.split(',') {
        let mut ends = Vec::new();
        for end in item.split('-') {
            let end = end.trim();
            if let Some(d) = day_name(end) {
                ends.push(d.to_string());
            } else if end.parse::<u32>().is_ok_and(|n| n <= 7) {
                ends.push(end.to_string());
            } else {
                return Err(bad());
            }
        }
        if ends.is_empty() || ends.len() > 2 {
            return Err(bad());
        }
        out.push(ends.join("-"));
    }
    Ok(out.join(","))
}

impl Friendly {
    /// The equivalent cron expression, after checking the ranges.
    pub fn to_cron(&self) -> Result<String> {
        let err = |m: String| Error::new(ErrorKind::Schedule, m);
        let minute = self.minute.unwrap_or(0);
        if minute > 59 {
            return Err(err(format!("minute is {minute}: use 0 to 59")));
        }
        let hour = self.hour.unwrap_or(0);
        if hour > 23 {
            return Err(err(format!("hour is {hour}: use 0 to 23")));
        }
        let not_for = |what: &str| {
            err(format!(
                "{what} does not apply to frequency = \"{}\"",
                self.frequency.name()
            ))
        };
        if self.frequency == Frequency::Hourly && self.hour.is_some() {
            return Err(not_for("hour"));
        }
        if self.frequency != Frequency::Weekly && self.day_of_week.is_some() {
            return Err(not_for("day_of_week"));
        }
        if self.frequency != Frequency::Monthly && self.day_of_month.is_some() {
            return Err(not_for("day_of_month"));
        }
        Ok(match self.frequency {
            Frequency::Hourly => format!("{minute} * * * *"),
            Frequency::Daily => format!("{minute} {hour} * * *"),
            Frequency::Weekly => {
                let dow = match &self.day_of_week {
                    Some(d) => day_of_week_field(d)?,
                    None => "MON".into(),
                };
                format!("{minute} {hour} * * {dow}")
            }
            Frequency::Monthly => {
                let dom = self.day_of_month.unwrap_or(1);
                if !(1..=31).contains(&dom) {
                    return Err(err(format!("day_of_month is {dom}: use 1 to 31")));
                }
                format!("{minute} {hour} {dom} * *")
            }
        })
    }
}

impl Frequency {
    /// The name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Frequency::Hourly => "hourly",
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
        }
    }
}

impl Schedule {
    /// Parses a cron expression or an `@` shortcut.
    pub fn cron(expression: &str) -> Result<Schedule> {
        let e = expression.trim();
        let fields = e.split_whitespace().count();
        if !e.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(Error::new(
                ErrorKind::Schedule,
                format!(
                    "invalid cron expression {expression:?}: it has {fields} fields; use 5 \
                     (minute hour day-of-month month day-of-week, such as \"0 2 * * *\") or \
                     @hourly, @daily, @weekly, @monthly"
                ),
            ));
        }
        let cron = parser().parse(e).map_err(|err| {
            Error::new(
                ErrorKind::Schedule,
                format!("invalid cron expression {expression:?}: {err}"),
            )
        })?;
        let s = Schedule {
            cron,
            expression: e.to_string(),
            written: e.to_string(),
        };
        s.check_matches(expression)?;
        Ok(s)
    }

    /// The friendly form.
    pub fn friendly(f: &Friendly) -> Result<Schedule> {
        let expression = f.to_cron()?;
        let cron = parser().parse(&expression).map_err(|err| {
            Error::new(
                ErrorKind::Schedule,
                format!("invalid schedule ({expression}): {err}"),
            )
        })?;
        let mut written = f.frequency.name().to_string();
        let (h, m) = (f.hour.unwrap_or(0), f.minute.unwrap_or(0));
        match f.frequency {
            Frequency::Hourly => written.push_str(&format!(" at minute {m}")),
            Frequency::Daily => written.push_str(&format!(" at {h:02}:{m:02}")),
            Frequency::Weekly => written.push_str(&format!(
                " on {} at {h:02}:{m:02}",
                f.day_of_week.as_deref().unwrap_or("monday")
            )),
            Frequency::Monthly => written.push_str(&format!(
                " on day {} at {h:02}:{m:02}",
                f.day_of_month.unwrap_or(1)
            )),
        }
        let s = Schedule {
            cron,
            expression,
            written,
        };
        s.check_matches(&s.written.clone())?;
        Ok(s)
    }

    /// Refuses patterns that never match (`0 0 30 2 *`).
    fn check_matches(&self, what: &str) -> Result<()> {
        let start = DateTime::<Utc>::from_timestamp(1_704_067_200, 0).expect("valid time"); // 2024-01-01
        if self.next_after(start, Tz::UTC).is_none() {
            return Err(Error::new(
                ErrorKind::Schedule,
                format!("the schedule {what:?} never runs (no date matches it)"),
            ));
        }
        Ok(())
    }

    /// The cron expression evaluated (the friendly form's equivalent).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The schedule as the config wrote it (`0 2 * * *`, `@daily`, `weekly on sun at 03:00`).
    pub fn written(&self) -> &str {
        &self.written
    }

    /// Whether the expression has a seconds field (the testing aid).
    pub fn has_seconds(&self) -> bool {
        !self.expression.starts_with('@') && self.expression.split_whitespace().count() == 6
    }

    /// The first run time strictly after `t`, in `tz`; `None` if there is none (within croner's
    /// search limit).
    pub fn next_after(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last run time at or before `t`, in `tz`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&tz), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The next `count` run times after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, tz: Tz, count: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count);
        let mut cursor = t;
        while out.len() < count {
            match self.next_after(cursor, tz) {
                Some(n) => {
                    out.push(n);
                    cursor = n;
                }
                None => break,
            }
        }
        out
    }

    /// The longest gap between consecutive runs among the next few after `t`: what "its
    /// interval" means for a job that is overdue.
    pub fn interval_near(&self, t: DateTime<Utc>, tz: Tz) -> Option<chrono::TimeDelta> {
        let times = self.upcoming(t, tz, 8);
        times.windows(2).map(|w| w[1] - w[0]).max()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn berlin() -> Tz {
        "Europe/Berlin".parse().unwrap()
    }

    fn local(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn fmt_local(t: DateTime<Utc>, tz: Tz) -> String {
        t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
    }

    #[test]
    fn five_field_cron_in_a_time_zone() {
        let s = Schedule::cron("0 2 * * *").unwrap();
        let tz = berlin();
        let next = s.upcoming(local(tz, 2025, 1, 10, 12, 0), tz, 2);
        let shown: Vec<String> = next.iter().map(|t| fmt_local(*t, tz)).collect();
        assert_eq!(shown, ["2025-01-11 02:00 CET", "2025-01-12 02:00 CET"]);
        // 02:00 CET is 01:00 UTC.
        assert_eq!(next[0], Utc.with_ymd_and_hms(2025, 1, 11, 1, 0, 0).unwrap());
    }

    #[test]
    fn steps_ranges_and_weekdays() {
        let tz = Tz::UTC;
        let start = Utc.with_ymd_and_hms(2025, 3, 7, 10, 7, 0).unwrap(); // a Friday
        let q = Schedule::cron("*/15 * * * *").unwrap();
        let mins: Vec<u32> = q
            .upcoming(start, tz, 3)
            .iter()
            .map(chrono::Timelike::minute)
            .collect();
        assert_eq!(mins, [15, 30, 45]);
        let weekdays = Schedule::cron("0 2 * * 1-5").unwrap();
        let days: Vec<String> = weekdays
            .upcoming(start, tz, 3)
            .iter()
            .map(|t| t.format("%a %d").to_string())
            .collect();
        assert_eq!(days, ["Mon 10", "Tue 11", "Wed 12"]);
    }

    #[test]
    fn shortcuts() {
        let tz = Tz::UTC;
        let start = Utc.with_ymd_and_hms(2025, 5, 14, 10, 30, 0).unwrap(); // a Wednesday
        let cases = [
            ("@hourly", "2025-05-14 11:00"),
            ("@daily", "2025-05-15 00:00"),
            ("@weekly", "2025-05-18 00:00"),
            ("@monthly", "2025-06-01 00:00"),
        ];
        for (expr, want) in cases {
            let s = Schedule::cron(expr).unwrap();
            let got = s.next_after(start, tz).unwrap().format("%Y-%m-%d %H:%M");
            assert_eq!(got.to_string(), want, "{expr}");
        }
    }

    #[test]
    fn friendly_forms() {
        let tz = berlin();
        let start = local(tz, 2025, 5, 14, 10, 30); // Wednesday
        let f = |frequency, dow: Option<&str>, dom, hour, minute| Friendly {
            frequency,
            day_of_week: dow.map(String::from),
            day_of_month: dom,
            hour,
            minute,
        };
        let cases = [
            (
                f(Frequency::Weekly, Some("sunday"), None, Some(3), None),
                "0 3 * * SUN",
                "2025-05-18 03:00 CEST",
            ),
            (
                f(Frequency::Weekly, Some("mon-fri"), None, Some(1), Some(30)),
                "30 1 * * MON-FRI",
                "2025-05-15 01:30 CEST",
            ),
            (
                f(Frequency::Daily, None, None, Some(1), None),
                "0 1 * * *",
                "2025-05-15 01:00 CEST",
            ),
            (
                f(Frequency::Hourly, None, None, None, Some(5)),
                "5 * * * *",
                "2025-05-14 11:05 CEST",
            ),
            (
                f(Frequency::Monthly, None, Some(31), Some(4), None),
                "0 4 31 * *",
                "2025-05-31 04:00 CEST",
            ),
        ];
        for (form, expr, next) in cases {
            let s = Schedule::friendly(&form).unwrap();
            assert_eq!(s.expression(), expr);
            assert_eq!(fmt_local(s.next_after(start, tz).unwrap(), tz), next);
        }
        // Defaults: weekly means Monday 00:00.
        let s = Schedule::friendly(&f(Frequency::Weekly, None, None, None, None)).unwrap();
        assert_eq!(s.expression(), "0 0 * * MON");
        for (form, msg) in [
            (
                f(Frequency::Daily, None, None, Some(24), None),
                "hour is 24",
            ),
            (
                f(Frequency::Hourly, None, None, None, Some(60)),
                "minute is 60",
            ),
            (
                f(Frequency::Hourly, None, None, Some(2), None),
                "hour does not apply",
            ),
            (
                f(Frequency::Daily, Some("mon"), None, None, None),
                "day_of_week does not apply",
            ),
            (
                f(Frequency::Weekly, Some("funday"), None, None, None),
                "not a day",
            ),
            (
                f(Frequency::Monthly, None, Some(32), None, None),
                "day_of_month is 32",
            ),
        ] {
            let e = Schedule::friendly(&form).unwrap_err();
            assert!(e.to_string().contains(msg), "{e} lacks {msg}");
        }
    }

    #[test]
    fn spring_forward_runs_a_skipped_time_once_after_the_gap() {
        // 2025-03-30: Berlin jumps from 02:00 CET to 03:00 CEST.
        let tz = berlin();
        let s = Schedule::cron("30 2 * * *").unwrap();
        let got: Vec<String> = s
            .upcoming(local(tz, 2025, 3, 29, 12, 0), tz, 3)
            .iter()
            .map(|t| fmt_local(*t, tz))
            .collect();
        assert_eq!(
            got,
            [
                "2025-03-30 03:00 CEST",
                "2025-03-31 02:30 CEST",
                "2025-04-01 02:30 CEST"
            ]
        );
        // A stepped hour simply has no 02:xx runs that night.
        let hourly = Schedule::cron("15 * * * *").unwrap();
        let got: Vec<String> = hourly
            .upcoming(local(tz, 2025, 3, 30, 1, 0), tz, 2)
            .iter()
            .map(|t| fmt_local(*t, tz))
            .collect();
        assert_eq!(got, ["2025-03-30 01:15 CET", "2025-03-30 03:15 CEST"]);
    }

    #[test]
    fn fall_back_runs_a_repeated_time_once() {
        // 2025-10-26: Berlin goes from 03:00 CEST back to 02:00 CET.
        let tz = berlin();
        let s = Schedule::cron("30 2 * * *").unwrap();
        let runs = s.upcoming(local(tz, 2025, 10, 25, 12, 0), tz, 2);
        let got: Vec<String> = runs.iter().map(|t| fmt_local(*t, tz)).collect();
        assert_eq!(got, ["2025-10-26 02:30 CEST", "2025-10-27 02:30 CET"]);
        // That day is 25 hours long, and the gap between the two runs says so.
        assert_eq!(runs[1] - runs[0], chrono::TimeDelta::hours(25));
        // An hourly job runs in both 02:xx hours.
        let hourly = Schedule::cron("15 * * * *").unwrap();
        let got: Vec<String> = hourly
            .upcoming(local(tz, 2025, 10, 26, 1, 30), tz, 3)
            .iter()
            .map(|t| fmt_local(*t, tz))
            .collect();
        assert_eq!(
            got,
            [
                "2025-10-26 02:15 CEST",
                "2025-10-26 02:15 CET",
                "2025-10-26 03:15 CET"
            ]
        );
    }

    #[test]
    fn last_at_or_before_and_interval() {
        let tz = Tz::UTC;
        let s = Schedule::cron("0 2 * * *").unwrap();
        let t = Utc.with_ymd_and_hms(2025, 5, 14, 10, 0, 0).unwrap();
        assert_eq!(
            s.last_at_or_before(t, tz),
            Some(Utc.with_ymd_and_hms(2025, 5, 14, 2, 0, 0).unwrap())
        );
        let exact = Utc.with_ymd_and_hms(2025, 5, 14, 2, 0, 0).unwrap();
        assert_eq!(s.last_at_or_before(exact, tz), Some(exact));
        assert_eq!(s.interval_near(t, tz), Some(chrono::TimeDelta::days(1)));
    }

    #[test]
    fn seconds_field_is_accepted_and_invalid_expressions_are_not() {
        let s = Schedule::cron("*/2 * * * * *").unwrap();
        assert!(s.has_seconds());
        let t = Utc.with_ymd_and_hms(2025, 5, 14, 10, 0, 1).unwrap();
        assert_eq!(
            s.next_after(t, Tz::UTC),
            Some(Utc.with_ymd_and_hms(2025, 5, 14, 10, 0, 2).unwrap())
        );
        for bad in [
            "0 2 * *",
            "61 * * * *",
            "* * * * * * * *",
            "0 25 * * *",
            "@fortnightly",
            "",
        ] {
            let e = Schedule::cron(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Schedule, "{bad}");
            assert!(e.to_string().contains("cron expression"), "{bad}: {e}");
        }
        let never = Schedule::cron("0 0 30 2 *").unwrap_err();
        assert!(never.to_string().contains("never runs"), "{never}");
    }
}
