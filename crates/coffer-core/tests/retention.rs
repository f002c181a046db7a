//! Retention policies as a table of cases: each `tests/retention/*.golden` file holds an input
//! (time zone, `now`, a policy, snapshots) and, below a marker line, the expected decisions.
//! The test recomputes the decisions and fails with a line diff when they differ;
//! `UPDATE_GOLDEN=1 cargo test -p coffer-core --test retention` rewrites the expected parts
//! (review the diff before committing it).
//!
//! A case file looks like this:
//!
//! ```text
//! # What the case shows (comments are TOML comments).
//! timezone = "Europe/Berlin"          # default UTC
//! now = "2026-04-02T00:00:00Z"        # default 2100-01-01T00:00:00Z
//! policy = { keep_daily = 3, min_keep = 2 }
//! snapshots:
//! a  2026-03-28T23:30:00+01:00
//! b  2026-03-29T03:30:00+02:00  host=web2 source=/srv tags=nightly,db size=10MiB
//! --- expected (UPDATE_GOLDEN=1 rewrites everything below) ---
//! ...
//! ```
//!
//! Above `snapshots:` is TOML (so `policy` is written exactly as a config embeds it). Each
//! snapshot line is a label, an RFC 3339 time, and optional `host=` (default `h`), `source=`
//! (default `/data`), `tags=` (comma-separated) and `size=` (bytes or `10MiB`). A snapshot's id
//! is its label's bytes padded with zeros, so among equal times the later label counts as newer.
//! The expected part lists each group's snapshots newest first with the local time, weekday and
//! ISO week in the case's time zone, and the rules that kept (or the limit that removed) each.

use chrono::{DateTime, Utc};
use coffer_core::retention::{self, ByteSize, Policy, SnapshotMeta, Tz};
use coffer_core::Id;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MARKER: &str = "--- expected (UPDATE_GOLDEN=1 rewrites everything below) ---";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    timezone: Option<String>,
    now: Option<String>,
    #[serde(default)]
    policy: Policy,
}

struct Case {
    tz: Tz,
    now: DateTime<Utc>,
    policy: Policy,
    labels: Vec<String>,
    snaps: Vec<SnapshotMeta>,
}

fn id_of(label: &str) -> Id {
    assert!(
        !label.is_empty() && label.len() <= 32,
        "label {label:?}: 1 to 32 bytes"
    );
    let mut b = [0u8; 32];
    b[..label.len()].copy_from_slice(label.as_bytes());
    Id(b)
}

fn parse_case(input: &str) -> Result<Case, String> {
    let (head, body) = input
        .split_once("\nsnapshots:\n")
        .ok_or("no `snapshots:` line")?;
    let header: Header = toml::from_str(head).map_err(|e| format!("header: {e}"))?;
    let tz = retention::parse_timezone(header.timezone.as_deref().unwrap_or("UTC"))
        .map_err(|e| e.to_string())?;
    let now = DateTime::parse_from_rfc3339(header.now.as_deref().unwrap_or("2100-01-01T00:00:00Z"))
        .map_err(|e| format!("now: {e}"))?
        .with_timezone(&Utc);
    let mut labels = Vec::new();
    let mut snaps = Vec::new();
    for (n, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: String| format!("snapshot line {}: {m}: {line:?}", n + 1);
        let mut tokens = line.split_whitespace();
        let label = tokens.next().unwrap().to_string();
        let time = tokens.next().ok_or_else(|| err("no time".into()))?;
        let time = DateTime::parse_from_rfc3339(time)
            .map_err(|e| err(e.to_string()))?
            .with_timezone(&Utc);
        let mut meta = SnapshotMeta {
            id: id_of(&label),
            time,
            hostname: "h".into(),
            source: "/data".into(),
            tags: Vec::new(),
            size: 0,
        };
        for kv in tokens {
            match kv.split_once('=') {
                Some(("host", v)) => meta.hostname = v.into(),
                Some(("source", v)) => meta.source = v.into(),
                Some(("tags", v)) => meta.tags = v.split(',').map(String::from).collect(),
                Some(("size", v)) => {
                    meta.size = v.parse::<ByteSize>().map_err(|e| err(e.to_string()))?.0
                }
                _ => return Err(err(format!("unknown field {kv:?}"))),
            }
        }
        if labels.contains(&label) {
            return Err(err("duplicate label".into()));
        }
        labels.push(label);
        snaps.push(meta);
    }
    Ok(Case {
        tz,
        now,
        policy: header.policy,
        labels,
        snaps,
    })
}

/// The expected part: the decisions, grouped, newest first.
fn render(case: &Case) -> Result<String, String> {
    let plan = retention::apply(&case.policy, &case.snaps, case.now, &case.tz)
        .map_err(|e| format!("apply failed: {e}"))?;
    check_invariants(case, &plan)?;
    let mut out = format!("policy: {}\n", case.policy);
    let width = case.labels.iter().map(String::len).max().unwrap_or(1);
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, d) in plan.decisions.iter().enumerate() {
        groups.entry(d.group.to_string()).or_default().push(i);
    }
    for (key, mut members) in groups {
        members.sort_by(|&a, &b| {
            (case.snaps[b].time, case.snaps[b].id).cmp(&(case.snaps[a].time, case.snaps[a].id))
        });
        out.push_str(&format!("group {key}\n"));
        for i in members {
            let d = &plan.decisions[i];
            let local = case.snaps[i].time.with_timezone(&case.tz);
            let mut why = d.reasons.join(", ");
            if let Some(r) = &d.removed_by {
                why = format!("removed by {r} (matched: {why})");
            }
            let line = format!(
                "  {:<6}  {:<width$}  {}  {}",
                if d.keep { "keep" } else { "remove" },
                case.labels[i],
                local.format("%Y-%m-%d %H:%M:%S %:z %a %G-W%V"),
                why,
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    let kept = plan.decisions.iter().filter(|d| d.keep).count();
    out.push_str(&format!("kept {kept} of {}\n", plan.decisions.len()));
    if plan.size_before > 0 {
        out.push_str(&format!(
            "size {} of {} kept\n",
            ByteSize(plan.size_after),
            ByteSize(plan.size_before)
        ));
    }
    for n in &plan.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    Ok(out)
}

/// Properties every plan has, whatever the case.
fn check_invariants(case: &Case, plan: &retention::Plan) -> Result<(), String> {
    let p = &case.policy;
    if plan.decisions.len() != case.snaps.len() {
        return Err("not one decision per snapshot".into());
    }
    let mut per_group: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (d, s) in plan.decisions.iter().zip(&case.snaps) {
        if d.id != s.id {
            return Err("decisions are not in input order".into());
        }
        if d.keep && (d.reasons.is_empty() || d.removed_by.is_some()) {
            return Err(format!("{} kept without a reason", d.id.short()));
        }
        if d.removed_by.is_some() && d.reasons.is_empty() {
            return Err(format!(
                "{} removed by a limit but no rule kept it",
                d.id.short()
            ));
        }
        let e = per_group.entry(d.group.to_string()).or_default();
        e.0 += 1;
        e.1 += usize::from(d.keep);
    }
    for (g, (total, kept)) in per_group {
        if let Some(min) = p.min_keep {
            if kept < (min as usize).min(total) {
                return Err(format!("group {g}: kept {kept}, below min_keep {min}"));
            }
        }
        if let Some(max) = p.max_keep {
            if kept > max as usize {
                return Err(format!("group {g}: kept {kept}, above max_keep {max}"));
            }
        }
        if p.is_empty() && kept != total {
            return Err(format!("group {g}: an empty policy removed snapshots"));
        }
    }
    Ok(())
}

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/retention");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "golden"))
        .collect();
    files.sort();
    files
}

/// A line diff with 3 lines of context around each change (longest common subsequence; the
/// files are small).
fn diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // (marker, line number in the file, text)
    let mut ops: Vec<(char, usize, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', i + 1, a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i + 1, a[i]));
            i += 1;
        } else {
            ops.push(('+', i + 1, b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let near = |k: usize| {
        changed
            .iter()
            .any(|&c| k + CONTEXT >= c && k <= c + CONTEXT)
    };
    let mut out = String::new();
    let mut last_shown: Option<usize> = None;
    for (k, (mark, line, text)) in ops.iter().enumerate() {
        if !near(k) {
            continue;
        }
        if last_shown.is_none_or(|l| l + 1 != k) {
            out.push_str(&format!("@@ line {line} @@\n"));
        }
        out.push_str(&format!("{mark} {text}\n"));
        last_shown = Some(k);
    }
    out
}

#[test]
fn golden_cases() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v != "0" && !v.is_empty());
    let files = case_files();
    assert!(files.len() >= 20, "only {} golden cases found", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let input = match text.split_once(&format!("{MARKER}\n")) {
            Some((input, _)) => input.to_string(),
            None => {
                let mut t = text.clone();
                if !t.ends_with('\n') {
                    t.push('\n');
                }
                t
            }
        };
        let rendered = match parse_case(&input).and_then(|c| render(&c)) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let want = format!("{input}{MARKER}\n{rendered}");
        if want == text {
            continue;
        }
        if update {
            std::fs::write(path, &want).unwrap();
            eprintln!("updated {name}");
        } else {
            failures.push(format!(
                "{name} differs (- file, + computed; UPDATE_GOLDEN=1 rewrites it):\n{}",
                diff(&text, &want)
            ));
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {} golden cases failed:\n\n{}",
            failures.len(),
            files.len(),
            failures.join("\n")
        );
    }
}

/// The daemon embeds a policy in its TOML config exactly as the issue shows it.
#[test]
fn policy_embeds_in_toml_config() {
    #[derive(Deserialize)]
    struct Repo {
        #[allow(dead_code)]
        url: String,
        retention: Policy,
    }
    let cfg = r#"
        url = "s3://acme-backups/prod"
        retention = { keep_daily = 7, keep_weekly = 4, keep_monthly = 12, min_keep = 3 }
    "#;
    let r: Repo = toml::from_str(cfg).unwrap();
    assert_eq!(
        r.retention,
        Policy {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(12),
            min_keep: Some(3),
            ..Policy::default()
        }
    );

    // Every field, written in TOML, read back unchanged; only the set fields are written.
    let full: Policy = toml::from_str(
        r#"
        keep_last = 3
        keep_hourly = 24
        keep_daily = -1
        keep_weekly = 4
        keep_monthly = 12
        keep_yearly = 2
        keep_within = "1y2mo"
        keep_within_hourly = "2d"
        keep_within_daily = "2w3d4h"
        keep_within_weekly = "3mo"
        keep_within_monthly = "1y"
        keep_within_yearly = "10y"
        keep_tags = ["nightly", "db,important"]
        min_keep = 3
        max_keep = 100
        max_size = "50GiB"
        group_by = "host,source,tags"
        "#,
    )
    .unwrap();
    full.validate().unwrap();
    let text = toml::to_string(&full).unwrap();
    assert_eq!(toml::from_str::<Policy>(&text).unwrap(), full, "{text}");
    let sparse = toml::to_string(&r.retention).unwrap();
    assert_eq!(
        sparse,
        "keep_daily = 7\nkeep_weekly = 4\nkeep_monthly = 12\nmin_keep = 3\n"
    );
    // Sizes may be plain byte counts; group_by may be a list.
    let p: Policy = toml::from_str("max_size = 1000\ngroup_by = [\"host\"]").unwrap();
    assert_eq!(p.max_size, Some(ByteSize(1000)));
    assert!(p.group_by.host && !p.group_by.source);
    // A typo is an error, not a silently ignored rule.
    let err = toml::from_str::<Policy>("keep_dayly = 7").unwrap_err();
    assert!(err.to_string().contains("keep_dayly"), "{err}");
    assert!(toml::from_str::<Policy>("keep_within = \"7x\"").is_err());
}

/// An invalid policy is an error from `apply`, not a silent plan.
#[test]
fn invalid_policies_are_refused() {
    let p = Policy {
        min_keep: Some(5),
        max_keep: Some(2),
        ..Policy::default()
    };
    let err = retention::apply(&p, &[], Utc::now(), &Utc).unwrap_err();
    assert!(err.to_string().contains("min_keep"), "{err}");
}
