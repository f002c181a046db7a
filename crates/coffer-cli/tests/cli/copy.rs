//! `coffer copy`: between repositories with different passwords, compression and encryption;
//! snapshots keep their ids, the copy restores exactly, and copying again adds nothing.

use super::{env_with_repo, s, write_files};
use coffer_testkit::tree::{assert_trees_equal, snapshot_tree, write_random_file};

#[test]
fn copy_keeps_ids_restores_exactly_and_is_idempotent() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"first"), ("dir/b.txt", b"second")]);
    write_random_file(&src.join("big.bin"), 5_000_000, 9);
    env.run(["backup", s(&src), "--tag", "one"]).assert_ok();
    std::fs::write(src.join("a.txt"), b"changed").unwrap();
    env.run(["backup", s(&src), "--tag", "two"]).assert_ok();
    let ids = env.snapshot_ids();

    let other = env.path("offsite");
    let other_pw = env.write_password_file("offsite.pass", "another password");
    env.run([
        "--repo",
        s(&other),
        "--password-file",
        s(&other_pw),
        "init",
        "--encryption",
        "chacha20-poly1305",
        "--compression",
        "lz4",
    ])
    .assert_ok();
    let from = env.repo().to_str().unwrap().to_string();
    let copy = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "copy",
            "--from",
            &from,
            "--to",
            s(&other),
            "--to-password-file",
            s(&other_pw),
        ];
        args.extend_from_slice(extra);
        let out = env.run(args).assert_ok();
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()
    };
    // One snapshot first, then all: the first is skipped the second time.
    let first = copy(&[&ids[0][..8]]);
    assert_eq!(first["copied"].as_array().unwrap().len(), 1);
    assert!(first["bytes_added"].as_u64().unwrap() > 4_000_000);
    let all = copy(&[]);
    assert_eq!(all["copied"].as_array().unwrap().len(), 1);
    assert_eq!(all["skipped"].as_array().unwrap().len(), 1);
    assert!(
        all["bytes_added"].as_u64().unwrap() < 100_000,
        "only the changed file and trees: {all}"
    );
    let again = copy(&[]);
    assert_eq!(again["copied"].as_array().unwrap().len(), 0);
    assert_eq!(again["bytes_added"].as_u64().unwrap(), 0);

    let listed = env
        .run([
            "--repo",
            s(&other),
            "--password-file",
            s(&other_pw),
            "--json",
            "snapshots",
        ])
        .assert_ok();
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    let mut got: Vec<String> = listed
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "copies keep their snapshot ids");
    assert_eq!(listed[1]["tags"][0], "two");
    env.run([
        "--repo",
        s(&other),
        "--password-file",
        s(&other_pw),
        "check",
        "--read-data",
    ])
    .assert_ok();
    let target = env.path("restored");
    env.run([
        "--repo",
        s(&other),
        "--password-file",
        s(&other_pw),
        "restore",
        "latest",
        "--target",
        s(&target),
    ])
    .assert_ok();
    assert_trees_equal(&snapshot_tree(&src), &snapshot_tree(&target));
    // The source password does not open the target.
    let r = env.run(["--repo", s(&other), "snapshots"]);
    assert_eq!(r.code(), 12);
}
