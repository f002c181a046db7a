//! Settings: those stored in the repository and shared by every client (`coffer config`: the
//! retention policy `forget` applies without flags, mirrors every backup is copied to), and
//! repositories named in the config file (`coffer -r NAME`).

use super::{env_with_repo, s, write_files};
use coffer_testkit::cli::{str_field, CofferEnv};
use coffer_testkit::tree::{assert_trees_equal, snapshot_tree, write_random_file};
use std::path::Path;

fn settings_objects(env: &CofferEnv) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(env.repo_path("settings"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn ids_of(env: &CofferEnv, repo: &Path, password: &Path) -> Vec<String> {
    let out = env
        .run([
            "--repo",
            s(repo),
            "--password-file",
            s(password),
            "--json",
            "snapshots",
        ])
        .assert_ok();
    out.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| str_field(v, "id"))
        .collect()
}

#[test]
fn a_stored_retention_policy_is_what_forget_applies_without_flags() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"alpha")]);
    let out = env.run(["forget"]).assert_code(2);
    assert!(out.combined().contains("config set-retention"), "{out}");

    env.run([
        "config",
        "set-retention",
        "--keep-last",
        "2",
        "--timezone",
        "UTC",
    ])
    .assert_ok()
    .assert_mentions("last 2");
    let shown = env.run(["--json", "config", "show"]).assert_ok().json();
    assert_eq!(shown["retention"]["keep_last"], 2, "{shown}");
    assert_eq!(shown["timezone"], "UTC", "{shown}");
    // Stored encrypted: the policy is not readable in the object.
    let objects = settings_objects(&env);
    assert_eq!(objects.len(), 1, "{objects:?}");
    let raw = std::fs::read(&objects[0]).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("keep_last"));

    for day in 1..=4 {
        std::fs::write(src.join("a.txt"), format!("day {day}")).unwrap();
        env.backup([s(&src), "--time", &format!("2026-03-0{day}T10:00:00Z")]);
    }
    let all = env.snapshot_ids();
    let out = env.run(["forget"]).assert_ok();
    assert!(
        out.combined().contains("the repository's retention policy"),
        "{out}"
    );
    let left = env.snapshot_ids();
    assert_eq!(left, all[2..].to_vec(), "keep-last 2 keeps the newest two");

    // Flags still win over the stored policy.
    env.run(["forget", "--keep-last", "1"]).assert_ok();
    assert_eq!(env.snapshot_ids(), all[3..].to_vec());

    // A second change replaces the first object; clearing brings the usage error back.
    env.run(["config", "set-retention", "--keep-daily", "7"])
        .assert_ok();
    assert_eq!(settings_objects(&env).len(), 1);
    let shown = env.run(["--json", "config", "show"]).assert_ok().json();
    assert_eq!(shown["sequence"], 2, "{shown}");
    assert!(shown["retention"]["keep_last"].is_null(), "{shown}");
    env.run(["config", "clear-retention"]).assert_ok();
    env.run(["forget"]).assert_code(2);
    env.run(["config", "clear-retention"]).assert_code(2);
    env.run(["check"]).assert_ok();
}

#[test]
fn bad_retention_flags_are_usage_errors_and_store_nothing() {
    let env = env_with_repo();
    env.run(["config", "set-retention"]).assert_code(2);
    env.run(["config", "set-retention", "--keep-daily", "-5"])
        .assert_code(2);
    env.run(["config", "set-retention", "--keep-within", "soon"])
        .assert_code(2);
    env.run([
        "config",
        "set-retention",
        "--keep-daily",
        "3",
        "--timezone",
        "Mars/Olympus",
    ])
    .assert_code(2);
    assert!(settings_objects(&env).is_empty());
    env.run(["config", "show"])
        .assert_ok()
        .assert_mentions("no settings stored");
}

#[test]
fn every_backup_is_copied_to_the_mirrors_keeping_its_id() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"first"), ("dir/b.txt", b"second")]);
    write_random_file(&src.join("big.bin"), 3_000_000, 5);

    // One mirror with its own password, one with the repository's.
    let m1 = env.path("mirror-one");
    let m1_pw = env.write_password_file("m1.pass", "mirror password");
    env.run(["--repo", s(&m1), "--password-file", s(&m1_pw), "init"])
        .assert_ok();
    let m2 = env.path("mirror-two");
    env.run(["--repo", s(&m2), "init"]).assert_ok();
    env.run([
        "config",
        "add-mirror",
        s(&m1),
        "--mirror-password-file",
        s(&m1_pw),
    ])
    .assert_ok();
    env.run(["config", "add-mirror", s(&m2)]).assert_ok();
    env.run(["config", "add-mirror", s(&m2)]).assert_code(2);
    let shown = env.run(["config", "show"]).assert_ok();
    assert!(shown.combined().contains("password file"), "{shown}");
    assert!(!shown.combined().contains("mirror password"), "{shown}");

    let first = env.backup([s(&src)]);
    assert_eq!(first["mirrors"].as_array().unwrap().len(), 2, "{first}");
    assert!(
        first["mirrors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["ok"] == true),
        "{first}"
    );
    std::fs::write(src.join("a.txt"), b"changed").unwrap();
    let out = env.run(["backup", s(&src)]).assert_ok();
    assert!(out.combined().contains("mirror"), "{out}");
    let ids = env.snapshot_ids();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids_of(&env, &m1, &m1_pw), ids);
    assert_eq!(ids_of(&env, &m2, env.password_file()), ids);

    // The mirror restores on its own, and passes a full check.
    env.run([
        "--repo",
        s(&m1),
        "--password-file",
        s(&m1_pw),
        "check",
        "--read-data",
    ])
    .assert_ok();
    let target = env.path("restored");
    env.run([
        "--repo",
        s(&m1),
        "--password-file",
        s(&m1_pw),
        "restore",
        "latest",
        "--target",
        s(&target),
    ])
    .assert_ok();
    assert_trees_equal(&snapshot_tree(&src), &snapshot_tree(&target));

    // --no-mirrors skips them; a later `copy` catches up.
    std::fs::write(src.join("a.txt"), b"third").unwrap();
    let third = env.backup([s(&src), "--no-mirrors"]);
    assert!(third["mirrors"].as_array().unwrap().is_empty(), "{third}");
    assert_eq!(ids_of(&env, &m2, env.password_file()).len(), 2);

    env.run(["config", "remove-mirror", s(&m2)]).assert_ok();
    env.run(["config", "remove-mirror", s(&m2)]).assert_code(2);
    env.backup([s(&src)]);
    assert_eq!(ids_of(&env, &m2, env.password_file()).len(), 2);
    assert_eq!(
        ids_of(&env, &m1, &m1_pw).len(),
        3,
        "m1 lacks only the --no-mirrors one"
    );
}

#[test]
fn a_failing_mirror_keeps_the_snapshot_and_says_how_to_finish_the_copy() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"alpha")]);
    let mirror = env.path("mirror");
    env.run(["--repo", s(&mirror), "init"]).assert_ok();
    env.run(["config", "add-mirror", s(&mirror)]).assert_ok();
    // The mirror disappears (a disk unplugged, a bucket deleted).
    std::fs::rename(&mirror, env.path("mirror-away")).unwrap();

    let out = env.run(["backup", s(&src)]).assert_code(1);
    let text = out.combined();
    assert!(text.contains("is saved"), "{out}");
    assert!(text.contains("coffer copy --from"), "{out}");
    let ids = env.snapshot_ids();
    assert_eq!(ids.len(), 1, "the backup itself is kept");

    // Back in place, the printed command completes the copy.
    std::fs::rename(env.path("mirror-away"), &mirror).unwrap();
    env.run(["copy", "--from", s(env.repo()), "--to", s(&mirror)])
        .assert_ok();
    assert_eq!(ids_of(&env, &mirror, env.password_file()), ids);
}

#[test]
fn mirrors_never_store_secrets_and_must_exist() {
    let env = env_with_repo();
    let out = env
        .run([
            "config",
            "add-mirror",
            "s3://bucket/prefix",
            "--mirror-option",
            "s3.secret_access_key=hunter2",
        ])
        .assert_code(2);
    assert!(!out.combined().contains("hunter2"), "{out}");
    assert!(out.combined().contains("secret"), "{out}");
    // A password command may hold a secret: stored, never shown.
    let cmd_mirror = env.path("cmd-mirror");
    env.run(["--repo", s(&cmd_mirror), "init"]).assert_ok();
    let pw = std::fs::read_to_string(env.password_file()).unwrap();
    let command = format!("echo '{}' # hunter3", pw.trim());
    env.run([
        "config",
        "add-mirror",
        s(&cmd_mirror),
        "--mirror-password-command",
        &command,
    ])
    .assert_ok();
    for args in [vec!["config", "show"], vec!["--json", "config", "show"]] {
        let out = env.run(args).assert_ok();
        assert!(!out.combined().contains("hunter3"), "{out}");
        assert!(
            out.combined().contains("a password command") || out.combined().contains("***"),
            "{out}"
        );
    }
    env.run(["config", "remove-mirror", s(&cmd_mirror)])
        .assert_ok();
    // Not created yet: refused, with what to do.
    let out = env
        .run(["config", "add-mirror", s(&env.path("nowhere"))])
        .assert_failure();
    assert!(out.combined().contains("coffer init"), "{out}");
    // The repository itself is not a mirror.
    env.run(["config", "add-mirror", s(env.repo())])
        .assert_code(2);
    let shown = env.run(["--json", "config", "show"]).assert_ok().json();
    assert_eq!(
        shown["mirrors"],
        serde_json::json!([]),
        "nothing refused was stored"
    );
}

#[test]
fn repo_name_resolves_through_the_config_file() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"alpha")]);
    let offsite = env.path("offsite-repo");
    let pw = env.write_password_file("offsite.pass", "offsite password");
    std::fs::write(
        env.path("coffer.toml"),
        format!(
            "[repository.offsite]\nurl = \"{}\"\npassword_file = \"{}\"\n",
            s(&offsite),
            s(&pw)
        ),
    )
    .unwrap();
    // Commands run in the environment's folder, where ./coffer.toml is found.
    env.run_bare(["-r", "offsite", "init"]).assert_ok();
    env.run_bare(["-r", "offsite", "backup", s(&src)])
        .assert_ok();
    assert_eq!(
        ids_of(&env, &offsite, &pw).len(),
        1,
        "the config's URL and password were used"
    );
    // COFFER_CONFIG names the file explicitly.
    std::fs::rename(env.path("coffer.toml"), env.path("elsewhere.toml")).unwrap();
    let mut cmd = env.bare_cmd(["-r", "offsite", "--json", "snapshots"]);
    cmd.env("COFFER_CONFIG", env.path("elsewhere.toml"));
    assert_eq!(
        env.run_cmd(cmd)
            .assert_ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A folder of the same name makes the name ambiguous: refused, not guessed.
    std::fs::create_dir(env.path("offsite")).unwrap();
    let mut cmd = env.bare_cmd(["-r", "offsite", "snapshots"]);
    cmd.env("COFFER_CONFIG", env.path("elsewhere.toml"));
    let out = env.run_cmd(cmd).assert_code(2);
    assert!(out.combined().contains("ambiguous"), "{out}");
}
