//! S3 Object Lock through the CLI, against moto (which keeps object versions and refuses to
//! delete a version before its retention ends): `init` and `backup --object-lock` lock every
//! object version but the lock files, a locked version cannot be deleted, restore still works,
//! and the clear refusals (bucket without Object Lock, non-S3 repository, bad durations);
//! `extend-lock` moves the retention of every current object (reused packs included, pruned
//! ones and lock files not) and refuses clearly where it cannot work.

use super::s;
use coffer_testkit::servers::S3Server;
use coffer_testkit::tree::{assert_trees_equal, snapshot_tree, write_random_file};

const SECRET: &str = "object-lock-secret-that-must-never-be-printed";

/// The text between `<name>` and `</name>` in `xml`, if any.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

/// One object version listed by `GET ?versions`.
#[derive(Debug)]
struct Version {
    key: String,
    id: String,
    size: u64,
}

/// Every object version (not the delete markers) under `prefix` in `bucket`.
fn versions(s3: &S3Server, bucket: &str, prefix: &str) -> Vec<Version> {
    let resp = s3.raw_request("GET", &format!("{bucket}?versions&prefix={prefix}"), &[]);
    assert_eq!(resp.status, 200, "listing versions: {}", resp.text());
    let text = resp.text();
    assert!(
        tag(&text, "IsTruncated") != Some("true"),
        "the version listing is truncated"
    );
    text.split("<Version>")
        .skip(1)
        .map(|v| {
            let v = &v[..v.find("</Version>").expect("a closed <Version>")];
            Version {
                key: tag(v, "Key").expect("Key").to_string(),
                id: tag(v, "VersionId").expect("VersionId").to_string(),
                size: tag(v, "Size").expect("Size").parse().expect("a size"),
            }
        })
        .collect()
}

/// The retention (mode, seconds from now to its end) of one object version, if it has one.
fn retention(s3: &S3Server, bucket: &str, v: &Version) -> Option<(String, i64)> {
    let resp = s3.raw_request(
        "HEAD",
        &format!("{bucket}/{}?versionId={}", v.key, v.id),
        &[],
    );
    assert_eq!(resp.status, 200, "HEAD {} version {}", v.key, v.id);
    let until = resp.header("x-amz-object-lock-retain-until-date")?;
    let until = chrono::DateTime::parse_from_rfc3339(until)
        .unwrap_or_else(|e| panic!("retain-until date {until:?} of {}: {e}", v.key));
    let mode = resp
        .header("x-amz-object-lock-mode")
        .expect("a lock mode with the retain-until date")
        .to_string();
    Some((
        mode,
        (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds(),
    ))
}

/// `coffer ARGS` against moto, credentials in the environment (never printed).
fn runner<'a>(
    s3: &'a S3Server,
    env: &'a coffer_testkit::cli::CofferEnv,
) -> impl Fn(&[&str]) -> coffer_testkit::cli::CmdOutput + 'a {
    move |args: &[&str]| {
        let mut c = env.cmd(args);
        c.env("AWS_ENDPOINT_URL_S3", s3.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "coffer-test")
            .env("AWS_SECRET_ACCESS_KEY", SECRET);
        let out = env.run_cmd(c);
        assert!(
            !out.stdout.contains(SECRET) && !out.stderr.contains(SECRET),
            "a secret was printed"
        );
        out
    }
}

#[test]
fn backups_with_object_lock_cannot_be_deleted_and_still_restore() {
    let s3 = S3Server::start();
    let bucket = "coffer-locked";
    s3.create_locked_bucket(bucket);
    let env = crate::env();
    let run = runner(&s3, &env);
    let url = format!("s3://{bucket}/repo");
    run(&["--repo", &url, "--object-lock", "1d", "init"]).assert_ok();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    // Random data: a pack above the 16 MiB multipart threshold, and a small one.
    write_random_file(&src.join("big.bin"), 22_000_000, 11);
    write_random_file(&src.join("sub/small.bin"), 20_000, 12);
    run(&["--repo", &url, "--object-lock", "1d", "backup", s(&src)]).assert_ok();

    let all = versions(&s3, bucket, "repo/");
    let day = 86_400;
    let mut locked_dirs = std::collections::BTreeSet::new();
    let mut multipart_pack_locked = false;
    let mut lock_versions = Vec::new();
    for v in &all {
        let rel = v.key.strip_prefix("repo/").unwrap();
        let dir = rel.split('/').next().unwrap();
        let got = retention(&s3, bucket, v);
        if dir == "locks" {
            assert_eq!(got, None, "lock file {} must not be locked", v.key);
            lock_versions.push(v);
            continue;
        }
        let (mode, ahead) =
            got.unwrap_or_else(|| panic!("{} (version {}) has no retention", v.key, v.id));
        assert_eq!(mode, "GOVERNANCE", "{}", v.key);
        // About one day ahead: written in the last few minutes, retention 1d.
        assert!(
            (day - 600..=day + 5).contains(&ahead),
            "{} is retained {ahead}s more, not about a day",
            v.key
        );
        locked_dirs.insert(dir.to_string());
        if dir == "data" && v.size > 16 * 1024 * 1024 {
            multipart_pack_locked = true;
        }
    }
    for dir in ["config", "keys", "data", "index", "snapshots"] {
        assert!(
            locked_dirs.contains(dir),
            "no locked object under {dir}: {all:?}"
        );
    }
    assert!(
        multipart_pack_locked,
        "no pack above the multipart threshold was locked: {all:?}"
    );
    assert!(
        !lock_versions.is_empty(),
        "no lock file version was listed: {all:?}"
    );

    // The server refuses to delete a locked version (what a stolen key would try) ...
    let pack = all
        .iter()
        .find(|v| v.key.starts_with("repo/data/"))
        .unwrap();
    let del = s3.raw_request(
        "DELETE",
        &format!("{bucket}/{}?versionId={}", pack.key, pack.id),
        &[],
    );
    assert_eq!(del.status, 403, "deleting a locked version: {}", del.text());
    assert!(
        retention(&s3, bucket, pack).is_some(),
        "the version is gone"
    );
    // ... while a lock file version can be deleted.
    let lock = lock_versions[0];
    let del = s3.raw_request(
        "DELETE",
        &format!("{bucket}/{}?versionId={}", lock.key, lock.id),
        &[],
    );
    assert_eq!(
        del.status,
        204,
        "deleting a lock file version: {}",
        del.text()
    );

    // A later command without --object-lock reads the repository normally; restore is exact.
    let target = env.path("restored");
    run(&["--repo", &url, "restore", "latest", "--target", s(&target)]).assert_ok();
    assert_trees_equal(&snapshot_tree(&src), &snapshot_tree(&target));
    run(&["--repo", &url, "check", "--read-data"]).assert_ok();

    // Compliance mode through storage options: not even a governance bypass deletes it.
    let url2 = format!("s3://{bucket}/strict");
    let opts = [
        "-o",
        "s3.object_lock=12h",
        "-o",
        "s3.object_lock_mode=compliance",
    ];
    let mut args = vec!["--repo", url2.as_str()];
    args.extend(opts);
    args.push("init");
    run(&args).assert_ok();
    let cfg = versions(&s3, bucket, "strict/config");
    assert_eq!(cfg.len(), 1, "{cfg:?}");
    let (mode, ahead) = retention(&s3, bucket, &cfg[0]).expect("config is locked");
    assert_eq!(mode, "COMPLIANCE");
    assert!(
        (12 * 3_600 - 600..=12 * 3_600 + 5).contains(&ahead),
        "{ahead}"
    );
    let del = s3.raw_request(
        "DELETE",
        &format!("{bucket}/{}?versionId={}", cfg[0].key, cfg[0].id),
        &[("x-amz-bypass-governance-retention", "true".to_string())],
    );
    assert_eq!(
        del.status,
        403,
        "deleting a compliance version: {}",
        del.text()
    );
}

#[test]
fn object_lock_is_refused_clearly_where_it_cannot_work() {
    let s3 = S3Server::start();
    let env = crate::env();
    let run = runner(&s3, &env);
    // The test bucket has no Object Lock: init fails up front, naming the bucket, and writes
    // nothing.
    let url = s3.url("plain");
    let out = run(&["--repo", &url, "--object-lock", "30d", "init"]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains(&format!("{:?}", s3.bucket))
            && out.stderr.contains("does not have Object Lock enabled")
            && out.stderr.contains("--object-lock-enabled-for-bucket"),
        "unclear error: {}",
        out.stderr
    );
    assert!(
        versions(&s3, &s3.bucket, "plain/").is_empty(),
        "init wrote to a bucket it refused"
    );

    // backup too, on a repository made without the lock: nothing is written.
    run(&["--repo", &url, "init"]).assert_ok();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("f.bin"), 10_000, 3);
    let out = run(&["--repo", &url, "--object-lock", "30d", "backup", s(&src)]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains("does not have Object Lock enabled"),
        "{}",
        out.stderr
    );
    assert!(
        versions(&s3, &s3.bucket, "plain/snapshots/").is_empty(),
        "a snapshot was written"
    );
    assert!(
        versions(&s3, &s3.bucket, "plain/data/").is_empty(),
        "a pack was written"
    );

    // The environment variable works like the flag.
    let mut c = env.cmd(["--repo", &url, "backup", s(&src)]);
    c.env("AWS_ENDPOINT_URL_S3", s3.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "coffer-test")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("COFFER_OBJECT_LOCK", "1w");
    let out = env.run_cmd(c);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("Object Lock"), "{}", out.stderr);

    // Not on S3.
    let local = env.path("local-repo");
    let out = env.run(["--repo", s(&local), "--object-lock", "30d", "init"]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains("--object-lock works only on S3"),
        "{}",
        out.stderr
    );
    assert!(!local.exists(), "a local repository was created");

    // Bad durations and modes are usage errors.
    for bad in ["0d", "30", "1x", "d", "-1d", "1.5d"] {
        let flag = format!("--object-lock={bad}");
        let out = run(&["--repo", &url, &flag, "snapshots"]);
        assert_eq!(out.code(), 2, "{bad}: {out}");
        assert!(
            out.stderr.contains("--object-lock") && out.stderr.contains("e.g. 30d"),
            "{bad}: {}",
            out.stderr
        );
    }
    let out = run(&[
        "--repo",
        &url,
        "-o",
        "s3.object_lock_mode=strict",
        "snapshots",
    ]);
    assert_eq!(out.code(), 2, "{out}");
    assert!(
        out.stderr.contains("governance or compliance"),
        "{}",
        out.stderr
    );
    let out = run(&["--repo", &url, "-o", "s3.object_lock=0h", "snapshots"]);
    assert_eq!(out.code(), 2, "{out}");
}

#[test]
fn locked_uploads_carry_valid_signatures() {
    // moto with IAM authentication recomputes each request's SigV4 signature: the uploads whose
    // retention headers were added (and signed again) must still match, with a real key.
    let bucket = "coffer-locked-auth";
    let (s3, key_id, secret) = S3Server::start_with_locked_bucket_and_user(bucket);
    let env = crate::env();
    let url = format!("s3://{bucket}/repo");
    let run = |key: &str, args: &[&str]| {
        let mut c = env.cmd(args);
        c.env("AWS_ENDPOINT_URL_S3", s3.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", &key_id)
            .env("AWS_SECRET_ACCESS_KEY", key);
        let out = env.run_cmd(c);
        assert!(
            !out.stdout.contains(key) && !out.stderr.contains(key),
            "a secret was printed"
        );
        out
    };
    // A wrong secret is refused: the server does check signatures.
    let bad = run(
        "not-the-secret",
        &["--repo", &url, "--object-lock", "1d", "init"],
    );
    assert_eq!(bad.code(), 1, "{bad}");
    assert!(bad.stderr.contains("was denied"), "{}", bad.stderr);
    // The right one: the bucket check, the key file and the config (uploads signed again
    // after their retention headers were added) all pass the server's signature check.
    let out = run(&secret, &["--repo", &url, "--object-lock", "1d", "init"]).assert_ok();
    assert!(out.stdout.contains("created repository"), "{out}");
}

/// The keys of the current objects (not noncurrent versions, not behind a delete marker) under
/// `prefix` in `bucket`.
fn current_keys(s3: &S3Server, bucket: &str, prefix: &str) -> Vec<String> {
    let resp = s3.raw_request(
        "GET",
        &format!("{bucket}?list-type=2&max-keys=1000&prefix={prefix}"),
        &[],
    );
    assert_eq!(resp.status, 200, "listing objects: {}", resp.text());
    let text = resp.text();
    assert!(
        tag(&text, "IsTruncated") != Some("true"),
        "the listing is truncated"
    );
    text.split("<Contents>")
        .skip(1)
        .map(|c| tag(c, "Key").expect("Key").to_string())
        .collect()
}

/// The retention (mode, seconds from now to its end) of the current version of `key`.
fn current_retention(s3: &S3Server, bucket: &str, key: &str) -> Option<(String, i64)> {
    let resp = s3.raw_request("HEAD", &format!("{bucket}/{key}"), &[]);
    assert_eq!(resp.status, 200, "HEAD {key}");
    let until = resp.header("x-amz-object-lock-retain-until-date")?;
    let until = chrono::DateTime::parse_from_rfc3339(until)
        .unwrap_or_else(|e| panic!("retain-until date {until:?} of {key}: {e}"));
    let mode = resp
        .header("x-amz-object-lock-mode")
        .expect("a lock mode with the retain-until date")
        .to_string();
    Some((
        mode,
        (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds(),
    ))
}

#[test]
fn extend_lock_moves_the_retention_of_every_current_object() {
    let s3 = S3Server::start();
    let bucket = "coffer-extend";
    s3.create_locked_bucket(bucket);
    let env = crate::env();
    let run = runner(&s3, &env);
    let url = format!("s3://{bucket}/repo");
    let lock1h = ["--repo", url.as_str(), "--object-lock", "1h"];
    let with = |extra: &[&str]| -> Vec<String> {
        lock1h.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    let run_v = |args: Vec<String>| run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run_v(with(&["init"])).assert_ok();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("a.bin"), 700_000, 21);
    run_v(with(&["backup", s(&src)])).assert_ok();
    let first_packs = current_keys(&s3, bucket, "repo/data/");
    assert!(!first_packs.is_empty(), "the first backup wrote no pack");
    // The second backup reuses the first one's packs (their retention is not renewed).
    write_random_file(&src.join("b.bin"), 300_000, 22);
    run_v(with(&["backup", s(&src)])).assert_ok();
    // A third snapshot, of other data, is deleted and pruned: its packs get delete markers.
    let other = env.path("other");
    std::fs::create_dir_all(&other).unwrap();
    write_random_file(&other.join("c.bin"), 500_000, 23);
    let third = run_v(with(&["--json", "backup", s(&other)]))
        .assert_ok()
        .json();
    let third_id = third["snapshot_id"]
        .as_str()
        .expect("snapshot_id")
        .to_string();
    run(&["--repo", &url, "delete", &third_id]).assert_ok();
    // Prune without --object-lock: what it writes (index files) has no retention at all.
    for _ in 0..2 {
        run(&["--repo", &url, "prune", "--grace", "0s"]).assert_ok();
    }
    let current: Vec<String> = current_keys(&s3, bucket, "repo/");
    let pruned: Vec<Version> = versions(&s3, bucket, "repo/data/")
        .into_iter()
        .filter(|v| !current.contains(&v.key))
        .collect();
    assert!(
        !pruned.is_empty(),
        "prune left no pack behind a delete marker: {current:?}"
    );
    for p in &first_packs {
        assert!(
            current.contains(p),
            "a pack of the first backup is gone: {p}"
        );
    }
    let unlocked_before = current
        .iter()
        .filter(|k| !k.starts_with("repo/locks/"))
        .filter(|k| current_retention(&s3, bucket, k).is_none())
        .count();
    assert!(
        unlocked_before > 0,
        "prune without --object-lock wrote only locked objects?"
    );

    let out = run(&["--repo", &url, "--object-lock", "2d", "extend-lock"]).assert_ok();
    assert!(
        out.stdout.contains("extended") && out.stdout.contains("0 failed"),
        "{out}"
    );

    let two_days = 2 * 86_400;
    let mut dirs = std::collections::BTreeSet::new();
    let mut checked = 0;
    for key in current_keys(&s3, bucket, "repo/") {
        let dir = key["repo/".len()..].split('/').next().unwrap().to_string();
        let got = current_retention(&s3, bucket, &key);
        if dir == "locks" {
            assert_eq!(got, None, "lock file {key} was locked");
            continue;
        }
        let (mode, ahead) = got.unwrap_or_else(|| panic!("{key} has no retention"));
        assert_eq!(mode, "GOVERNANCE", "{key}");
        assert!(
            (two_days - 600..=two_days + 5).contains(&ahead),
            "{key} is retained {ahead}s more, not about two days"
        );
        dirs.insert(dir);
        checked += 1;
    }
    for dir in ["config", "keys", "data", "index", "snapshots"] {
        assert!(dirs.contains(dir), "nothing extended under {dir}: {dirs:?}");
    }
    // The first backup's packs, reused by the second, were extended (checked above as current
    // objects); the pruned pack's versions keep their old retention and can expire.
    for v in &pruned {
        let (_, ahead) =
            retention(&s3, bucket, v).unwrap_or_else(|| panic!("{} lost its retention", v.key));
        assert!(
            ahead <= 3_600 + 5,
            "pruned {} was extended to {ahead}s",
            v.key
        );
    }
    // Lock files (extend-lock's own included) were never given a retention.
    let lock_versions: Vec<Version> = versions(&s3, bucket, "repo/locks/");
    assert!(!lock_versions.is_empty(), "no lock file version was listed");
    for v in &lock_versions {
        assert_eq!(
            retention(&s3, bucket, v),
            None,
            "lock file {} locked",
            v.key
        );
    }

    // Again with a shorter period: nothing is shortened, everything is already later.
    let report = run(&[
        "--repo",
        &url,
        "--json",
        "--object-lock",
        "1d",
        "extend-lock",
    ])
    .assert_ok()
    .json();
    assert_eq!(report["objects"], checked, "{report}");
    assert_eq!(report["already_later"], checked, "{report}");
    assert_eq!(report["extended"], 0, "{report}");
    assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    for key in current_keys(&s3, bucket, "repo/data/") {
        let (_, ahead) = current_retention(&s3, bucket, &key).expect("still locked");
        assert!(ahead > 86_400 + 3_600, "{key} was shortened to {ahead}s");
    }
    run(&["--repo", &url, "check", "--read-data"]).assert_ok();
}

#[test]
fn extend_lock_is_refused_clearly_where_it_cannot_work() {
    let s3 = S3Server::start();
    let bucket = "coffer-extend-refused";
    s3.create_locked_bucket(bucket);
    let env = crate::env();
    let run = runner(&s3, &env);
    let url = format!("s3://{bucket}/repo");
    run(&["--repo", &url, "--object-lock", "1h", "init"]).assert_ok();

    // No period: a usage error saying how to give one.
    let out = run(&["--repo", &url, "extend-lock"]);
    assert_eq!(out.code(), 2, "{out}");
    assert!(
        out.stderr.contains("--object-lock DURATION") && out.stderr.contains("COFFER_OBJECT_LOCK"),
        "{}",
        out.stderr
    );
    // The s3.object_lock option is a period too (and a bad one a usage error).
    let out = run(&[
        "--repo",
        &url,
        "-o",
        "s3.object_lock=2h",
        "--json",
        "extend-lock",
    ]);
    let report = out.assert_ok().json();
    assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    assert!(report["extended"].as_u64().unwrap() >= 2, "{report}");

    // Not on S3.
    let local = env.path("local-repo");
    env.run(["--repo", s(&local), "init"]).assert_ok();
    let out = env.run(["--repo", s(&local), "--object-lock", "30d", "extend-lock"]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("works only on S3"), "{}", out.stderr);

    // A wrong password and a missing repository: the usual refusals, nothing extended.
    let wrong = env.write_password_file("wrong", "not-the-password");
    let out = run(&[
        "--repo",
        &url,
        "--password-file",
        s(&wrong),
        "--object-lock",
        "30d",
        "extend-lock",
    ]);
    assert_eq!(out.code(), 12, "{out}");
    let cfg = current_keys(&s3, bucket, "repo/config");
    let (_, ahead) = current_retention(&s3, bucket, &cfg[0]).expect("config locked");
    assert!(
        ahead < 3 * 3_600,
        "a refused run extended the config: {ahead}s"
    );
    let out = run(&[
        "--repo",
        &format!("s3://{bucket}/nothing-here"),
        "--object-lock",
        "30d",
        "extend-lock",
    ]);
    assert_eq!(out.code(), 10, "{out}");

    // A bucket without Object Lock.
    let plain = s3.url("plain");
    run(&["--repo", &plain, "init"]).assert_ok();
    let out = run(&["--repo", &plain, "--object-lock", "1d", "extend-lock"]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains("does not have Object Lock enabled"),
        "{}",
        out.stderr
    );
}
