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

/// How often commands were refused because another command held the lock.
#[derive(Default)]
struct Tally {
    refused: std::sync::atomic::AtomicU64,
}

/// Runs `coffer ARGS` until it is not refused for a lock (exit 11); it must then succeed.
#[track_caller]
fn run_when_unlocked(env: &CofferEnv, args: &[&str], tally: &Tally) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let out = env.run(args);
        if out.code() == 11 {
            tally
                .refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            assert!(
                std::time::Instant::now() < deadline,
                "`{}` was refused for 5 minutes: {out}",
                args.join(" ")
            );
            std::thread::sleep(std::time::Duration::from_millis(3));
            continue;
        }
        return out.assert_ok().json();
    }
}

/// One source folder of the concurrency test and its history of changes.
struct ChangingTree {
    dir: PathBuf,
    /// Pool seeds of the files, by name.
    files: BTreeMap<String, u64>,
    /// Changes made so far (drives the pseudo-random choices).
    generation: u64,
    /// Next file name number.
    next_name: u64,
}

/// A file of the shared pool: the same seed gives the same bytes in every source and round, so
/// new backups share data with older (forgotten, marked, repacked) snapshots.
fn pool_file(seed: u64) -> Vec<u8> {
    random_bytes(120_000 + (seed as usize * 7_919) % 700_000, 1_000 + seed)
}

/// A distinct explicit mtime for every write of the test (a changed file never looks unchanged).
fn fresh_mtime(path: &std::path::Path) {
    static N: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    coffer_testkit::tree::set_mtime(
        path,
        1_600_000_000 + n * 1_000,
        (n as u32 * 7_919) % 1_000_000_000,
    );
}

impl ChangingTree {
    fn new(env: &CofferEnv, i: u64) -> ChangingTree {
        let mut t = ChangingTree {
            dir: env.path(format!("src-{i}")),
            files: BTreeMap::new(),
            generation: i * 1_000,
            next_name: 0,
        };
        std::fs::create_dir_all(t.dir.join("sub")).unwrap();
        for j in 0..9u64 {
            // Sources overlap: seeds 3i..3i+8 of a pool of 40.
            let name = t.name(j % 3 == 0);
            t.put(&name, (3 * i + j) % 40);
        }
        t.touch_dirs();
        t
    }

    fn name(&mut self, in_sub: bool) -> String {
        self.next_name += 1;
        format!(
            "{}f{:03}.bin",
            if in_sub { "sub/" } else { "" },
            self.next_name
        )
    }

    fn put(&mut self, name: &str, seed: u64) {
        let p = self.dir.join(name);
        std::fs::write(&p, pool_file(seed)).unwrap();
        fresh_mtime(&p);
        self.files.insert(name.to_string(), seed);
    }

    fn touch_dirs(&self) {
        fresh_mtime(&self.dir.join("sub"));
    }

    /// Rewrites three files with other pool files, deletes one and adds one.
    fn change(&mut self) {
        self.generation += 1;
        let mut x = self.generation.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let names: Vec<String> = self.files.keys().cloned().collect();
        for _ in 0..3 {
            let name = &names[(next() % names.len() as u64) as usize];
            let old = self.files[name];
            let seed = (old + 1 + next() % 39) % 40; // a different pool file
            self.put(name, seed);
        }
        if self.files.len() > 6 {
            let name = names[(next() % names.len() as u64) as usize].clone();
            std::fs::remove_file(self.dir.join(&name)).unwrap();
            self.files.remove(&name);
        }
        let in_sub = next() % 2 == 0;
        let name = self.name(in_sub);
        self.put(&name, next() % 40);
        self.touch_dirs();
    }
}

/// Backs the tree up (retrying while prune holds the lock); records what the snapshot holds.
fn backup_and_record(
    env: &CofferEnv,
    t: &ChangingTree,
    states: &std::sync::Mutex<BTreeMap<String, coffer_testkit::tree::TreeSnapshot>>,
    tally: &Tally,
) -> String {
    let state = snapshot_tree(&t.dir);
    let out = run_when_unlocked(env, &["--json", "backup", s(&t.dir)], tally);
    let id = out["snapshot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot_id in {out:#}"))
        .to_string();
    states.lock().unwrap().insert(id.clone(), state);
    id
}

/// Ids of the snapshots a `forget --json` removed.
fn removed_ids(out: &Value) -> Vec<String> {
    // An array, or `{"snapshots": [...], "prune": {...}}` with --prune.
    out.get("snapshots")
        .unwrap_or(out)
        .as_array()
        .unwrap_or_else(|| panic!("no snapshot rows in {out:#}"))
        .iter()
        .filter(|r| r["keep"] == false)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Real processes: `forget` and `prune` (short grace periods, then none) race `backup` runs of
/// three changing trees that share data with the snapshots being pruned, for four rounds; later
/// prunes delete what earlier ones marked while backups run. Afterwards `check --read-data`
/// passes and every remaining snapshot restores to the tree it was taken of.
///
/// Needs backups to take their lock before they read the index: a backup that read it first
/// failed on an index file a prune had just removed (and, with `--grace 0s`, could deduplicate
/// against packs the prune deleted).
#[test]
fn backups_running_while_prune_runs_lose_nothing() {
    use std::sync::{Barrier, Mutex};
    let env = env_with_repo();
    let states = Mutex::new(BTreeMap::new());
    let backups = Tally::default();
    let prunes = Tally::default();
    let mut removed: Vec<String> = Vec::new();

    // History: three snapshots of each tree, then forget all but the newest of each, so that
    // prune has whole packs to drop and partly used packs to repack.
    let mut trees: Vec<ChangingTree> = (0..3).map(|i| ChangingTree::new(&env, i)).collect();
    for round in 0..3 {
        for t in trees.iter_mut() {
            if round > 0 {
                t.change();
            }
            backup_and_record(&env, t, &states, &backups);
        }
    }
    let out = env
        .run(["--json", "forget", "--keep-last", "1"])
        .assert_ok()
        .json();
    removed.extend(removed_ids(&out));
    assert_eq!(removed.len(), 6);

    // Rounds: every tree changes and is backed up three times while prune (after a forget in
    // later rounds) tries to run; each side retries while the other holds the lock.
    //   round 0: prune --grace 1h --max-unused 0% repacks and marks (deletes nothing);
    //   round 1: forget --keep-last 2, prune --grace 2s deletes round 0's marks and marks more;
    //   round 2: forget --keep-last 3, prune --grace 2s deletes round 1's marks and marks more;
    //   round 3: forget --keep-last 4, prune --grace 0s deletes at once what it takes out of the
    //            index (a backup must never deduplicate against those packs).
    let mut reports: Vec<Value> = Vec::new();
    for round in 0..4 {
        if round == 1 || round == 2 {
            // The marks of the previous round are older than the grace period.
            std::thread::sleep(std::time::Duration::from_millis(2_100));
        }
        let start = Barrier::new(trees.len() + 1);
        let (report, forgotten) = std::thread::scope(|scope| {
            for t in trees.iter_mut() {
                let (env, states, backups, start) = (&env, &states, &backups, &start);
                scope.spawn(move || {
                    t.change();
                    backup_and_record(env, t, states, backups);
                    start.wait();
                    for _ in 0..2 {
                        t.change();
                        backup_and_record(env, t, states, backups);
                    }
                });
            }
            start.wait();
            let forgotten = if round > 0 {
                let keep = (round + 1).to_string();
                let out =
                    run_when_unlocked(&env, &["--json", "forget", "--keep-last", &keep], &prunes);
                removed_ids(&out)
            } else {
                Vec::new()
            };
            // Round 0 repacks every partly used pack; later rounds use the default limit.
            let args: &[&str] = if round == 0 {
                &["--json", "prune", "--grace", "1h", "--max-unused", "0%"]
            } else if round < 3 {
                &["--json", "prune", "--grace", "2s"]
            } else {
                &["--json", "prune", "--grace", "0s"]
            };
            let report = run_when_unlocked(&env, args, &prunes);
            (report, forgotten)
        });
        removed.extend(forgotten);
        reports.push(report);
    }
    let r0 = &reports[0];
    assert_eq!(packs(r0, "deleted"), 0, "round 0 only marks: {r0:#}");
    assert!(packs(r0, "pending") > 0, "round 0 marks packs: {r0:#}");
    assert!(
        packs(r0, "repacked_packs") > 0,
        "round 0 repacks partly used packs: {r0:#}"
    );
    assert!(
        packs(&reports[1], "deleted") >= packs(r0, "pending"),
        "round 1 deletes what round 0 marked: {reports:#?}"
    );
    let b = backups.refused.load(std::sync::atomic::Ordering::Relaxed);
    let p = prunes.refused.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("lock refusals: {b} backup runs, {p} forget/prune runs");

    let r3 = &reports[3];
    assert_eq!(
        packs(r3, "pending"),
        0,
        "grace 0 leaves nothing pending: {r3:#}"
    );
    assert!(
        packs(r3, "deleted") >= packs(&reports[2], "pending"),
        "round 3 deletes round 2's marks and its own: {reports:#?}"
    );
    env.run(["check", "--read-data"]).assert_ok();
    // Then nothing pending is left, and the repository is still whole.
    let last = prune(&env, &["--grace", "0s"]);
    assert_eq!(packs(&last, "pending"), 0, "{last:#}");
    env.run(["check", "--read-data"]).assert_ok();

    // Every snapshot that was not forgotten is there, and restores byte for byte.
    let states = states.into_inner().unwrap();
    let remaining = env.snapshot_ids();
    let mut expected: Vec<&String> = states.keys().filter(|id| !removed.contains(id)).collect();
    expected.sort();
    let mut got: Vec<&String> = remaining.iter().collect();
    got.sort();
    assert_eq!(got, expected, "the snapshots left are those not forgotten");
    assert_eq!(states.len(), 9 + 4 * 3 * 3, "every backup made a snapshot");
    for (n, id) in remaining.iter().enumerate() {
        let target = env.path(format!("restored-{n}"));
        env.run(["restore", id, "--target", s(&target)]).assert_ok();
        assert_trees_equal(&states[id], &snapshot_tree(&target));
    }
}
