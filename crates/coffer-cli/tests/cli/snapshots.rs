//! Naming snapshots (`latest`, prefixes), filtering the listing, backup metadata, the manifest's
//! fields, `delete`, `stats`, and the ways to give the repository and the password.

use coffer_testkit::cli::{parse_time, str_field, u64_field};
use serde_json::Value;

use crate::{env_with_repo, s, write_files};

fn ids(list: &[Value]) -> Vec<String> {
    list.iter().map(|m| str_field(m, "id")).collect()
}

fn shown_id(env: &coffer_testkit::cli::CofferEnv, name: &str) -> String {
    let out = env.run(["--json", "show", name]).assert_ok();
    str_field(&out.json(), "id")
}

#[test]
fn latest_and_unique_prefixes_resolve() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"a")]);
    let first = str_field(&env.backup([s(&src)]), "snapshot_id");
    std::fs::write(src.join("b.txt"), b"b").unwrap();
    let second = str_field(&env.backup([s(&src)]), "snapshot_id");
    assert_eq!(first.len(), 64, "ids are 64 hex digits: {first}");

    assert_eq!(shown_id(&env, "latest"), second);
    assert_eq!(shown_id(&env, &first), first);
    // The shortest unique prefix of each.
    let common = first
        .chars()
        .zip(second.chars())
        .take_while(|(a, b)| a == b)
        .count();
    assert_eq!(shown_id(&env, &first[..common + 1]), first);
    assert_eq!(shown_id(&env, &second[..(common + 1).max(8)]), second);

    // `ls latest` shows the newest snapshot's files.
    let out = env.run(["ls", "latest"]).assert_ok();
    assert!(out.stdout.contains("b.txt"), "{out}");
    let out = env.run(["ls", &first[..common + 1]]).assert_ok();
    assert!(
        out.stdout.contains("a.txt") && !out.stdout.contains("b.txt"),
        "{out}"
    );
}

#[test]
fn snapshots_filters_by_tag_and_host_and_latest_is_narrowed_by_host() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"a")]);
    let a = str_field(
        &env.backup([s(&src), "--tag", "nightly", "--host", "alpha"]),
        "snapshot_id",
    );
    let b = str_field(
        &env.backup([
            s(&src),
            "--tag",
            "weekly",
            "--tag",
            "extra",
            "--host",
            "beta",
        ]),
        "snapshot_id",
    );
    let c = str_field(
        &env.backup([s(&src), "--tag", "nightly", "--host", "beta"]),
        "snapshot_id",
    );

    assert_eq!(
        ids(&env.snapshots(None::<&str>)),
        vec![a.clone(), b.clone(), c.clone()],
        "oldest first"
    );
    assert_eq!(
        ids(&env.snapshots(["--tag", "nightly"])),
        vec![a.clone(), c.clone()]
    );
    assert_eq!(ids(&env.snapshots(["--tag", "extra"])), vec![b.clone()]);
    assert_eq!(ids(&env.snapshots(["--host", "alpha"])), vec![a.clone()]);
    assert_eq!(
        ids(&env.snapshots(["--host", "beta"])),
        vec![b.clone(), c.clone()]
    );
    assert!(env.snapshots(["--host", "gamma"]).is_empty());
    assert_eq!(ids(&env.snapshots(["--source", s(&src)])).len(), 3);

    // The text listing runs too, and shows the ids (at least their first 8 digits).
    let out = env.run(["snapshots"]).assert_ok();
    for id in [&a, &b, &c] {
        assert!(out.stdout.contains(&id[..8]), "{id} not listed\n{out}");
    }
    let out = env.run(["list", "--host", "alpha"]).assert_ok();
    assert!(
        out.stdout.contains(&a[..8]) && !out.stdout.contains(&b[..8]),
        "{out}"
    );

    // `latest` narrowed by host.
    let out = env
        .run(["--json", "show", "latest", "--host", "alpha"])
        .assert_ok();
    assert_eq!(str_field(&out.json(), "id"), a, "{out}");
}

#[test]
fn backup_metadata_is_recorded_in_the_manifest() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"a")]);
    let summary = env.backup([
        s(&src),
        "--tag",
        "t",
        "--host",
        "h",
        "--name",
        "n",
        "--description",
        "d",
        "--time",
        "2020-01-02T03:04:05Z",
    ]);
    let list = env.snapshots(None::<&str>);
    assert_eq!(list.len(), 1);
    let m = &list[0];
    assert_eq!(str_field(m, "id"), str_field(&summary, "snapshot_id"));
    assert_eq!(m["tags"], serde_json::json!(["t"]), "{m:#}");
    assert_eq!(str_field(m, "hostname"), "h");
    assert_eq!(str_field(m, "name"), "n");
    assert_eq!(str_field(m, "description"), "d");
    assert_eq!(
        parse_time(&str_field(m, "time")),
        (1_577_934_245, 0),
        "{m:#}"
    );
    // started/finished are the real clock, not --time.
    let (started, _) = parse_time(&str_field(m, "started"));
    let (finished, _) = parse_time(&str_field(m, "finished"));
    assert!(started > 1_700_000_000 && finished >= started, "{m:#}");
}

#[test]
fn manifest_has_the_documented_fields() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"hello"), ("d/b.txt", b"world!")]);
    env.backup([s(&src)]);
    let list = env.snapshots(None::<&str>);
    let m = &list[0];
    for key in [
        "id",
        "name",
        "source",
        "hostname",
        "tags",
        "description",
        "backup_type",
        "parent",
        "time",
        "started",
        "finished",
        "tool_version",
        "tree",
        "stats",
        "compression",
        "encryption",
    ] {
        assert!(m.get(key).is_some(), "manifest has no {key:?}: {m:#}");
    }
    let source = &m["source"];
    for key in ["kind", "location", "paths"] {
        assert!(source.get(key).is_some(), "source has no {key:?}: {m:#}");
    }
    let paths = source["paths"]
        .as_array()
        .unwrap_or_else(|| panic!("paths is not a list: {m:#}"));
    assert_eq!(paths.len(), 1, "{m:#}");
    assert!(
        paths[0].as_str().is_some_and(|p| p.ends_with("src")),
        "{m:#}"
    );
    let stats = &m["stats"];
    assert_eq!(u64_field(stats, "files"), 2, "{m:#}");
    assert!(u64_field(stats, "dirs") >= 1, "{m:#}");
    assert_eq!(u64_field(stats, "total_bytes"), 11, "{m:#}");
    assert_eq!(u64_field(stats, "bytes_read"), 11, "{m:#}");
    assert!(stats.get("bytes_added").is_some(), "{m:#}");
    assert_eq!(str_field(m, "backup_type"), "full");
    assert!(m["parent"].is_null());
    assert!(!str_field(m, "tool_version").is_empty());
    assert!(!str_field(m, "hostname").is_empty());
    assert_eq!(
        str_field(m, "tree").len(),
        64,
        "the tree is a 64-hex id: {m:#}"
    );
}

#[test]
fn delete_removes_a_snapshot_and_stats_counts_snapshots() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"a")]);
    let first = str_field(&env.backup([s(&src)]), "snapshot_id");
    let second = str_field(&env.backup([s(&src)]), "snapshot_id");
    let third = str_field(&env.backup([s(&src)]), "snapshot_id");
    assert_eq!(snapshot_count(&env), 3);

    env.run(["delete", &first]).assert_ok();
    assert_eq!(
        ids(&env.snapshots(None::<&str>)),
        vec![second.clone(), third.clone()]
    );
    assert_eq!(snapshot_count(&env), 2);
    env.run(["show", &first]).assert_code(1);

    // Deleting a parent breaks nothing: the child restores on its own.
    env.run(["delete", &second]).assert_ok();
    let target = env.path("restored");
    env.run(["restore", &third, "--target", s(&target)])
        .assert_ok();
    assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"a");
    env.run(["check"]).assert_ok();
}

/// The snapshot count from `stats --json`: a top-level number whose key names snapshots.
fn snapshot_count(env: &coffer_testkit::cli::CofferEnv) -> u64 {
    let out = env.run(["--json", "stats"]).assert_ok();
    let v = out.json();
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("stats is not an object\n{out}"));
    let counts: Vec<u64> = ["snapshots", "snapshot_count", "snapshots_count", "count"]
        .iter()
        .filter_map(|k| obj.get(*k).and_then(Value::as_u64))
        .collect();
    *counts
        .first()
        .unwrap_or_else(|| panic!("no snapshot count in stats\n{out}"))
}

#[test]
fn every_password_source_and_a_file_url_open_the_repository() {
    let env = env_with_repo();
    let pw = env.password_file().to_path_buf();
    let password = coffer_testkit::cli::PASSWORD;

    let mut cmd = env.cmd(["snapshots"]);
    cmd.env_remove("COFFER_PASSWORD_FILE")
        .env("COFFER_PASSWORD", password);
    env.run_cmd(cmd).assert_ok();

    let mut cmd = env.cmd(["--password-file", s(&pw), "snapshots"]);
    cmd.env_remove("COFFER_PASSWORD_FILE");
    env.run_cmd(cmd).assert_ok();

    let mut cmd = env.cmd([
        "--password-command",
        &format!("cat '{}'", s(&pw)),
        "snapshots",
    ]);
    cmd.env_remove("COFFER_PASSWORD_FILE");
    env.run_cmd(cmd).assert_ok();

    let mut cmd = env.cmd(["snapshots"]);
    cmd.env_remove("COFFER_PASSWORD_FILE")
        .env("COFFER_PASSWORD_COMMAND", format!("echo '{password}'"));
    env.run_cmd(cmd).assert_ok();

    let url = format!("file://{}", s(env.repo()));
    let mut cmd = env.cmd(["--repo", &url, "snapshots"]);
    cmd.env_remove("COFFER_REPOSITORY");
    env.run_cmd(cmd).assert_ok();

    // No password at all, and no terminal to ask on: a clear failure, not a hang.
    let mut cmd = env.cmd(["snapshots"]);
    cmd.env_remove("COFFER_PASSWORD_FILE");
    let out = env.run_cmd(cmd).assert_failure();
    assert!(out.stderr.to_lowercase().contains("password"), "{out}");
}

/// `coffer snapshots | head`: a reader that goes away ends the listing quietly, with the status
/// a shell gives a process ended by SIGPIPE, and no panic message.
#[test]
fn a_closed_output_pipe_ends_the_listing_quietly() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"a")]);
    env.backup([s(&src)]);
    let mut cmd = env.cmd(["snapshots"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Close the reading end before the listing is printed (opening the repository comes first).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
