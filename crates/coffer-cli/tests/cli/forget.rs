//! `forget`: retention policies applied to a real repository. Histories are made fast with
//! `backup --time`; the rules themselves are tested as golden cases in coffer-core.

use std::collections::BTreeSet;

use coffer_testkit::cli::{str_field, CofferEnv};
use serde_json::Value;

use crate::{env_with_repo, s, write_files};

/// Backs up `src` once per time (with `extra` flags); returns the ids in that order.
fn history(env: &CofferEnv, src: &str, times: &[&str], extra: &[&str]) -> Vec<String> {
    times
        .iter()
        .map(|t| {
            let mut args = vec![src, "--time", t];
            args.extend_from_slice(extra);
            str_field(&env.backup(args), "snapshot_id")
        })
        .collect()
}

/// A repository with six daily snapshots of one folder, 2026-01-01 .. 2026-01-06 at 10:00 UTC,
/// each adding new data (so each has a size estimate above zero).
fn six_days() -> (CofferEnv, Vec<String>) {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"alpha"), ("sub/b.txt", b"beta")]);
    let ids = (1..=6)
        .map(|d| {
            std::fs::write(src.join("a.txt"), format!("day {d}")).unwrap();
            let time = format!("2026-01-0{d}T10:00:00Z");
            str_field(&env.backup([s(&src), "--time", &time]), "snapshot_id")
        })
        .collect();
    (env, ids)
}

/// `coffer --json forget ARGS`, which must succeed; returns the rows.
fn forget_json(env: &CofferEnv, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json", "forget", "--timezone", "UTC"];
    all.extend_from_slice(args);
    let out = env.run(all).assert_ok();
    match out.json() {
        Value::Array(rows) => rows,
        other => panic!("`forget --json` printed {other}, not an array\n{out}"),
    }
}

fn ids_where(rows: &[Value], keep: bool) -> BTreeSet<String> {
    rows.iter()
        .filter(|r| r["keep"].as_bool() == Some(keep))
        .map(|r| str_field(r, "id"))
        .collect()
}

fn snapshot_files(env: &CofferEnv) -> BTreeSet<String> {
    std::fs::read_dir(env.repo_path("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn dry_run_changes_nothing() {
    let (env, ids) = six_days();
    let before = snapshot_files(&env);

    let out = env
        .run([
            "forget",
            "--keep-last",
            "2",
            "--dry-run",
            "--timezone",
            "UTC",
        ])
        .assert_ok();
    // Every snapshot is listed, as keep or remove, with the rule that kept it.
    for id in &ids {
        assert!(out.stdout.contains(&id[..8]), "{id} not listed\n{out}");
    }
    assert_eq!(
        out.lines()
            .iter()
            .filter(|l| l.trim_start().starts_with("keep "))
            .count(),
        2,
        "{out}"
    );
    assert_eq!(
        out.lines()
            .iter()
            .filter(|l| l.trim_start().starts_with("remove "))
            .count(),
        4,
        "{out}"
    );
    assert!(out.stdout.contains("last 1/2"), "{out}");
    assert!(out.stdout.contains("would remove 4 of 6"), "{out}");

    // --json --dry-run too.
    let rows = forget_json(&env, &["--keep-last", "2", "-n"]);
    assert_eq!(ids_where(&rows, false).len(), 4);

    assert_eq!(env.snapshot_ids(), ids, "a dry run deleted snapshots");
    assert_eq!(snapshot_files(&env), before);
    // It took a lock and gave it back.
    let locks = std::fs::read_dir(env.repo_path("locks")).map_or(0, |d| d.count());
    assert_eq!(locks, 0, "a lock was left behind");
}

#[test]
fn a_real_run_deletes_exactly_the_listed_ones() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"alpha")]);
    let times = [
        "2026-01-01T10:00:00Z",
        "2026-01-02T09:00:00Z",
        "2026-01-02T18:00:00Z",
        "2026-01-03T10:00:00Z",
        "2026-01-08T10:00:00Z",
        "2026-01-09T10:00:00Z",
    ];
    let mut ids = history(&env, s(&src), &times[..1], &["--tag", "release"]);
    ids.extend(history(&env, s(&src), &times[1..], &[]));

    let policy = ["--keep-daily", "3", "--keep-tag", "release"];
    let plan = forget_json(&env, &[&policy[..], &["--dry-run"]].concat());
    let rows = forget_json(&env, &policy);
    assert_eq!(rows, plan, "the real run did what the dry run said");

    let kept = ids_where(&rows, true);
    let removed = ids_where(&rows, false);
    // Days 9, 8 and 3 (newest of each); day 1 by its tag; both of day 2 go.
    let expect_kept: BTreeSet<String> = [0, 3, 4, 5].iter().map(|&i| ids[i].clone()).collect();
    assert_eq!(kept, expect_kept);
    assert_eq!(removed.len(), 2);
    let left: BTreeSet<String> = env.snapshot_ids().into_iter().collect();
    assert_eq!(left, kept, "exactly the removed ones were deleted");

    // Every kept snapshot still restores on its own, and the repository checks.
    for id in &kept {
        env.run(["verify", id]).assert_ok();
    }
    env.run(["check"]).assert_ok();

    // Running the same policy again removes nothing more.
    let again = forget_json(&env, &policy);
    assert!(again.iter().all(|r| r["keep"] == Value::Bool(true)));
}

#[test]
fn json_output_shape() {
    let (env, ids) = six_days();
    let rows = forget_json(
        &env,
        &["--keep-last", "1", "--keep-daily", "2", "--dry-run"],
    );
    assert_eq!(rows.len(), ids.len());
    // Oldest first, like `snapshots`.
    let got: Vec<String> = rows.iter().map(|r| str_field(r, "id")).collect();
    assert_eq!(got, ids);
    for r in &rows {
        assert_eq!(str_field(r, "id").len(), 64, "{r:#}");
        assert!(r["time"].as_str().is_some(), "{r:#}");
        assert!(r["hostname"].as_str().is_some(), "{r:#}");
        assert!(r["source"].as_str().is_some(), "{r:#}");
        assert!(r["tags"].is_array(), "{r:#}");
        assert!(r["group"]["host"].is_string(), "{r:#}");
        assert!(r["group"]["source"].is_string(), "{r:#}");
        assert!(r["keep"].is_boolean(), "{r:#}");
        assert!(r["reasons"].is_array(), "{r:#}");
        assert!(r["size_estimate"].is_u64(), "{r:#}");
        assert!(r.get("removed_by").is_some(), "{r:#}");
    }
    let newest = &rows[5];
    assert_eq!(newest["keep"], Value::Bool(true));
    let reasons: Vec<&str> = newest["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["last 1/1", "daily 1/2"]);
    assert_eq!(rows[4]["reasons"], serde_json::json!(["daily 2/2"]));
    assert_eq!(rows[0]["keep"], Value::Bool(false));
    assert_eq!(rows[0]["reasons"], serde_json::json!([]));

    // A limit that removes a kept snapshot says so.
    let rows = forget_json(&env, &["--keep-last", "3", "--max-keep", "2", "-n"]);
    assert_eq!(rows[3]["keep"], Value::Bool(false));
    assert_eq!(rows[3]["removed_by"], Value::from("max_keep 2"));
    assert_eq!(rows[3]["reasons"], serde_json::json!(["last 3/3"]));
}

#[test]
fn an_empty_policy_is_refused() {
    let (env, ids) = six_days();
    for args in [
        vec!["forget"],
        vec!["forget", "--dry-run"],
        vec!["forget", "--keep-last", "0"],
        vec!["forget", "--min-keep", "3"],
        vec!["forget", "--group-by", "host"],
    ] {
        env.run(&args)
            .assert_code(2)
            .assert_one_line_error()
            .assert_mentions("no retention policy");
    }
    let out = env.run(["--json", "forget"]).assert_code(2);
    assert_eq!(out.json()["exit_code"], Value::from(2), "{out}");
    assert_eq!(env.snapshot_ids(), ids);
}

#[test]
fn bad_values_are_usage_errors() {
    let (env, ids) = six_days();
    for (args, needle) in [
        (vec!["forget", "--keep-within", "3x"], "duration"),
        (vec!["forget", "--keep-within-daily", "0d"], "duration"),
        // A bare `m` is minutes to some and months to others: refused, saying what to write.
        (
            vec!["forget", "--keep-within", "1y2m"],
            "write 1y2mo for months",
        ),
        (vec!["forget", "--keep-last", "-2"], "keep_last"),
        (
            vec!["forget", "--min-keep", "5", "--max-keep", "2"],
            "min_keep",
        ),
        (vec!["forget", "--max-size", "lots"], "size"),
        (
            vec!["forget", "--keep-last", "1", "--group-by", "colour"],
            "group",
        ),
        (
            vec!["forget", "--keep-last", "1", "--timezone", "Mars/Olympus"],
            "time zone",
        ),
    ] {
        env.run(&args)
            .assert_code(2)
            .assert_one_line_error()
            .assert_mentions(needle);
    }
    // Bad prune flags are usage errors too, found before anything is forgotten.
    env.run(["forget", "--keep-last", "1", "--prune", "--grace", "soon"])
        .assert_code(2);
    env.run(["forget", "--keep-last", "1", "--prune", "--grace", "30m"])
        .assert_code(2)
        .assert_mentions("write 30min for minutes");
    env.run([
        "forget",
        "--keep-last",
        "1",
        "--prune",
        "--max-unused",
        "120%",
    ])
    .assert_code(2);
    assert_eq!(env.snapshot_ids(), ids);
}

#[test]
fn groups_are_host_and_source_unless_told_otherwise() {
    let env = env_with_repo();
    let one = env.path("one");
    let two = env.path("two");
    write_files(&one, &[("a.txt", b"a")]);
    write_files(&two, &[("b.txt", b"b")]);
    let t = ["2026-01-01T10:00:00Z", "2026-01-02T10:00:00Z"];
    let a1 = history(&env, s(&one), &t, &["--host", "alpha"]);
    let a2 = history(&env, s(&two), &t, &["--host", "alpha"]);
    let b1 = history(&env, s(&one), &t, &["--host", "beta"]);

    // One kept per (host, source): three groups.
    let rows = forget_json(&env, &["--keep-last", "1", "-n"]);
    let expect: BTreeSet<String> = [&a1[1], &a2[1], &b1[1]].into_iter().cloned().collect();
    assert_eq!(ids_where(&rows, true), expect);

    // By host only: the newest of each host (ties of time: the larger id counts as newer).
    let rows = forget_json(&env, &["--keep-last", "1", "--group-by", "host", "-n"]);
    assert_eq!(ids_where(&rows, true).len(), 2);
    assert!(ids_where(&rows, true).contains(&b1[1]));

    // One group of everything.
    let rows = forget_json(&env, &["--keep-last", "1", "--group-by", "", "-n"]);
    assert_eq!(ids_where(&rows, true).len(), 1);
}

#[test]
fn max_size_never_empties_a_group_and_says_when_it_cannot_meet_the_cap() {
    let (env, ids) = six_days();
    let out = env
        .run(["forget", "--max-size", "1", "--timezone", "UTC"])
        .assert_ok()
        .assert_mentions("cannot be met");
    assert!(
        out.stdout.contains("estimated size of the kept snapshots"),
        "{out}"
    );
    assert_eq!(env.snapshot_ids(), vec![ids[5].clone()], "{out}");
}

#[test]
fn min_keep_keeps_the_newest_when_no_rule_matches() {
    let (env, ids) = six_days();
    // No snapshot carries the tag: without --min-keep every one would go.
    let rows = forget_json(&env, &["--keep-tag", "nope", "-n"]);
    assert!(rows.iter().all(|r| r["keep"] == Value::Bool(false)));
    forget_json(&env, &["--keep-tag", "nope", "--min-keep", "2"]);
    assert_eq!(env.snapshot_ids(), ids[4..].to_vec());
}
