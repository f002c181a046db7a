//! A disk that fills up: during a backup (no snapshot, the repository still passes check) and
//! during a restore (each failed file named, no temporary file left behind).

use super::{env_with_repo, s};
use coffer_testkit::small_disk::SmallDisk;
use coffer_testkit::tree::write_random_file;

#[test]
fn a_full_disk_during_backup_lists_nothing_and_check_passes() {
    let env = crate::env();
    let disk = SmallDisk::mount(&env.path("small"), "12m");
    let repo = disk.path().join("repo");
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..4 {
        write_random_file(&src.join(format!("big-{i}.bin")), 10_000_000, i);
    }
    env.run(["--repo", s(&repo), "init"]).assert_ok();
    let r = env.run(["--repo", s(&repo), "backup", s(&src)]);
    assert_eq!(r.code(), 1, "a full disk fails the backup\n{}", r.stderr);
    assert!(
        r.stderr.contains("No space left") || r.stderr.contains("space"),
        "the error says why: {}",
        r.stderr
    );
    let lines: Vec<_> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("coffer: error"))
        .collect();
    assert_eq!(lines.len(), 1, "one clear error line: {}", r.stderr);
    let snaps = env
        .run(["--repo", s(&repo), "snapshots", "--json"])
        .assert_ok();
    assert_eq!(snaps.stdout.trim(), "[]", "no partial snapshot is listed");
    env.run(["--repo", s(&repo), "check"]).assert_ok();
}

#[test]
fn a_full_disk_during_restore_names_each_file_and_leaves_no_temporary_files() {
    let env = env_with_repo();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("small.txt"), 1000, 1);
    for i in 0..3 {
        write_random_file(&src.join(format!("big-{i}.bin")), 6_000_000, 10 + i);
    }
    env.run(["backup", s(&src)]).assert_ok();
    let disk = SmallDisk::mount(&env.path("small"), "8m");
    let target = disk.path().join("out");
    let r = env.run(["restore", "latest", "--target", s(&target)]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("could not restore /big-"),
        "names the failed files: {}",
        r.stderr
    );
    let leftovers: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".coffer-restore-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
    assert_eq!(
        std::fs::read(target.join("small.txt")).unwrap(),
        std::fs::read(src.join("small.txt")).unwrap()
    );
}
