//! Exact durations as people write them: `30s`, `10min`, `2h`, `1d`, `1w`, combined as `1h30min`
//! (spaces allowed: `1 hour 30 minutes`), and `0`. Units: `s` (`sec`, `second`), `min`
//! (`minute`), `h` (`hour`), `d` (`day`, 24 hours) and `w` (`week`, 7 days), any case, long
//! words also in the plural. A bare `m` is refused: it is minutes to some and months to others
//! (calendar spans, [`crate::retention::Span`], write months as `mo`), so the error says to
//! write `min`.
//!
//! [`format`] writes what [`parse`] reads back. The splitting into `<number><unit>` parts is
//! shared with the calendar spans ([`split`]), so both read the same way.

use crate::error::{Error, Result};
use std::ops::Range;
use std::time::Duration;

/// Longer input is refused before it is looked at (it is read from files and flags).
const MAX_LEN: usize = 100;

/// The units, longest first within each: the unit as [`format`] writes it, its seconds, and
/// every spelling [`parse`] accepts (lowercase).
const UNITS: [(&str, u64, &[&str]); 5] = [
    ("w", 7 * 86_400, &["w", "week", "weeks"]),
    ("d", 86_400, &["d", "day", "days"]),
    ("h", 3600, &["h", "hour", "hours"]),
    ("min", 60, &["min", "mins", "minute", "minutes"]),
    ("s", 1, &["s", "sec", "secs", "second", "seconds"]),
];

/// Parses an exact duration such as `30s`, `10min`, `2h`, `1d`, `1w`, `1h30min` or
/// `1 hour 30 minutes`; `0` is zero. Each unit may appear once. Errors are
/// [`crate::ErrorKind::InvalidInput`] and name what is wrong; a bare `m` is refused with the
/// input rewritten with `min` (`"10m" is ambiguous: write 10min for minutes`).
pub fn parse(s: &str) -> Result<Duration> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = |why: &str| {
        Error::invalid(format!(
            "{s:?} is not a duration ({why}): write it like 30s, 10min, 2h, 1d or 1h30min \
             (s seconds, min minutes, h hours, d days, w weeks)"
        ))
    };
    let parts = split(t).map_err(|why| bad(&why))?;
    if parts.iter().any(|p| p.unit == "m") {
        return Err(Error::invalid(format!(
            "{s:?} is ambiguous: write {} for minutes",
            rewrite_m(t, &parts, "min")
        )));
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut total: u64 = 0;
    for p in &parts {
        let Some((name, secs, _)) = UNITS.iter().find(|(_, _, words)| words.contains(&&*p.unit))
        else {
            return Err(bad(&format!("unknown unit {:?}", &t[p.unit_at.clone()])));
        };
        if seen.contains(name) {
            return Err(bad(&format!("the unit {name} appears twice")));
        }
        seen.push(name);
        total = p
            .number
            .checked_mul(*secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("it is too long"))?;
    }
    Ok(Duration::from_secs(total))
}

/// Writes a duration the way [`parse`] reads it: `1h30min`, `45s`, `2d3h`, `0s` (whole
/// seconds; a fraction of a second is dropped).
pub fn format(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    // Weeks are left as days: `14d` reads better than `2w` in a log line.
    for (unit, n, _) in &UNITS[1..] {
        if secs >= *n {
            out.push_str(&format!("{}{unit}", secs / n));
            secs %= n;
        }
    }
    out
}

/// One `<number><unit>` part of a written duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// The number.
    pub number: u64,
    /// The unit, in lowercase.
    pub unit: String,
    /// Where the unit stands in the input given to [`split`].
    pub unit_at: Range<usize>,
}

/// Splits `t` (trimmed) into `<number><unit>` parts: digits, optional spaces, then letters, and
/// optional spaces before the next part. On failure, says why (`it is empty`, `a unit is
/// missing`, ...) for the caller's message. Numbers larger than `u64` are refused here.
pub(crate) fn split(t: &str) -> std::result::Result<Vec<Part>, String> {
    if t.is_empty() {
        return Err("it is empty".into());
    }
    if t.len() > MAX_LEN {
        return Err(format!("it is longer than {MAX_LEN} characters"));
    }
    let b = t.as_bytes();
    let skip = |mut i: usize, f: fn(&u8) -> bool| {
        while i < b.len() && f(&b[i]) {
            i += 1;
        }
        i
    };
    let mut parts = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let digits_end = skip(i, u8::is_ascii_digit);
        if digits_end == i {
            let c = t[i..].chars().next().unwrap_or(' ');
            return Err(if c.is_alphabetic() {
                format!("a number is missing before {:?}", word_at(t, i))
            } else {
                format!("unexpected {c:?}")
            });
        }
        let number: u64 = t[i..digits_end]
            .parse()
            .map_err(|_| "a number is too large".to_string())?;
        let unit_start = skip(digits_end, u8::is_ascii_whitespace);
        let unit_end = skip(unit_start, u8::is_ascii_alphabetic);
        if unit_end == unit_start {
            return Err(match t[unit_start..].chars().next() {
                None => format!("a unit is missing after {}", &t[i..digits_end]),
                Some(c) => format!("unexpected {c:?}"),
            });
        }
        parts.push(Part {
            number,
            unit: t[unit_start..unit_end].to_ascii_lowercase(),
            unit_at: unit_start..unit_end,
        });
        i = skip(unit_end, u8::is_ascii_whitespace);
    }
    Ok(parts)
}

/// The letters starting at byte `i` of `t`, for messages.
fn word_at(t: &str, i: usize) -> &str {
    let end = t[i..]
        .find(|c: char| !c.is_alphabetic())
        .map_or(t.len(), |n| i + n);
    &t[i..end]
}

/// `t` with every bare `m` unit of `parts` written as `to`: the suggestion of an ambiguity error.
pub(crate) fn rewrite_m(t: &str, parts: &[Part], to: &str) -> String {
    let mut out = String::with_capacity(t.len() + 8);
    let mut at = 0;
    for p in parts.iter().filter(|p| p.unit == "m") {
        out.push_str(&t[at..p.unit_at.start]);
        out.push_str(to);
        at = p.unit_at.end;
    }
    out.push_str(&t[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn secs(s: &str) -> u64 {
        parse(s)
            .unwrap_or_else(|e| panic!("{s:?}: {e:#}"))
            .as_secs()
    }

    fn refused(s: &str) -> String {
        let e = parse(s).expect_err(s);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{s:?}: {e:#}");
        e.to_string()
    }

    #[test]
    fn accepts_units_words_and_combinations() {
        for (s, want) in [
            ("30s", 30),
            ("10min", 600),
            ("2h", 7200),
            ("1d", 86_400),
            ("1w", 604_800),
            ("1h30min", 5400),
            ("1h 30min", 5400),
            ("1w2d3h4min5s", 788_645),
            ("0", 0),
            ("0s", 0),
            ("0min", 0),
            (" 45s ", 45),
            ("90 seconds", 90),
            ("1 sec", 1),
            ("5 mins", 300),
            ("1 minute", 60),
            ("2 hours 15 minutes", 8100),
            ("3 days", 259_200),
            ("1 week", 604_800),
            ("2H", 7200),
            ("10MIN", 600),
        ] {
            assert_eq!(secs(s), want, "{s:?}");
        }
    }

    #[test]
    fn a_bare_m_is_refused_with_the_unit_to_write() {
        assert_eq!(
            refused("10m"),
            "\"10m\" is ambiguous: write 10min for minutes"
        );
        assert_eq!(
            refused("1h30m"),
            "\"1h30m\" is ambiguous: write 1h30min for minutes"
        );
        assert_eq!(
            refused("1h 5M 3s"),
            "\"1h 5M 3s\" is ambiguous: write 1h 5min 3s for minutes"
        );
    }

    #[test]
    fn refuses_garbage_empty_overflow_and_repeats() {
        for (s, why) in [
            ("", "it is empty"),
            ("  ", "it is empty"),
            ("10", "a unit is missing after 10"),
            ("m", "a number is missing before \"m\""),
            ("min", "a number is missing before \"min\""),
            ("5x", "unknown unit \"x\""),
            ("1mo", "unknown unit \"mo\""),
            ("1y", "unknown unit \"y\""),
            ("1.5h", "unexpected '.'"),
            ("-1h", "unexpected '-'"),
            ("1h,2s", "unexpected ','"),
            ("1h1h", "h appears twice"),
            ("1 hour 2 hours", "h appears twice"),
            ("99999999999999999999s", "a number is too large"),
            ("18446744073709551615w", "it is too long"),
            ("18446744073709551615s1min", "it is too long"),
            ("1h½", "unexpected '½'"),
        ] {
            let msg = refused(s);
            assert!(msg.contains(why), "{s:?}: {msg}");
            assert!(msg.contains("30s, 10min, 2h"), "{s:?}: {msg}");
        }
        let long = "1s".repeat(60);
        assert!(refused(&long).contains("longer than 100 characters"));
    }

    #[test]
    fn format_reads_back() {
        for (secs, text) in [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1min"),
            (3600, "1h"),
            (5400, "1h30min"),
            (90_061, "1d1h1min1s"),
            (1_209_600, "14d"),
            (u64::MAX, "213503982334601d7h15s"),
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(format(d), text);
            assert_eq!(parse(&format(d)).unwrap(), d, "{text}");
        }
        assert_eq!(format(Duration::from_millis(1500)), "1s");
    }
}
