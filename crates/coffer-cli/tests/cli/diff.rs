//! `diff SNAP1 SNAP2` lists added (`+`), removed (`-`) and modified (`M`) paths.

use coffer_testkit::cli::str_field;
use coffer_testkit::tree::set_mtime;

use crate::{env_with_repo, s, write_files};

#[test]
fn diff_shows_added_removed_and_modified_paths() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(
        &src,
        &[
            ("same.txt", b"same"),
            ("removed.txt", b"bye"),
            ("modified.txt", b"before"),
            ("dir/unchanged-too.txt", b"x"),
        ],
    );
    let a = str_field(&env.backup([s(&src)]), "snapshot_id");

    std::fs::remove_file(src.join("removed.txt")).unwrap();
    std::fs::write(src.join("modified.txt"), b"after, and longer").unwrap();
    set_mtime(&src.join("modified.txt"), 1_650_000_000, 0);
    std::fs::write(src.join("added.txt"), b"new").unwrap();
    let b = str_field(&env.backup([s(&src)]), "snapshot_id");

    let out = env.run(["diff", &a, &b]).assert_ok();
    let has = |marker: &str, name: &str| {
        out.lines()
            .iter()
            .any(|l| l.trim_start().starts_with(marker) && l.contains(name))
    };
    assert!(
        has("+", "added.txt"),
        "added.txt not shown as added (+)\n{out}"
    );
    assert!(
        has("-", "removed.txt"),
        "removed.txt not shown as removed (-)\n{out}"
    );
    assert!(
        has("M", "modified.txt"),
        "modified.txt not shown as modified (M)\n{out}"
    );
    for unchanged in ["same.txt", "unchanged-too.txt"] {
        assert!(
            !out.stdout.contains(unchanged),
            "{unchanged} did not change but is listed\n{out}"
        );
    }

    // The other way round, added and removed swap.
    let out = env.run(["diff", &b, &a]).assert_ok();
    let has = |marker: &str, name: &str| {
        out.lines()
            .iter()
            .any(|l| l.trim_start().starts_with(marker) && l.contains(name))
    };
    assert!(has("-", "added.txt") && has("+", "removed.txt"), "{out}");
}
