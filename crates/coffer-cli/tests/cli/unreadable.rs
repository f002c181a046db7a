//! A file that cannot be read: the backup is still saved, exits 3 and names the file.
//!
//! Root reads everything, so when the tests run as root every command of this test runs as the
//! user `nobody` (the environment, binary included, is handed to that user).

use coffer_testkit::cli::str_field;
use coffer_testkit::tree::chmod;

use crate::{s, write_files};

#[test]
fn unreadable_file_gives_exit_3_names_it_and_the_rest_is_saved() {
    let env = crate::unprivileged_env();
    env.init();
    let src = env.path("src");
    write_files(
        &src,
        &[
            ("a.txt", b"alpha"),
            ("sub/b.txt", b"beta"),
            ("sub/secret.txt", b"no one may read this"),
        ],
    );
    env.hand_over(&src);
    chmod(&src.join("sub/secret.txt"), 0o000);

    let out = env.run(["--json", "backup", s(&src)]).assert_code(3);
    let summary = out.json();
    let unreadable = summary["unreadable"]
        .as_array()
        .unwrap_or_else(|| panic!("no unreadable list\n{out}"));
    assert_eq!(unreadable.len(), 1, "{out}");
    assert!(
        str_field(&unreadable[0], "path").ends_with("secret.txt"),
        "{out}"
    );
    assert!(!str_field(&unreadable[0], "error").is_empty(), "{out}");
    let id = str_field(&summary, "snapshot_id");

    // Without --json the file is named too.
    let text = env.run(["backup", s(&src)]).assert_code(3);
    assert!(
        text.combined().contains("secret.txt"),
        "the unreadable file is not named\n{text}"
    );

    let ids = env.snapshot_ids();
    assert_eq!(ids.len(), 2, "both backups are saved");
    assert_eq!(ids[0], id);

    let target = env.path("restored");
    env.run(["restore", &id, "--target", s(&target)])
        .assert_ok();
    assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(target.join("sub/b.txt")).unwrap(), b"beta");
}
