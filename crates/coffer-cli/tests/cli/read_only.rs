//! A repository this user may only read (a read-only mount, a write-protected copy, read-only
//! credentials): restore, verify, check and copy's source still work, without a lock and
//! with a warning; commands that write fail with a plain "permission denied" and store nothing;
//! `--no-lock` skips the lock attempt and is refused for commands that write.
//!
//! Root may write everywhere, so when the tests run as root every command runs as `nobody`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use coffer_testkit::tree::{all_paths, assert_trees_equal, snapshot_tree, write_random_file};

use crate::{s, write_files};

/// Adds or removes write permission on everything under `path`.
fn set_writable(path: &Path, writable: bool) {
    for entry in all_paths(path) {
        let mut mode = std::fs::symlink_metadata(&entry)
            .unwrap()
            .permissions()
            .mode();
        if writable {
            mode |= 0o200;
        } else {
            mode &= !0o222;
        }
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

const WARNING: &str = "reads without a lock";

#[test]
fn a_read_only_repository_restores_verifies_and_checks_without_a_lock() {
    let env = crate::unprivileged_env();
    env.init();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"alpha"), ("sub/b.txt", b"beta")]);
    write_random_file(&src.join("big.bin"), 3_000_000, 7);
    env.hand_over(&src);
    env.run(["backup", s(&src)]).assert_ok();
    let before = all_paths(env.repo());
    set_writable(env.repo(), false);

    // Reading commands work, each saying that it reads without a lock.
    let target = env.path("restored");
    let out = env
        .run(["restore", "latest", "--target", s(&target)])
        .assert_ok();
    assert!(out.stderr.contains(WARNING), "no warning\n{out}");
    assert_trees_equal(&snapshot_tree(&src), &snapshot_tree(&target));
    for args in [&["verify", "latest"][..], &["check", "--read-data"]] {
        let out = env.run(args).assert_ok();
        assert!(out.stderr.contains(WARNING), "{args:?}: no warning\n{out}");
    }
    // --no-lock does not try, so it does not warn.
    let quiet = env.path("restored-no-lock");
    let out = env
        .run(["--no-lock", "restore", "latest", "--target", s(&quiet)])
        .assert_ok();
    assert!(!out.stderr.contains(WARNING), "{out}");
    assert_trees_equal(&snapshot_tree(&src), &snapshot_tree(&quiet));

    // The source of a copy may be read-only too.
    let other = env.path("copy");
    env.run(["--repo", s(&other), "init"]).assert_ok();
    let from = env.repo().to_str().unwrap().to_string();
    let copy_pw = env.path("password");
    let out = env
        .run([
            "copy",
            "--from",
            &from,
            "--to",
            s(&other),
            "--to-password-file",
            s(&copy_pw),
        ])
        .assert_ok();
    assert!(out.stderr.contains(WARNING), "{out}");
    assert_eq!(env.snapshot_ids().len(), 1);

    // A backup cannot write: a plain error, exit 1, nothing stored.
    let out = env.run(["backup", s(&src)]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains("Permission denied") && out.stderr.contains("read-only"),
        "the error names the refusal and what to check\n{out}"
    );
    assert!(
        !out.stderr.contains("service_operation"),
        "no storage request details\n{out}"
    );
    // --no-lock is for reading only.
    let out = env.run(["--no-lock", "backup", s(&src)]);
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("--no-lock applies only"), "{out}");

    set_writable(env.repo(), true);
    assert_eq!(all_paths(env.repo()), before, "the repository changed");
    let out = env.run(["check"]).assert_ok();
    assert!(
        !out.stderr.contains(WARNING),
        "a writable repository is locked\n{out}"
    );
}

/// Azure Blob with a SAS token that may only read and list (`sp=rl`), enforced by Azurite:
/// the restore works without a lock; a backup is refused as "denied" and stores nothing.
#[test]
fn a_read_only_sas_token_restores_without_a_lock() {
    let az = coffer_testkit::servers::AzureServer::start();
    let env = crate::env();
    let url = az.url("readonly/repo");
    let sas = az.account_sas("rl");
    let run = |read_only: bool, args: &[&str]| {
        let mut all: Vec<String> = vec!["--repo".into(), url.clone()];
        let mut opts = az.options();
        if read_only {
            opts.remove("az.key");
            opts.insert("az.sas_token".into(), sas.clone());
        }
        for (k, v) in opts {
            all.push("-o".into());
            all.push(format!("{k}={v}"));
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let out = env.run(all);
        let sig = sas.rsplit("sig=").next().unwrap();
        assert!(
            !out.stdout.contains(sig) && !out.stderr.contains(sig),
            "the SAS signature was printed\n{out}"
        );
        out
    };
    run(false, &["init"]).assert_ok();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"alpha"), ("sub/b.txt", b"beta")]);
    write_random_file(&src.join("big.bin"), 2_000_000, 8);
    run(false, &["backup", s(&src)]).assert_ok();

    let target = env.path("restored");
    let out = run(
        true,
        &["--no-cache", "restore", "latest", "--target", s(&target)],
    )
    .assert_ok();
    assert!(out.stderr.contains(WARNING), "no warning\n{out}");
    assert_trees_equal(&snapshot_tree(&src), &snapshot_tree(&target));
    let out = run(true, &["--no-cache", "check", "--read-data"]).assert_ok();
    assert!(out.stderr.contains(WARNING), "no warning\n{out}");

    let out = run(true, &["--no-cache", "backup", s(&src)]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("denied"), "names the refusal\n{out}");
    let listed = run(false, &["--json", "snapshots"]).assert_ok();
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&listed.stdout)
            .unwrap()
            .len(),
        1,
        "the refused backup stored a snapshot"
    );
    run(false, &["check"]).assert_ok();
}
