//! Bad input: each gives a clear one-line error on stderr and the documented exit code.

use std::collections::HashMap;

use coffer_testkit::cli::str_field;
use coffer_testkit::tree::{random_bytes, snapshot_tree};

use crate::{env, env_with_repo, s, write_files};

#[test]
fn wrong_password_exits_12() {
    let env = env_with_repo();
    let wrong = env.write_password_file("wrong-password", "not the password");

    let mut cmd = env.cmd(["snapshots"]);
    cmd.env("COFFER_PASSWORD_FILE", &wrong);
    env.run_cmd(cmd)
        .assert_code(12)
        .assert_one_line_error()
        .assert_mentions("password");

    // The flag wins over the environment variable.
    env.run(["--password-file", s(&wrong), "snapshots"])
        .assert_code(12)
        .assert_one_line_error();
    let mut cmd = env.cmd(["snapshots"]);
    cmd.env_remove("COFFER_PASSWORD_FILE")
        .env("COFFER_PASSWORD", "also wrong");
    env.run_cmd(cmd).assert_code(12);
}

/// A password file that does not exist is a mistake in the command: exit 2, naming the file;
/// a database password file likewise.
#[test]
fn a_missing_password_file_is_a_usage_error() {
    let env = env_with_repo();
    let missing = env.path("no-such-password-file");
    env.run(["--password-file", s(&missing), "snapshots"])
        .assert_code(2)
        .assert_one_line_error()
        .assert_mentions(s(&missing));
    let db = env.path("app.db");
    std::fs::write(&db, b"").unwrap();
    env.run([
        "backup",
        &format!("sqlite://{}", s(&db)),
        "--db-password-file",
        s(&missing),
    ])
    .assert_code(2)
    .assert_mentions(s(&missing));
}

#[test]
fn errors_with_json_print_an_error_document() {
    let env = env_with_repo();
    let wrong = env.write_password_file("wrong-password", "not the password");
    let out = env
        .run(["--json", "--password-file", s(&wrong), "snapshots"])
        .assert_code(12);
    let doc = out.json();
    assert!(
        doc["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{out}"
    );
    assert_eq!(doc["exit_code"].as_i64(), Some(12), "{out}");
}

#[test]
fn missing_repository_exits_10() {
    let env = env();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"a")]);
    let empty = env.path("empty-dir");
    std::fs::create_dir(&empty).unwrap();
    let absent = env.path("no-such-dir");
    let target = env.path("target");

    for repo in [&empty, &absent] {
        let r = s(repo);
        env.run(["--repo", r, "snapshots"])
            .assert_code(10)
            .assert_one_line_error();
        env.run(["--repo", r, "backup", s(&src)])
            .assert_code(10)
            .assert_one_line_error();
        env.run(["--repo", r, "restore", "latest", "--target", s(&target)])
            .assert_code(10)
            .assert_one_line_error();
        // Through the environment variable too.
        let mut cmd = env.cmd(["snapshots"]);
        cmd.env("COFFER_REPOSITORY", repo);
        env.run_cmd(cmd).assert_code(10);
    }
    // Nothing was created: an explicitly named repository is never made by `backup`.
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "backup wrote into a folder that is not a repository"
    );
    assert!(!absent.exists());
    assert!(!target.exists());
}

#[test]
fn init_on_an_existing_repository_fails_and_keeps_it() {
    let env = env_with_repo();
    let config = std::fs::read(env.repo_path("config")).unwrap();
    let keys = env.key_ids();
    env.run(["init"])
        .assert_code(1)
        .assert_one_line_error()
        .assert_mentions("exist");
    assert_eq!(
        std::fs::read(env.repo_path("config")).unwrap(),
        config,
        "init rewrote the config"
    );
    assert_eq!(env.key_ids(), keys, "init added or removed keys");
    env.run(["snapshots"]).assert_ok();
}

#[test]
fn backup_of_a_missing_source_fails_naming_it_and_saves_nothing() {
    let env = env_with_repo();
    let missing = env.path("there-is-no-such-source");
    let out = env
        .run(["backup", s(&missing)])
        .assert_failure()
        .assert_one_line_error();
    assert!(
        out.stderr.contains("there-is-no-such-source"),
        "the missing path is not named\n{out}"
    );
    assert!(
        env.snapshots(None::<&str>).is_empty(),
        "a snapshot was saved"
    );
}

#[test]
fn restore_into_a_non_empty_target_needs_overwrite() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"from the backup"), ("b.txt", b"b")]);
    env.backup([s(&src)]);

    let target = env.path("target");
    write_files(
        &target,
        &[("a.txt", b"already here"), ("unrelated.txt", b"mine")],
    );
    let before = snapshot_tree(&target);
    env.run(["restore", "latest", "--target", s(&target)])
        .assert_failure()
        .assert_one_line_error();
    assert_eq!(
        snapshot_tree(&target),
        before,
        "restore without --overwrite changed the target"
    );

    env.run(["restore", "latest", "--target", s(&target), "--overwrite"])
        .assert_ok();
    assert_eq!(
        std::fs::read(target.join("a.txt")).unwrap(),
        b"from the backup"
    );
    assert_eq!(std::fs::read(target.join("b.txt")).unwrap(), b"b");
}

#[test]
fn unknown_snapshot_id_exits_1() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"a")]);
    let id = str_field(&env.backup([s(&src)]), "snapshot_id");
    // A full id that differs from the real one in its first digit.
    let first = if id.starts_with('0') { '1' } else { '0' };
    let unknown = format!("{first}{}", &id[1..]);
    let target = env.path("target");

    for args in [
        vec!["show", unknown.as_str()],
        vec!["ls", unknown.as_str()],
        vec!["restore", unknown.as_str(), "--target", s(&target)],
    ] {
        let out = env.run(&args).assert_code(1).assert_one_line_error();
        let lower = out.stderr.to_lowercase();
        assert!(
            lower.contains(&unknown[..8])
                || lower.contains("not found")
                || lower.contains("no snapshot"),
            "the error does not say which snapshot is missing\n{out}"
        );
    }
    assert!(
        !target.exists(),
        "restore of an unknown snapshot created the target"
    );
}

#[test]
fn ambiguous_snapshot_prefix_is_refused() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"a")]);
    // Back up until two snapshot ids share their first hex digit (at most 17 by pigeonhole).
    let mut by_first: HashMap<char, Vec<String>> = HashMap::new();
    let prefix = loop {
        assert!(
            by_first.values().map(Vec::len).sum::<usize>() < 17,
            "17 ids without a shared first digit: not hex?"
        );
        let id = str_field(&env.backup([s(&src)]), "snapshot_id");
        let c = id.chars().next().unwrap();
        let ids = by_first.entry(c).or_default();
        ids.push(id);
        if ids.len() == 2 {
            break c.to_string();
        }
    };
    let matching = by_first[&prefix.chars().next().unwrap()].clone();
    let mut out = env
        .run(["show", &prefix])
        .assert_failure()
        .assert_one_line_error()
        .assert_mentions("ambiguous");
    // The snapshots the prefix matches are listed, so that one can be picked.
    for id in &matching {
        out = out.assert_mentions(&id[..8]);
    }
    let target = env.path("target");
    env.run(["restore", &prefix, "--target", s(&target)])
        .assert_failure()
        .assert_mentions("ambiguous");
    assert!(!target.exists());
    assert_eq!(
        lock_files(&env),
        Vec::<String>::new(),
        "a failed restore left its lock"
    );
}

/// The lock files in the environment's repository.
fn lock_files(env: &coffer_testkit::cli::CofferEnv) -> Vec<String> {
    match std::fs::read_dir(env.repo_path("locks")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn commands_that_fail_early_release_their_lock() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"a")]);
    env.backup([s(&src)]);
    let target = env.path("target");
    for args in [
        vec!["restore", "deadbeef", "--target", s(&target)],
        vec!["verify", "deadbeef"],
        vec!["dump", "deadbeef"],
        vec!["dump", "latest"],
        vec!["ls", "deadbeef"],
    ] {
        env.run(&args).assert_failure().assert_one_line_error();
        assert_eq!(
            lock_files(&env),
            Vec::<String>::new(),
            "`coffer {}` left its lock",
            args.join(" ")
        );
    }
}

#[test]
fn corrupted_config_is_reported() {
    let env = env_with_repo();
    let config = env.repo_path("config");
    let len = std::fs::metadata(&config).unwrap().len() as usize;
    std::fs::write(&config, random_bytes(len.max(64), 7)).unwrap();
    env.run(["snapshots"])
        .assert_failure()
        .assert_one_line_error()
        .assert_mentions("config");
}

#[test]
fn config_with_one_flipped_byte_is_reported() {
    let env = env_with_repo();
    let config = env.repo_path("config");
    let mut data = std::fs::read(&config).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x01;
    std::fs::write(&config, data).unwrap();
    env.run(["snapshots"])
        .assert_failure()
        .assert_one_line_error()
        .assert_mentions("config");
}

#[test]
fn corrupted_key_file_is_reported() {
    let env = env_with_repo();
    let keys = env.key_ids();
    assert_eq!(keys.len(), 1, "init makes one key: {keys:?}");
    std::fs::write(
        env.repo_path("keys").join(&keys[0]),
        b"this is not a key file",
    )
    .unwrap();
    let out = env
        .run(["snapshots"])
        .assert_failure()
        .assert_one_line_error();
    assert_ne!(out.code(), 10, "the repository exists\n{out}");
}

#[test]
fn usage_errors_exit_2() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"a")]);
    env.run(["no-such-command"]).assert_code(2);
    env.run(["backup", "--type", "bogus", s(&src)])
        .assert_code(2);
    env.run(["restore", "latest"])
        .assert_code(2)
        .assert_mentions("--target");
    env.run(["snapshots", "--no-such-flag"]).assert_code(2);
    // With --json, a command line clap refuses gives the error document too.
    let out = env
        .run(["--json", "snapshots", "--no-such-flag"])
        .assert_code(2);
    let doc = out.json();
    assert_eq!(doc["exit_code"], 2, "{out}");
    assert!(
        doc["error"]
            .as_str()
            .unwrap_or_default()
            .contains("--no-such-flag"),
        "{out}"
    );
    assert!(env.snapshots(None::<&str>).is_empty());
}
