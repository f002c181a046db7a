//! A backup of a tree full of corner cases restores to an identical tree.

use std::time::Duration;

use coffer_testkit::cli::str_field;
use coffer_testkit::tree::{
    assert_trees_equal, make_tricky_tree, mkfifo, set_distinct_mtimes, snapshot_tree, EntryKind,
};

use crate::{env_with_repo, s, write_files};

#[test]
fn tricky_tree_round_trips_exactly() {
    let mut env = env_with_repo();
    // The tree takes seconds; a hang (say, opening a fifo) should fail fast.
    env.set_timeout(Duration::from_secs(90));
    let tree = make_tricky_tree(&env.path("src"));
    let before = snapshot_tree(&tree.root);

    let summary = env.backup([s(&tree.root)]);
    let id = str_field(&summary, "snapshot_id");
    assert_eq!(
        str_field(&summary, "type"),
        "full",
        "first backup is full: {summary:#}"
    );
    assert!(
        summary["parent"].is_null(),
        "first backup has no parent: {summary:#}"
    );
    assert_eq!(
        summary["unreadable"].as_array().map(Vec::len),
        Some(0),
        "{summary:#}"
    );
    // The source tree is unchanged by the backup (mtimes of dirs included).
    assert_trees_equal(&before, &snapshot_tree(&tree.root));

    let target = env.path("restored");
    env.run(["restore", &id, "--target", s(&target)])
        .assert_ok();
    assert_trees_equal(&before, &snapshot_tree(&target));
}

#[test]
fn ls_lists_every_entry_including_a_non_utf8_name() {
    let env = env_with_repo();
    let tree = make_tricky_tree(&env.path("src"));
    env.backup([s(&tree.root)]);

    let out = env.run(["ls", "latest"]).assert_ok();
    // However the name is shown (escaped, replaced or raw), its UTF-8 parts are on one line.
    assert!(
        out.lines()
            .iter()
            .any(|l| l.contains("nonutf8-") && l.contains("-name.txt")),
        "the non-UTF-8 file name is not listed\n{out}"
    );
    for name in [
        "deep.txt",
        "name with spaces.txt",
        "fifo",
        "to-dir",
        "dangling",
        "third.txt",
        "empty-dir",
        "private-dir-0700",
    ] {
        assert!(out.stdout.contains(name), "{name} is not listed\n{out}");
    }
}

#[test]
fn verify_and_check_read_data_pass_on_a_healthy_repository() {
    let env = env_with_repo();
    let tree = make_tricky_tree(&env.path("src"));
    env.backup([s(&tree.root)]);

    env.run(["verify", "latest"]).assert_ok();
    let v = env.run(["--json", "verify", "latest"]).assert_ok().json();
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(0), "{v:#}");

    env.run(["check"]).assert_ok();
    let c = env
        .run(["--json", "check", "--read-data"])
        .assert_ok()
        .json();
    assert_eq!(c["ok"], true, "{c:#}");
    assert_eq!(c["errors"].as_array().map(Vec::len), Some(0), "{c:#}");
    env.run(["check", "--read-data-subset", "50%"]).assert_ok();
}

#[test]
fn fifo_is_backed_up_and_restored_without_being_opened() {
    let mut env = env_with_repo();
    // Opening a fifo blocks until a writer comes: a hang here means backup or restore opened it.
    env.set_timeout(Duration::from_secs(60));
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"a")]);
    mkfifo(&src.join("pipe"), 0o640);
    set_distinct_mtimes(&src);
    let before = snapshot_tree(&src);
    assert_eq!(before[&b"pipe"[..]].kind, EntryKind::Fifo);

    let id = str_field(&env.backup([s(&src)]), "snapshot_id");
    let target = env.path("restored");
    env.run(["restore", &id, "--target", s(&target)])
        .assert_ok();
    assert_trees_equal(&before, &snapshot_tree(&target));
}
