//! `coffer prune` and `forget --prune`: space is freed, partly used packs are repacked, the grace
//! period is honoured, a blob a backup re-used between the two phases survives, a dry run changes
//! nothing, a kill -9 at any stage leaves a repository check passes, and a running backup keeps
//! prune out.

use super::{env_with_repo, s, write_files};
use coffer_testkit::cli::{u64_field, CofferEnv};
use coffer_testkit::tree::{assert_trees_equal, random_bytes, snapshot_tree};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

/// Bytes of every pack file.
fn pack_bytes(env: &CofferEnv) -> u64 {
    env.pack_files()
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// Every object of the repository with its size (a dry run must leave this unchanged).
fn objects(env: &CofferEnv) -> BTreeMap<PathBuf, u64> {
    fn walk(dir: &std::path::Path, out: &mut BTreeMap<PathBuf, u64>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(p.clone(), e.metadata().unwrap().len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(env.repo(), &mut out);
    out.retain(|p, _| !p.starts_with(env.repo_path("locks")));
    out
}

/// `coffer --json prune ARGS`, which must succeed; returns the report.
#[track_caller]
fn prune(env: &CofferEnv, args: &[&str]) -> Value {
    let mut all = vec!["--json", "prune"];
    all.extend_from_slice(args);
    env.run(all).assert_ok().json()
}

fn packs(v: &Value, key: &str) -> u64 {
    u64_field(&v[key], "packs")
}

/// Two snapshots of `src`: the first holds `a` and `b` (one data pack), the second `a` and `c`.
/// Returns the source folder.
fn two_snapshots(env: &CofferEnv) -> PathBuf {
    let src = env.path("src");
    write_files(
        &src,
        &[
            ("a.bin", &random_bytes(700_000, 1)),
            ("b.bin", &random_bytes(700_000, 2)),
        ],
    );
    env.backup([s(&src)]);
    std::fs::remove_file(src.join("b.bin")).unwrap();
    write_files(&src, &[("c.bin", &random_bytes(300_000, 3))]);
    env.backup([s(&src)]);
    src
}

#[track_caller]
fn assert_latest_restores(env: &CofferEnv, src: &std::path::Path, name: &str) {
    let target = env.path(name);
    env.run(["restore", "latest", "--target", s(&target)])
        .assert_ok();
    assert_trees_equal(&snapshot_tree(src), &snapshot_tree(&target));
}

#[test]
fn forget_then_prune_frees_space_and_the_kept_snapshot_restores() {
    let env = env_with_repo();
    let src = two_snapshots(&env);
    let before = pack_bytes(&env);
    let out = env
        .run([
            "--json",
            "forget",
            "--keep-last",
            "1",
            "--prune",
            "--grace",
            "0s",
        ])
        .assert_ok()
        .json();
    let rows = out["snapshots"].as_array().expect("the forget rows");
    assert_eq!(rows.len(), 2);
    let r = &out["prune"];
    assert_eq!(u64_field(r, "snapshots"), 1);
    assert!(packs(r, "deleted") >= 2, "{r:#}");
    assert_eq!(packs(r, "pending"), 0);
    let after = pack_bytes(&env);
    assert!(
        after + 600_000 < before,
        "b's 700 kB are freed: {before} -> {after}"
    );
    assert_eq!(u64_field(&r["after"], "bytes"), after);
    env.run(["check", "--read-data"]).assert_ok();
    assert_latest_restores(&env, &src, "restored");
    // Nothing is left to do.
    let r = prune(&env, &["--grace", "0s"]);
    assert_eq!(
        (packs(&r, "deleted"), packs(&r, "repacked_packs")),
        (0, 0),
        "{r:#}"
    );
    assert_eq!(u64_field(&r, "unused_bytes"), 0);
}

#[test]
fn partly_used_packs_are_repacked_unless_the_unused_share_is_tolerated() {
    let env = env_with_repo();
    let src = two_snapshots(&env);
    env.run(["forget", "--keep-last", "1"]).assert_ok();
    // Unlimited: only fully unused packs (the first snapshot's trees) go; the pack holding
    // a and b stays, half unused.
    let r = prune(&env, &["--max-unused", "unlimited", "--grace", "0s"]);
    assert_eq!(packs(&r, "repacked_packs"), 0, "{r:#}");
    assert!(packs(&r, "unused_packs") >= 1);
    assert!(u64_field(&r, "unused_bytes_after") > 600_000);
    env.run(["check"]).assert_ok();
    // A budget too small for a's bytes repacks nothing either.
    let r = prune(&env, &["--max-repack-size", "100KiB", "--grace", "0s"]);
    assert_eq!(packs(&r, "repacked_packs"), 0, "{r:#}");
    // The default (10%): that pack is repacked, a copied into a new pack, b freed.
    let before = pack_bytes(&env);
    let r = prune(&env, &["--grace", "0s"]);
    assert_eq!(packs(&r, "repacked_packs"), 1, "{r:#}");
    assert!(u64_field(&r, "repacked_bytes") >= 700_000);
    assert!(packs(&r, "new_packs") >= 1);
    assert_eq!(u64_field(&r, "unused_bytes_after"), 0);
    assert!(pack_bytes(&env) + 600_000 < before);
    env.run(["check", "--read-data"]).assert_ok();
    assert_latest_restores(&env, &src, "restored");
}

#[test]
fn the_grace_period_is_honoured() {
    let env = env_with_repo();
    let src = two_snapshots(&env);
    env.run(["forget", "--keep-last", "1"]).assert_ok();
    let files_before = env.pack_files();
    // Phase 1 with the default grace period (1h): marked, nothing deleted.
    let r = prune(&env, &[]);
    assert_eq!(packs(&r, "deleted"), 0, "{r:#}");
    let pending = packs(&r, "pending");
    assert!(pending >= 2, "{r:#}");
    assert!(r["next_deletion"].is_string());
    assert_eq!(r["grace_seconds"], 3600);
    for f in &files_before {
        assert!(
            f.is_file(),
            "{} was deleted within the grace period",
            f.display()
        );
    }
    // Check reports the marked packs as pending, not as errors, and reads the rest.
    env.run(["check", "--read-data"])
        .assert_ok()
        .assert_mentions("pending deletion");
    let c = env.run(["--json", "check"]).assert_ok().json();
    assert_eq!(u64_field(&c, "pending_packs"), pending);
    assert_latest_restores(&env, &src, "restored-1");
    // Still within the grace period: nothing.
    let r = prune(&env, &["--grace", "1h"]);
    assert_eq!(
        (packs(&r, "deleted"), packs(&r, "pending")),
        (0, pending),
        "{r:#}"
    );
    // Phase 2: the grace period is over.
    let r = prune(&env, &["--grace", "0s"]);
    assert_eq!(packs(&r, "deleted"), pending, "{r:#}");
    assert_eq!(packs(&r, "pending"), 0);
    let c = env
        .run(["--json", "check", "--read-data"])
        .assert_ok()
        .json();
    assert_eq!(u64_field(&c, "pending_packs"), 0);
    assert_latest_restores(&env, &src, "restored-2");
    // Bad values are usage errors.
    env.run(["prune", "--grace", "soon"])
        .assert_code(2)
        .assert_mentions("--grace");
    env.run(["prune", "--max-unused", "120%"])
        .assert_code(2)
        .assert_mentions("--max-unused");
}

#[test]
fn a_backup_between_the_two_phases_keeps_its_data() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(
        &src,
        &[
            ("a.bin", &random_bytes(600_000, 4)),
            ("b.bin", &random_bytes(600_000, 5)),
        ],
    );
    let first = env.backup([s(&src)]);
    env.run(["delete", first["snapshot_id"].as_str().unwrap()])
        .assert_ok();
    let r = prune(&env, &["--grace", "1h"]);
    assert!(packs(&r, "pending") >= 2, "{r:#}");
    // The same data again: its old packs are out of the index, so it is stored anew.
    let again = env.backup([s(&src)]);
    assert!(u64_field(&again, "blobs_added") > 0, "{again:#}");
    let r = prune(&env, &["--grace", "0s"]);
    assert!(packs(&r, "deleted") >= 2, "{r:#}");
    env.run(["check", "--read-data"]).assert_ok();
    assert_latest_restores(&env, &src, "restored");
}

/// A prune killed after writing its index but before removing the files it supersedes leaves
/// those files behind; a backup then reads them, and deduplicates against packs that are pending
/// deletion. The next prune must find that the new snapshot uses them and put them back.
#[test]
fn a_blob_reused_from_a_pending_pack_survives() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(
        &src,
        &[
            ("a.bin", &random_bytes(600_000, 6)),
            ("b.bin", &random_bytes(600_000, 7)),
        ],
    );
    let first = env.backup([s(&src)]);
    env.run(["delete", first["snapshot_id"].as_str().unwrap()])
        .assert_ok();
    let mut cmd = env.cmd(["prune", "--grace", "1h"]);
    cmd.env("COFFER_TEST_PRUNE_KILL_AT", "index-written");
    let out = env.run_cmd(cmd);
    assert_eq!(
        out.status.signal(),
        Some(9),
        "killed at index-written\n{out}"
    );
    env.run(["check", "--read-data"]).assert_ok();
    // The old index files are still there: the backup finds every blob in them.
    let again = env.backup([s(&src)]);
    assert_eq!(u64_field(&again, "blobs_added"), 0, "{again:#}");
    let r = prune(&env, &["--grace", "0s"]);
    assert!(packs(&r, "reindexed_packs") >= 1, "{r:#}");
    env.run(["check", "--read-data"]).assert_ok();
    assert_latest_restores(&env, &src, "restored");
    let r = prune(&env, &["--grace", "0s"]);
    assert_eq!(
        (packs(&r, "reindexed_packs"), packs(&r, "pending")),
        (0, 0),
        "{r:#}"
    );
    env.run(["check", "--read-data"]).assert_ok();
    assert_latest_restores(&env, &src, "restored-again");
}

#[test]
fn a_dry_run_changes_nothing() {
    let env = env_with_repo();
    two_snapshots(&env);
    let before = objects(&env);
    let snaps = env.snapshot_ids();
    let out = env
        .run([
            "--json",
            "forget",
            "--keep-last",
            "1",
            "--prune",
            "--dry-run",
        ])
        .assert_ok()
        .json();
    let r = &out["prune"];
    assert_eq!(r["dry_run"], true);
    assert_eq!(
        u64_field(r, "snapshots"),
        1,
        "the forgotten one is left out"
    );
    assert_eq!(packs(r, "repacked_packs"), 1, "{r:#}");
    assert_eq!(packs(r, "pending"), 2, "{r:#}");
    assert_eq!(objects(&env), before);
    assert_eq!(env.snapshot_ids(), snaps);

    env.run(["forget", "--keep-last", "1"]).assert_ok();
    let before = objects(&env);
    let r = prune(&env, &["--dry-run", "--grace", "0s"]);
    assert_eq!(r["dry_run"], true);
    assert!(packs(&r, "deleted") >= 2, "{r:#}");
    env.run(["prune", "-n", "--grace", "0s"])
        .assert_ok()
        .assert_mentions("would delete")
        .assert_mentions("dry run");
    assert_eq!(objects(&env), before);
}

#[test]
fn a_kill_at_any_stage_leaves_a_repository_check_passes() {
    for stage in [
        "packs-written",
        "index-written",
        "index-cleaned",
        "pack-deleted",
    ] {
        let env = env_with_repo();
        let src = two_snapshots(&env);
        env.run(["forget", "--keep-last", "1"]).assert_ok();
        let mut cmd = env.cmd(["prune", "--grace", "0s"]);
        cmd.env("COFFER_TEST_PRUNE_KILL_AT", stage);
        let out = env.run_cmd(cmd);
        assert_eq!(out.status.signal(), Some(9), "killed at {stage}\n{out}");
        env.run(["check", "--read-data"]).assert_ok();
        assert_latest_restores(&env, &src, "restored-1");
        // The next prune completes (the killed process's lock is stale: its pid is gone).
        let r = prune(&env, &["--grace", "0s"]);
        assert_eq!(packs(&r, "pending"), 0, "{stage}: {r:#}");
        env.run(["check", "--read-data"]).assert_ok();
        let r = prune(&env, &["--grace", "0s"]);
        assert_eq!(
            (
                packs(&r, "deleted"),
                packs(&r, "repacked_packs"),
                u64_field(&r, "unused_bytes")
            ),
            (0, 0, 0),
            "{stage}: {r:#}"
        );
        assert_latest_restores(&env, &src, "restored-2");
    }
}

#[test]
fn a_kill_with_a_grace_period_leaves_marks_a_later_prune_honours() {
    for stage in ["packs-written", "index-written", "index-cleaned"] {
        let env = env_with_repo();
        let src = two_snapshots(&env);
        env.run(["forget", "--keep-last", "1"]).assert_ok();
        let mut cmd = env.cmd(["prune"]);
        cmd.env("COFFER_TEST_PRUNE_KILL_AT", stage);
        let out = env.run_cmd(cmd);
        assert_eq!(out.status.signal(), Some(9), "killed at {stage}\n{out}");
        env.run(["check", "--read-data"]).assert_ok();
        let r = prune(&env, &[]);
        assert_eq!(packs(&r, "deleted"), 0, "{stage}: {r:#}");
        env.run(["check", "--read-data"]).assert_ok();
        prune(&env, &["--grace", "0s"]);
        let r = prune(&env, &["--grace", "0s"]);
        assert_eq!(
            (packs(&r, "deleted"), packs(&r, "pending")),
            (0, 0),
            "{stage}: {r:#}"
        );
        env.run(["check", "--read-data"]).assert_ok();
        assert_latest_restores(&env, &src, "restored");
    }
}

#[test]
fn prune_is_refused_with_exit_11_while_a_backup_runs() {
    let env = env_with_repo();
    let backup = crate::PausedBackup::start(&env, 64_000_000, 8);
    let before = objects(&env);
    let r = env.run(["prune", "--grace", "0s"]);
    let f = env.run(["forget", "--keep-last", "1", "--prune"]);
    let during = objects(&env);
    assert!(backup.resume(), "the backup completes");
    assert_eq!(r.code(), 11, "prune during a backup: {r}");
    assert!(r.stderr.contains("locked by `backup`"), "{r}");
    assert_eq!(f.code(), 11, "forget --prune during a backup: {f}");
    assert_eq!(during, before, "nothing changed");
    env.run(["check"]).assert_ok();
}
