//! The format fixtures: small repositories written by format version 1, checked in with their
//! passwords and the listing of what they hold. Later code must still restore them exactly.
//!
//! Regenerate (only when the format version changes, as new fixtures beside these):
//! `cargo test -p coffer-cli --test cli make_format_fixtures -- --ignored`

use coffer_testkit::tree::{
    compressible_bytes, random_bytes, set_times, snapshot_tree, EntryInfo, TreeSnapshot,
};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
/// Each fixture: folder name, `init` options.
const VARIANTS: [(&str, &[&str]); 2] = [
    ("repo-v1-default", &[]),
    (
        "repo-v1-chacha-lz4",
        &["--encryption", "chacha20-poly1305", "--compression", "lz4"],
    ),
];
const PASSWORD: &str = "coffer format fixture v1";

/// The tree stored in every fixture (deterministic: same bytes, modes and times every time).
fn build_source(dir: &Path) {
    let w = |p: &str, data: &[u8], mode: u32| {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
    };
    w("README.txt", b"Coffer format fixture, version 1.\n", 0o644);
    w("docs/empty", b"", 0o600);
    w(
        "docs/notes with spaces.txt",
        "unicode: \u{e9}t\u{e9} \u{1f600}\n".as_bytes(),
        0o640,
    );
    w("data/random.bin", &random_bytes(600_000, 42), 0o644);
    w("data/zeros-ish.bin", &compressible_bytes(2_000_000), 0o644);
    w("bin/tool.sh", b"#!/bin/sh\necho hi\n", 0o755);
    let odd = dir.join(std::ffi::OsStr::from_bytes(b"docs/latin1-\xe9t\xe9.txt"));
    std::fs::write(&odd, b"not UTF-8 in the name\n").unwrap();
    std::os::unix::fs::symlink("../README.txt", dir.join("docs/readme-link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", dir.join("dangling")).unwrap();
    std::fs::hard_link(dir.join("bin/tool.sh"), dir.join("bin/tool-hardlink.sh")).unwrap();
    std::fs::create_dir_all(dir.join("empty-dir")).unwrap();
    // Fixed times, deepest first so that setting a child does not touch its parent's mtime.
    let mut paths: Vec<PathBuf> = walk(dir);
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in paths.iter().enumerate() {
        set_times(p, 1_700_000_000 + i as i64 * 3_600, 123_456_789, false);
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// One line per entry; owners are left out (the fixture is restored by whoever runs the test).
fn listing(t: &TreeSnapshot) -> String {
    let hexo = |v: &Option<Vec<u8>>| v.as_ref().map(hex::encode).unwrap_or_else(|| "-".into());
    t.iter()
        .map(|(p, e): (&Vec<u8>, &EntryInfo)| {
            format!(
                "{} {:?} {:o} {} {}.{} {} {} {}\n",
                hex::encode(p),
                e.kind,
                if e.kind == coffer_testkit::tree::EntryKind::Symlink {
                    0
                } else {
                    e.mode
                },
                e.size,
                e.mtime_secs,
                e.mtime_nanos,
                e.sha256.as_deref().unwrap_or("-"),
                hexo(&e.symlink_target),
                hexo(&e.hardlink_group),
            )
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn remove_empty_dirs(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            remove_empty_dirs(&p);
            let _ = std::fs::remove_dir(&p); // fails, harmlessly, unless empty
        }
    }
}

#[test]
fn format_v1_fixtures_still_restore_exactly() {
    for (name, _) in VARIANTS {
        let env = crate::env();
        // Work on a copy: locks are written even by read-only commands.
        copy_dir(&Path::new(FIXTURES).join(name), env.repo());
        let pw = env.write_password_file("fixture.pass", PASSWORD);
        let pw = pw.to_str().unwrap();
        let snaps = env
            .run(["--password-file", pw, "snapshots", "--json"])
            .assert_ok();
        let snaps: Vec<serde_json::Value> = serde_json::from_str(&snaps.stdout).unwrap();
        assert_eq!(snaps.len(), 1, "{name}: one snapshot");
        assert_eq!(snaps[0]["tags"][0], "fixture");
        env.run(["--password-file", pw, "check", "--read-data"])
            .assert_ok();
        env.run(["--password-file", pw, "verify", "latest"])
            .assert_ok();
        let out = env.path("restored");
        env.run([
            "--password-file",
            pw,
            "restore",
            "latest",
            "--target",
            out.to_str().unwrap(),
        ])
        .assert_ok();
        let want =
            std::fs::read_to_string(Path::new(FIXTURES).join(format!("{name}.expected"))).unwrap();
        assert_eq!(
            listing(&snapshot_tree(&out)),
            want,
            "{name}: restored tree differs from the fixture's listing"
        );
    }
}

#[test]
#[ignore = "writes the checked-in fixtures; run by hand only when adding a format version"]
fn make_format_fixtures() {
    for (name, init_args) in VARIANTS {
        let env = crate::env();
        let src = env.path("fixture-source");
        build_source(&src);
        let pw = env.write_password_file("fixture.pass", PASSWORD);
        let pw = pw.to_str().unwrap();
        let mut args = vec!["--password-file", pw, "init"];
        args.extend_from_slice(init_args);
        env.run(args).assert_ok();
        env.run([
            "--password-file",
            pw,
            "backup",
            src.to_str().unwrap(),
            "--tag",
            "fixture",
            "--host",
            "fixture-host",
            "--time",
            "2026-11-22T00:00:00Z",
        ])
        .assert_ok();
        let dest = Path::new(FIXTURES).join(name);
        let _ = std::fs::remove_dir_all(&dest);
        copy_dir(env.repo(), &dest);
        let _ = std::fs::remove_dir_all(dest.join(".tmp"));
        remove_empty_dirs(&dest); // as git would: the fixture must work without them
        std::fs::write(
            Path::new(FIXTURES).join(format!("{name}.expected")),
            listing(&snapshot_tree(&src)),
        )
        .unwrap();
    }
    std::fs::write(
        Path::new(FIXTURES).join("PASSWORD"),
        format!("{PASSWORD}\n"),
    )
    .unwrap();
}
