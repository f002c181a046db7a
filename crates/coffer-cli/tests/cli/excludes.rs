//! `backup --exclude GLOB` (repeatable) and `--exclude-file F` leave files out of the snapshot.

use coffer_testkit::cli::str_field;

use crate::{env_with_repo, s, write_files};

const FILES: &[(&str, &[u8])] = &[
    ("keep.txt", b"keep"),
    ("app.log", b"log"),
    ("sub/deep.log", b"deep log"),
    ("sub/keep-too.txt", b"keep too"),
    ("scratch.tmp", b"tmp"),
    ("cache/blob.bin", b"cache"),
    ("secret-token", b"s3cr3t"),
    ("notes/secret-plan.md", b"plan"),
];

#[test]
fn exclude_globs_and_exclude_file_leave_files_out() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, FILES);
    let list = env.path("excludes.txt");
    std::fs::write(&list, "secret*\ncache\n").unwrap();

    let summary = env.backup([
        s(&src),
        "--exclude",
        "*.log",
        "--exclude",
        "*.tmp",
        "--exclude-file",
        s(&list),
    ]);
    assert_eq!(
        summary["files"].as_u64(),
        Some(2),
        "only keep.txt and sub/keep-too.txt remain: {summary:#}"
    );
    let id = str_field(&summary, "snapshot_id");

    let out = env.run(["ls", &id]).assert_ok();
    for gone in [
        "app.log",
        "deep.log",
        "scratch.tmp",
        "blob.bin",
        "secret-token",
        "secret-plan.md",
    ] {
        assert!(
            !out.stdout.contains(gone),
            "{gone} was excluded but is listed\n{out}"
        );
    }
    for kept in ["keep.txt", "keep-too.txt"] {
        assert!(out.stdout.contains(kept), "{kept} is missing\n{out}");
    }

    let target = env.path("restored");
    env.run(["restore", &id, "--target", s(&target)])
        .assert_ok();
    assert_eq!(std::fs::read(target.join("keep.txt")).unwrap(), b"keep");
    assert_eq!(
        std::fs::read(target.join("sub/keep-too.txt")).unwrap(),
        b"keep too"
    );
    for gone in [
        "app.log",
        "sub/deep.log",
        "scratch.tmp",
        "cache/blob.bin",
        "secret-token",
        "notes/secret-plan.md",
    ] {
        assert!(
            !target.join(gone).exists(),
            "{gone} was excluded but restored"
        );
    }
}

#[test]
fn restore_exclude_and_include_select_files() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, FILES);
    env.backup([s(&src)]);

    let target = env.path("only-sub");
    env.run([
        "restore",
        "latest",
        "--target",
        s(&target),
        "--include",
        "sub",
        "--exclude",
        "*.log",
    ])
    .assert_ok();
    assert_eq!(
        std::fs::read(target.join("sub/keep-too.txt")).unwrap(),
        b"keep too"
    );
    assert!(
        !target.join("sub/deep.log").exists(),
        "restore --exclude ignored"
    );
    assert!(
        !target.join("keep.txt").exists(),
        "restore --include ignored"
    );
}

/// An `--include` that matches nothing is a usage error (exit 2) naming it and the closest
/// paths of the snapshot; nothing is restored and the target is not created. Before, it
/// succeeded, restoring the include's parent folders only.
#[test]
fn restore_include_that_matches_nothing_names_the_closest_paths() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, FILES);
    env.backup([s(&src)]);

    let target = env.path("typo");
    for (include, closest) in [
        ("sub/keep-to.txt", "/sub/keep-too.txt"),
        ("notes/secret-plans.md", "/notes/secret-plan.md"),
        ("kep.txt", "/keep.txt"),
    ] {
        let out = env
            .run([
                "restore",
                "latest",
                "--target",
                s(&target),
                "--include",
                include,
            ])
            .assert_code(2)
            .assert_one_line_error()
            .assert_mentions(&format!("--include /{include} matches nothing"));
        assert!(
            out.stderr.contains(closest),
            "the error names the closest path {closest}\n{out}"
        );
        assert!(!target.exists(), "the target was created\n{out}");
    }
    // One include that matches and one that does not: still refused, nothing restored.
    env.run([
        "restore",
        "latest",
        "--target",
        s(&target),
        "--include",
        "sub",
        "--include",
        "nothing-here",
    ])
    .assert_code(2)
    .assert_mentions("nothing-here");
    assert!(!target.exists());
}
