//! Several clients back up into one repository at the same time, without an exclusive lock;
//! an exclusive command waits for none of them and is refused with exit 11 while they run.

use super::{env_with_repo, s};
use coffer_testkit::tree::{assert_trees_equal, snapshot_tree, write_random_file};

#[test]
fn concurrent_backups_of_different_sources_all_succeed_and_restore() {
    let env = env_with_repo();
    let mut sources = Vec::new();
    for i in 0..3u64 {
        let src = env.path(format!("src-{i}"));
        std::fs::create_dir_all(&src).unwrap();
        write_random_file(&src.join("big.bin"), 24_000_000, 100 + i);
        write_random_file(&src.join("shared.bin"), 3_000_000, 7); // the same in every source
        sources.push(src);
    }
    let children: Vec<_> = sources
        .iter()
        .map(|src| {
            env.cmd(["--json", "backup", s(src)])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a concurrent backup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let snaps = env.snapshots(Vec::<&str>::new());
    assert_eq!(snaps.len(), 3);
    env.run(["check", "--read-data"]).assert_ok();
    for (i, src) in sources.iter().enumerate() {
        let target = env.path(format!("restored-{i}"));
        env.run([
            "restore",
            "latest",
            "--source",
            s(src),
            "--target",
            s(&target),
        ])
        .assert_ok();
        assert_trees_equal(&snapshot_tree(src), &snapshot_tree(&target));
    }
}

#[test]
fn an_exclusive_command_is_refused_with_exit_11_while_a_backup_runs() {
    let env = env_with_repo();
    let backup = crate::PausedBackup::start(&env, 100_000_000, 3);
    let r = env.run(["delete", "latest"]);
    assert!(
        backup.resume(),
        "the paused backup completes after being resumed"
    );
    assert_eq!(r.code(), 11, "delete during a backup: {}", r.stderr);
    assert!(
        r.stderr.contains("locked by `backup`"),
        "names who holds the lock: {}",
        r.stderr
    );
}
