//! The whole `coffer` binary against an S3 server (moto) that misbehaves: every request goes
//! through `coffer_testkit::fault_proxy`, a TCP proxy that resets connections, cuts requests,
//! answers `503 SlowDown` and loses answers (about 10% of requests), goes down half-way
//! through a backup, or accepts connections and never answers.
//!
//! * with 10% of requests broken, backups, `check --read-data` and a restore still succeed and
//!   the restore is identical to the source;
//! * an answer lost after moto completed a multipart upload (the client retries a finished
//!   upload) does not fail the backup;
//! * a storage that goes down mid-backup ends the backup after bounded retries with an error
//!   naming the server, and no snapshot of that run is ever listed;
//! * a storage that never answers ends in a timeout error, not a hang.
//!
//! The retries and timeouts are the storage defaults (see `coffer_storage::StorageOptions`):
//! 5 retries from 0.5 s doubling, 60 s per attempt; the stalled-server test shortens them with
//! `-o storage.timeout=3 -o storage.retries=1`.

use super::s;
use coffer_testkit::cli::{CmdOutput, CofferEnv};
use coffer_testkit::fault_proxy::{FaultProxy, Mode};
use coffer_testkit::servers::S3Server;
use coffer_testkit::tree::{assert_trees_equal, snapshot_tree, write_random_file};
use std::path::Path;
use std::time::{Duration, Instant};

const SECRET: &str = "fault-test-secret-that-must-never-be-printed";

/// moto behind a fault proxy, and a sealed CLI environment pointed at the proxy.
struct Flaky {
    s3: S3Server,
    proxy: FaultProxy,
    env: CofferEnv,
    url: String,
}

impl Flaky {
    fn start() -> Flaky {
        let s3 = S3Server::start();
        let proxy = FaultProxy::start(s3.port);
        let env = crate::env();
        let url = s3.url("faults/repo");
        Flaky {
            s3,
            proxy,
            env,
            url,
        }
    }

    /// `coffer --repo URL ARGS` against the proxy (or straight to moto with `direct`).
    fn run_via(&self, direct: bool, args: &[&str]) -> CmdOutput {
        let endpoint = if direct {
            self.s3.endpoint()
        } else {
            self.proxy.endpoint()
        };
        let mut all = vec!["--repo", self.url.as_str()];
        all.extend_from_slice(args);
        let mut c = self.env.cmd(all);
        c.env("AWS_ENDPOINT_URL_S3", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "coffer-test")
            .env("AWS_SECRET_ACCESS_KEY", SECRET);
        let out = self.env.run_cmd(c);
        assert!(
            !out.stdout.contains(SECRET) && !out.stderr.contains(SECRET),
            "a secret was printed\n{out}"
        );
        out
    }

    /// Through the proxy.
    fn run(&self, args: &[&str]) -> CmdOutput {
        self.run_via(false, args)
    }

    /// The snapshot ids `snapshots --json` lists (through the proxy, which must be up).
    fn snapshot_ids(&self, direct: bool) -> Vec<String> {
        let out = self
            .run_via(direct, &["--no-cache", "--json", "snapshots"])
            .assert_ok();
        let list: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
        list.iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A few hundred small files in nested folders, a medium file and one above the multipart
/// threshold (16 MiB), so that a backup makes many requests of every kind.
fn make_source(dir: &Path, seed: u64) {
    for i in 0..240u64 {
        let sub = dir.join(format!("d{}/e{}", i % 12, i % 5));
        std::fs::create_dir_all(&sub).unwrap();
        write_random_file(
            &sub.join(format!("f{i}.bin")),
            1_000 + (i * 7_919) % 24_000,
            seed * 1_000 + i,
        );
    }
    write_random_file(&dir.join("medium.bin"), 3_000_000, seed * 1_000 + 500);
    write_random_file(&dir.join("large.bin"), 18_000_000, seed * 1_000 + 501);
}

#[test]
fn backups_check_and_restore_succeed_when_a_tenth_of_s3_requests_fail() {
    let f = Flaky::start();
    f.proxy.set_mode(Mode::Flaky(100));
    f.run(&["init"]).assert_ok();
    let src = f.env.path("src");
    make_source(&src, 1);
    let first = f.run(&["--json", "backup", s(&src)]).assert_ok().json();
    assert!(
        first["bytes_added"].as_u64().unwrap() > 20_000_000,
        "{first}"
    );
    // Change a few files and add one: the second backup uploads new data too.
    write_random_file(&src.join("d3/e3/f3.bin"), 40_000, 77);
    write_random_file(&src.join("added.bin"), 2_500_000, 78);
    let second = f.run(&["--json", "backup", s(&src)]).assert_ok().json();
    assert_eq!(second["type"], "incremental", "{second}");
    assert!(
        second["bytes_added"].as_u64().unwrap() > 2_000_000,
        "{second}"
    );

    f.run(&["--no-cache", "check", "--read-data"]).assert_ok();
    let target = f.env.path("restored");
    f.run(&["--no-cache", "restore", "latest", "--target", s(&target)])
        .assert_ok();
    assert_trees_equal(&snapshot_tree(&src), &snapshot_tree(&target));
    assert_eq!(f.snapshot_ids(false).len(), 2);

    let faults = f.proxy.faults();
    let by_kind = f.proxy.faults_by_kind();
    eprintln!(
        "fault proxy: {} requests, {} connections, {faults} faults injected: {by_kind:?}",
        f.proxy.requests(),
        f.proxy.connections()
    );
    assert!(
        faults > 0,
        "no fault was injected in {} requests",
        f.proxy.requests()
    );
    assert!(
        f.proxy.requests() > 100,
        "too few requests ({}) to exercise the retries",
        f.proxy.requests()
    );

    // The repository itself is sound, read without the proxy in the way.
    f.run_via(true, &["--no-cache", "check", "--read-data"])
        .assert_ok();
    assert_eq!(f.snapshot_ids(true).len(), 2);
}

#[test]
fn a_backup_that_loses_s3_half_way_fails_clearly_and_lists_no_snapshot() {
    let f = Flaky::start();
    f.run(&["init"]).assert_ok();
    let src = f.env.path("src");
    make_source(&src, 2);
    let before = f.proxy.requests();
    f.run(&["backup", s(&src)]).assert_ok();
    let full = f.proxy.requests() - before;
    let kept = f.snapshot_ids(false);
    assert_eq!(kept.len(), 1);

    // New data of the same shape; the storage goes down half-way through its upload.
    let src2 = f.env.path("src2");
    make_source(&src2, 3);
    f.proxy.down_after_requests(full / 2);
    let out = f.run(&["backup", s(&src2)]);
    let ended = Instant::now();
    let down_since = f
        .proxy
        .went_down_at()
        .unwrap_or_else(|| panic!("the backup ended before the storage went down\n{out}"));
    let took = ended - down_since;
    eprintln!("storage down mid-backup: the backup failed {took:?} after the storage went down");
    assert_eq!(out.code(), 1, "a storage failure exits 1\n{out}");
    let port = f.proxy.port().to_string();
    assert!(
        out.stderr.contains("cannot reach the S3 server")
            && out.stderr.contains(&format!("127.0.0.1:{port}")),
        "the error names the storage and its address\n{out}"
    );
    assert!(
        out.stderr.contains("connection refused") || out.stderr.contains("connection reset"),
        "the error says why\n{out}"
    );
    // 5 retries from 0.5 s, doubling, with jitter: well under two minutes.
    assert!(
        took < Duration::from_secs(120),
        "the retries are not bounded: the backup ran {took:?} after the storage went down"
    );

    // While it is down, nothing is listed; back up, only the first snapshot is.
    let listed = f.run(&["--no-cache", "snapshots"]);
    assert_eq!(listed.code(), 1, "{listed}");
    f.proxy.set_mode(Mode::Pass);
    assert_eq!(f.snapshot_ids(false), kept, "a partial snapshot is listed");
    assert_eq!(f.snapshot_ids(true), kept);
    f.run(&["--no-cache", "check"]).assert_ok();

    // The repository is usable: the same backup now succeeds.
    let again = f.run(&["--json", "backup", s(&src2)]).assert_ok().json();
    assert!(again["bytes_added"].as_u64().unwrap() > 0, "{again}");
    assert_eq!(f.snapshot_ids(false).len(), 2);
    f.run(&["--no-cache", "check", "--read-data"]).assert_ok();
    let target = f.env.path("restored");
    f.run(&["--no-cache", "restore", "latest", "--target", s(&target)])
        .assert_ok();
    assert_trees_equal(&snapshot_tree(&src2), &snapshot_tree(&target));
}

#[test]
fn an_s3_server_that_never_answers_ends_in_a_timeout_error() {
    let f = Flaky::start();
    f.run(&["init"]).assert_ok();
    f.proxy.set_mode(Mode::Stall);
    // With the defaults (six attempts of 60 s plus the back-off) this takes about 6.5 minutes;
    // the storage options shorten it to two attempts of 3 s.
    let start = Instant::now();
    let out = f.run(&[
        "--no-cache",
        "-o",
        "storage.timeout=3",
        "-o",
        "storage.retries=1",
        "snapshots",
    ]);
    let took = start.elapsed();
    eprintln!(
        "stalled storage: failed after {took:?}: {}",
        out.stderr.trim()
    );
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains("timed out") || out.stderr.contains("timeout"),
        "the error says the storage timed out\n{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("127.0.0.1:{}", f.proxy.port())),
        "the error names the storage's address\n{out}"
    );
    assert!(f.proxy.connections() > 0, "the proxy never saw the command");
    assert!(
        took < Duration::from_secs(60),
        "storage.timeout and storage.retries were not applied: {took:?}"
    );
}

#[test]
fn a_lost_answer_to_a_completed_multipart_upload_does_not_fail_the_backup() {
    let f = Flaky::start();
    f.run(&["init"]).assert_ok();
    // The first CompleteMultipartUpload (`POST KEY?uploadId=...`) reaches moto, which
    // completes the object, but its answer is lost: the client retries a finished upload.
    f.proxy.aim(
        Some("?uploadId="),
        &[coffer_testkit::fault_proxy::Fault::LostResponse],
        1,
    );
    f.proxy.set_mode(Mode::Flaky(1000));
    let src = f.env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("large.bin"), 18_000_000, 11);
    let out = f.run(&["--json", "backup", s(&src)]);
    assert_eq!(
        f.proxy.faults(),
        1,
        "the completion's answer was not lost\n{out}"
    );
    out.assert_ok();
    f.proxy.set_mode(Mode::Pass);
    f.run(&["--no-cache", "check", "--read-data"]).assert_ok();
    let target = f.env.path("restored");
    f.run(&["--no-cache", "restore", "latest", "--target", s(&target)])
        .assert_ok();
    assert_trees_equal(&snapshot_tree(&src), &snapshot_tree(&target));
}
