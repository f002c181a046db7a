//! Durations in the configuration: `90s`, `10m`, `2h`, `1d`, `1h30m` (s, m, h, d, w).

use std::time::Duration;

/// Parses a duration such as `30s`, `10m`, `2h`, `1d`, `1w` or `1h30m`; `0` is zero.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || format!("{s:?} is not a duration such as 30s, 10m, 2h, 1d or 1h30m");
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if c == ' ' && digits.is_empty() {
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way [`parse`] reads it (`1h30m`, `45s`, `0s`).
pub fn format(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= n {
            out.push_str(&format!("{}{unit}", secs / n));
            secs %= n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse("1w"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "m", "5x", "1.5h"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn format_reads_back() {
        for secs in [0, 1, 59, 60, 3600, 5400, 90_061] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
    }
}
