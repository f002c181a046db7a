//! Maintenance commands: `index compact` merges index files and loses nothing.

use super::{env_with_repo, s, write_files};
use coffer_testkit::tree::{assert_trees_equal, snapshot_tree};

#[test]
fn index_compact_merges_index_files_and_every_snapshot_still_restores() {
    let env = env_with_repo();
    let src = env.path("src");
    for i in 0..3 {
        write_files(
            &src,
            &[(
                &format!("f{i}.txt") as &str,
                format!("version {i}").as_bytes(),
            )],
        );
        env.run(["backup", s(&src)]).assert_ok();
    }
    let count = || std::fs::read_dir(env.repo_path("index")).unwrap().count();
    assert_eq!(count(), 3);
    let out = env.run(["--json", "index", "compact"]).assert_ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (
            v["index_files_before"].as_u64(),
            v["index_files_after"].as_u64()
        ),
        (Some(3), Some(1))
    );
    assert_eq!(count(), 1);
    env.run(["check", "--read-data"]).assert_ok();
    for (i, id) in env.snapshot_ids().iter().enumerate() {
        env.run(["verify", id]).assert_ok();
        let target = env.path(format!("restored-{i}"));
        env.run(["restore", id, "--target", s(&target)]).assert_ok();
        assert_eq!(snapshot_tree(&target).len(), i + 1);
    }
    let last = env.path("restored-2");
    assert_trees_equal(&snapshot_tree(&src), &snapshot_tree(&last));
}
