//! `key add`, `key list`, `key remove`, `key passwd`: the passwords that open a repository.

use coffer_testkit::cli::CofferEnv;
use std::path::Path;

use crate::env_with_repo;

fn snapshots_with(env: &CofferEnv, password_file: &Path) -> coffer_testkit::cli::CmdOutput {
    let mut cmd = env.cmd(["snapshots"]);
    cmd.env("COFFER_PASSWORD_FILE", password_file);
    env.run_cmd(cmd)
}

fn run_with(
    env: &CofferEnv,
    password_file: &Path,
    args: &[&str],
) -> coffer_testkit::cli::CmdOutput {
    let mut cmd = env.cmd(args);
    cmd.env("COFFER_PASSWORD_FILE", password_file);
    env.run_cmd(cmd)
}

#[test]
fn key_add_list_remove_and_passwd() {
    let env = env_with_repo();
    let pw1 = env.password_file().to_path_buf();
    let pw2 = env.write_password_file("second-password", "the second password");
    let pw3 = env.write_password_file("third-password", "the third password");

    let keys = env.key_ids();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key1 = keys[0].clone();

    // Add a second password (opened with the first).
    env.run(["key", "add", "--new-password-file", pw2.to_str().unwrap()])
        .assert_ok();
    let keys = env.key_ids();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let key2 = keys.iter().find(|k| **k != key1).unwrap().clone();

    let out = env.run(["key", "list"]).assert_ok();
    for k in [&key1, &key2] {
        assert!(out.stdout.contains(&k[..8]), "key {k} not listed\n{out}");
    }
    let list = env.run(["--json", "key", "list"]).assert_ok();
    let doc = list.json();
    let entries = doc
        .as_array()
        .or_else(|| doc.get("keys").and_then(|k| k.as_array()));
    assert_eq!(
        entries.map(Vec::len),
        Some(2),
        "expected a list of 2 keys\n{list}"
    );

    // Both passwords open the repository.
    snapshots_with(&env, &pw1).assert_ok();
    snapshots_with(&env, &pw2).assert_ok();

    // Remove the first key while using the second: the first password no longer opens it.
    run_with(&env, &pw2, &["key", "remove", &key1]).assert_ok();
    assert_eq!(env.key_ids(), vec![key2.clone()]);
    snapshots_with(&env, &pw1).assert_code(12);
    snapshots_with(&env, &pw2).assert_ok();

    // The key in use, which is also the last one, cannot be removed.
    let out = run_with(&env, &pw2, &["key", "remove", &key2]).assert_failure();
    assert!(!out.stderr.trim().is_empty(), "no reason given\n{out}");
    assert_eq!(
        env.key_ids(),
        vec![key2.clone()],
        "the last key was removed"
    );
    snapshots_with(&env, &pw2).assert_ok();

    // Change the password: the new one opens the repository, the old one does not.
    run_with(
        &env,
        &pw2,
        &[
            "key",
            "passwd",
            "--new-password-file",
            pw3.to_str().unwrap(),
        ],
    )
    .assert_ok();
    snapshots_with(&env, &pw3).assert_ok();
    snapshots_with(&env, &pw2).assert_code(12);
    assert_eq!(
        env.key_ids().len(),
        1,
        "passwd leaves one key per password: {:?}",
        env.key_ids()
    );
}

#[test]
fn the_key_in_use_cannot_be_removed_while_another_exists() {
    let env = env_with_repo();
    let key1 = env.key_ids()[0].clone();
    let pw2 = env.write_password_file("second-password", "the second password");
    env.run(["key", "add", "--new-password-file", pw2.to_str().unwrap()])
        .assert_ok();

    // Opened with the first password, removing the first key is refused.
    env.run(["key", "remove", &key1]).assert_failure();
    assert_eq!(env.key_ids().len(), 2);
    env.run(["snapshots"]).assert_ok();
}
