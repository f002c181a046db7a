//! A backup killed (SIGKILL) or interrupted (SIGINT) half-way leaves a consistent repository with
//! no partial snapshot, and the next backup works (and, after SIGINT, reuses what was uploaded).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use coffer_testkit::cli::{collect_child, send_signal, str_field, u64_field, CofferEnv, SIGINT};
use coffer_testkit::tree::{assert_trees_equal, snapshot_tree, write_random_file};

use crate::{env_with_repo, s};

fn big_env() -> CofferEnv {
    let mut env = env_with_repo();
    // Backing up and restoring 200 MiB with a debug build on a busy machine takes a while.
    env.set_timeout(Duration::from_secs(900));
    env
}

/// Files of 25 MiB: 8 of them (200 MiB) keep a debug build busy for many seconds, 4 of them
/// (100 MiB) still span several 16 MiB packs.
const FILE_SIZE: u64 = 25 << 20;

/// `files` files of [`FILE_SIZE`] incompressible bytes.
fn big_source(env: &CofferEnv, files: u64) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..files {
        write_random_file(&src.join(format!("big-{i}.bin")), FILE_SIZE, 100 + i);
    }
    src
}

fn spawn_backup(env: &CofferEnv, src: &Path) -> Child {
    env.cmd(["backup", s(src)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coffer backup")
}

/// Wait until a pack file exists under data/ or `limit` has passed; returns whether one exists.
fn wait_for_pack(env: &CofferEnv, child: &mut Child, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !env.pack_files().is_empty() {
            return true;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("backup ended ({status}) before it could be interrupted");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !env.pack_files().is_empty()
}

#[test]
fn kill_9_during_backup_leaves_a_consistent_repository() {
    let env = big_env();
    let src = big_source(&env, 8);
    let total = 8 * FILE_SIZE;

    let mut child = spawn_backup(&env, &src);
    wait_for_pack(&env, &mut child, Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "backup finished before it could be killed: make the data bigger"
    );
    child.kill().unwrap(); // SIGKILL
    let out = collect_child(child, "coffer backup (killed)", Duration::from_secs(30));
    assert_eq!(out.status_code(), None, "not killed by the signal\n{out}");

    env.run(["check"]).assert_ok();
    assert!(
        env.snapshots(None::<&str>).is_empty(),
        "a partial snapshot is listed"
    );

    let summary = env.backup([s(&src)]);
    assert_eq!(u64_field(&summary, "total_bytes"), total, "{summary:#}");
    let target = env.path("restored");
    env.run([
        "restore",
        &str_field(&summary, "snapshot_id"),
        "--target",
        s(&target),
    ])
    .assert_ok();
    assert_trees_equal(&snapshot_tree(&src), &snapshot_tree(&target));
    env.run(["check"]).assert_ok();
}

#[test]
fn sigint_during_backup_saves_no_snapshot_and_the_next_backup_reuses_uploaded_data() {
    let env = big_env();
    let src = big_source(&env, 4);
    let total = 4 * FILE_SIZE;

    let mut child = spawn_backup(&env, &src);
    let pid = child.id();
    assert!(
        wait_for_pack(&env, &mut child, Duration::from_secs(300)),
        "no pack appeared under data/ during the backup"
    );
    send_signal(pid, SIGINT);
    let out = collect_child(child, "coffer backup (SIGINT)", Duration::from_secs(120));
    assert!(
        !out.status.success(),
        "an interrupted backup exited 0\n{out}"
    );

    assert!(
        env.snapshots(None::<&str>).is_empty(),
        "an interrupted backup left a snapshot\n{out}"
    );
    env.run(["check"]).assert_ok();

    let summary = env.backup([s(&src)]);
    let added = u64_field(&summary, "bytes_added");
    assert!(
        added < total,
        "the next backup added {added} bytes of {total}: the packs uploaded before SIGINT were not reused\n{summary:#}"
    );
    assert_eq!(u64_field(&summary, "total_bytes"), total, "{summary:#}");
    env.run(["verify", "latest"]).assert_ok();
}
