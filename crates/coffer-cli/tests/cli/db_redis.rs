//! The Redis source through the `coffer` command, against real `redis-server` processes: the
//! shared database suite, a whole-server round trip of the awkward data set over several dbs
//! (every key compared, key counts against DBSIZE), backups while a transactional writer runs,
//! both transfer forms (diskless and disk), passwords, an unreachable server, the safety backup
//! and `--clean`, a dry run, `coffer dump` checked by `redis-check-rdb` and loaded by a
//! fresh server, and TLS (`rediss://`): backup and restore with a trusted CA, untrusted
//! certificates, client certificates, plain and TLS ports mixed up.

use coffer_testkit::cli::{str_field, CmdOutput, CofferEnv};
use coffer_testkit::db_suite;
use coffer_testkit::redis_server::{
    check_bank, checksums, load_awkward, redis_bin, setup_bank, BankWriter, RedisFixture,
    RedisOptions, RedisServer,
};
use coffer_testkit::servers::closed_port;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// Runs coffer with extra environment variables.
fn run(env: &CofferEnv, vars: &[(&str, &str)], args: &[&str]) -> CmdOutput {
    let mut cmd = env.cmd(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    env.run_cmd(cmd)
}

/// Backs up `url`; returns the snapshot id.
fn backup(env: &CofferEnv, vars: &[(&str, &str)], url: &str) -> String {
    let out = run(env, vars, &["--json", "backup", url]).assert_ok();
    str_field(&out.json(), "snapshot_id")
}

/// The database manifest of a snapshot.
fn manifest(env: &CofferEnv, id: &str) -> Value {
    let out = env.run(["--json", "show", id]).assert_ok();
    out.json()["extra"].clone()
}

/// `db -> keys` from a manifest.
fn manifest_keys(m: &Value) -> BTreeMap<u32, u64> {
    m["databases"]
        .as_array()
        .expect("a databases list")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().parse().unwrap(),
                d["keys"].as_u64().expect("a key count"),
            )
        })
        .collect()
}

#[test]
fn shared_database_suite() {
    let env = crate::env_with_repo();
    let fx = RedisFixture::start();
    db_suite::run_all(&env, &fx);
}

#[test]
fn whole_server_roundtrip_keeps_every_key_of_every_db() {
    let env = crate::env_with_repo();
    let src = RedisServer::start();
    load_awkward(&src, 0);
    load_awkward(&src, 5);
    setup_bank(&src, 9);
    let want: BTreeMap<u32, _> = [0, 5, 9]
        .iter()
        .map(|d| (*d, checksums(&src, *d)))
        .collect();
    let sizes = src.dbsizes();

    let id = backup(&env, &[], &src.url(None));
    let m = manifest(&env, &id);
    // A quiet server: the manifest's counts are DBSIZE at the moment of the snapshot.
    assert_eq!(manifest_keys(&m), sizes, "{m:#}");
    assert_eq!(m["engine"], "redis");
    assert_eq!(m["server_version"].as_str().unwrap(), redis_version());
    assert_eq!(m["details"]["rdb_version"], 10);
    assert_eq!(m["details"]["checksum"], "verified");
    assert!(
        m["details"]["keys_with_ttl"].as_u64().unwrap() >= 6,
        "{m:#}"
    );

    let dst = RedisServer::start();
    let out = run(
        &env,
        &[],
        &[
            "--json",
            "restore",
            &id,
            "--target",
            &dst.url(None),
            "--yes",
        ],
    )
    .assert_ok();
    let report = out.json();
    assert_eq!(report["mismatches"], serde_json::json!([]), "{out}");
    assert_eq!(report["counts"].as_array().unwrap().len(), 3, "{out}");
    assert_eq!(dst.dbsizes(), sizes);
    for (db, sums) in &want {
        assert_eq!(
            &checksums(&dst, *db),
            sums,
            "db {db} differs after the restore"
        );
    }
    check_bank(&dst, 9);

    // One db of a whole-server snapshot into another db number.
    dst.flushall();
    let target = dst.url(Some(12));
    run(
        &env,
        &[],
        &[
            "restore",
            &id,
            "--target",
            &target,
            "--database",
            "5",
            "--yes",
        ],
    )
    .assert_ok();
    assert_eq!(checksums(&dst, 12), want[&5]);
    assert_eq!(dst.dbsizes().keys().copied().collect::<Vec<_>>(), vec![12]);

    // A target with a db needs to know which db of the snapshot.
    run(
        &env,
        &[],
        &["restore", &id, "--target", &dst.url(Some(3)), "--yes"],
    )
    .assert_failure()
    .assert_mentions("--database");
}

#[test]
fn one_db_backup_holds_only_that_db() {
    let env = crate::env_with_repo();
    let src = RedisServer::start();
    load_awkward(&src, 2);
    setup_bank(&src, 4);
    let id = backup(&env, &[], &src.url(Some(4)));
    let m = manifest(&env, &id);
    assert_eq!(manifest_keys(&m), BTreeMap::from([(4, src.dbsizes()[&4])]));
    assert_eq!(m["details"]["only_db"], 4);
    // The stored RDB holds db 4 alone, and is still a valid file.
    let rdb = env.path("one.rdb");
    let out = env.run(["dump", &id]).assert_ok();
    std::fs::write(&rdb, &out.stdout_raw).unwrap();
    check_rdb(&rdb);
    let loaded = RedisServer::start_with(RedisOptions {
        load_rdb: Some(rdb),
        ..RedisOptions::default()
    });
    assert_eq!(loaded.dbsizes(), BTreeMap::from([(4, src.dbsizes()[&4])]));
    assert_eq!(checksums(&loaded, 4), checksums(&src, 4));
}

#[test]
fn backups_under_a_running_writer_are_consistent() {
    let env = crate::env_with_repo();
    // The disk-based transfer (`$<len>` form), chosen on the server and with ?sync=disk.
    for (disk_server, param) in [(false, ""), (true, ""), (false, "?sync=disk")] {
        let src = RedisServer::start_with(RedisOptions {
            disk_sync: disk_server,
            ..RedisOptions::default()
        });
        setup_bank(&src, 1);
        load_awkward(&src, 0);
        let writer = BankWriter::start(&src, 1);
        while writer.count() < 200 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let id = backup(&env, &[], &format!("{}{param}", src.url(None)));
        let during = writer.count();
        let done = db_suite::Writer::stop(Box::new(writer));
        assert!(done > during, "the writer kept going during the backup");
        let m = manifest(&env, &id);
        let form = if disk_server || !param.is_empty() {
            "disk"
        } else {
            "diskless"
        };
        assert_eq!(m["details"]["transfer"], form, "{m:#}");

        let dst = RedisServer::start();
        run(
            &env,
            &[],
            &["restore", &id, "--target", &dst.url(None), "--yes"],
        )
        .assert_ok();
        let tx = check_bank(&dst, 1);
        assert!(
            tx >= 200 && tx <= done,
            "{tx} transactions restored, {done} committed"
        );
        // The counts in the manifest are those of the restored point in time.
        assert_eq!(manifest_keys(&m), dst.dbsizes());
        assert_eq!(checksums(&dst, 0), checksums(&src, 0));
    }
}

#[test]
fn passwords_from_url_file_and_environment_never_printed() {
    let env = crate::env_with_repo();
    let pw = "pw-Redis-9f8e7d";
    let src = RedisServer::start_with(RedisOptions {
        password: Some(pw.into()),
        ..RedisOptions::default()
    });
    setup_bank(&src, 0);
    let plain = src.url(None);

    let out = run(&env, &[], &["backup", &plain]).assert_failure();
    let out = out.assert_mentions("needs a password");
    assert!(!out.combined().contains(pw));

    let wrong = plain.replacen("redis://", "redis://:not-it@", 1);
    let out = run(&env, &[], &["backup", &wrong])
        .assert_failure()
        .assert_mentions("refused the password");
    assert!(!out.combined().contains("not-it"), "{out}");
    let out = run(&env, &[("REDISCLI_AUTH", "nope")], &["backup", &plain])
        .assert_failure()
        .assert_mentions("refused the password");
    assert!(!out.combined().contains("nope"), "{out}");

    let in_url = src.url_with_password(None);
    let out = run(&env, &[], &["--json", "backup", &in_url]).assert_ok();
    assert!(!out.combined().contains(pw), "{out}");
    let file = env.write_password_file("redis-pw", pw);
    run(
        &env,
        &[],
        &[
            "backup",
            &plain,
            "--db-password-file",
            file.to_str().unwrap(),
        ],
    )
    .assert_ok();
    let out = run(
        &env,
        &[("REDISCLI_AUTH", pw)],
        &["--json", "backup", &plain],
    )
    .assert_ok();
    let id = str_field(&out.json(), "snapshot_id");
    let shown = env.run(["--json", "show", &id]).assert_ok();
    assert!(!shown.combined().contains(pw));
    let listed = env.run(["snapshots"]).assert_ok();
    assert!(!listed.combined().contains(pw));
    assert_eq!(
        env.snapshot_ids().len(),
        3,
        "failed backups list no snapshot"
    );
}

#[test]
fn unreachable_server_and_unsupported_urls_fail_clearly() {
    let env = crate::env_with_repo();
    let port = closed_port();
    run(&env, &[], &["backup", &format!("redis://127.0.0.1:{port}")])
        .assert_failure()
        .assert_mentions("cannot connect to Redis")
        .assert_mentions(&port.to_string());
    run(
        &env,
        &[],
        &["backup", &format!("rediss://127.0.0.1:{port}")],
    )
    .assert_failure()
    .assert_mentions("cannot connect to Redis")
    .assert_mentions(&port.to_string());
    // TLS options belong to rediss:// URLs.
    run(
        &env,
        &[],
        &[
            "backup",
            &format!("redis://127.0.0.1:{port}?tls_ca=/ca.pem"),
        ],
    )
    .assert_failure()
    .assert_mentions("rediss://");
    run(
        &env,
        &[],
        &["backup", &format!("redis://127.0.0.1:{port}/cache")],
    )
    .assert_failure()
    .assert_mentions("number");
    assert!(env.snapshot_ids().is_empty());
}

#[test]
fn restore_over_data_needs_clean_and_takes_a_safety_backup() {
    let env = crate::env_with_repo();
    let src = RedisServer::start();
    load_awkward(&src, 0);
    let want = checksums(&src, 0);
    let id = backup(&env, &[], &src.url(None));

    let dst = RedisServer::start();
    setup_bank(&dst, 0);
    load_awkward(&dst, 7);
    let before0 = checksums(&dst, 0);
    let before7 = checksums(&dst, 7);

    // Dry run: the plan, nothing touched, no snapshot.
    let out = run(
        &env,
        &[],
        &["restore", &id, "--target", &dst.url(None), "--dry-run"],
    )
    .assert_ok();
    assert!(out.combined().contains("db0") || out.combined().contains("database 0"));
    assert_eq!(checksums(&dst, 0), before0);
    assert_eq!(env.snapshot_ids().len(), 1);

    // Not empty, no --clean: refused, untouched.
    run(
        &env,
        &[],
        &["restore", &id, "--target", &dst.url(None), "--yes"],
    )
    .assert_failure()
    .assert_mentions("--clean");
    assert_eq!(checksums(&dst, 0), before0);
    assert_eq!(checksums(&dst, 7), before7);

    // --clean: a safety backup first, then the whole server replaced.
    run(
        &env,
        &[],
        &[
            "restore",
            &id,
            "--target",
            &dst.url(None),
            "--yes",
            "--clean",
        ],
    )
    .assert_ok();
    assert_eq!(checksums(&dst, 0), want);
    assert_eq!(dst.dbsizes().keys().copied().collect::<Vec<_>>(), vec![0]);
    let safety: Vec<Value> = env
        .snapshots(None::<&str>)
        .into_iter()
        .filter(|s| s["tags"].to_string().contains("safety"))
        .collect();
    assert_eq!(safety.len(), 1, "one safety snapshot");
    let safety_id = safety[0]["id"].as_str().unwrap().to_string();

    // The safety backup brings the old data back.
    let back = RedisServer::start();
    run(
        &env,
        &[],
        &["restore", &safety_id, "--target", &back.url(None), "--yes"],
    )
    .assert_ok();
    assert_eq!(checksums(&back, 0), before0);
    assert_eq!(checksums(&back, 7), before7);
    check_bank(&back, 0);

    // Redis has no tables.
    run(
        &env,
        &[],
        &[
            "restore",
            &id,
            "--target",
            &back.url(None),
            "--table",
            "x",
            "--yes",
        ],
    )
    .assert_failure()
    .assert_mentions("table");
}

#[test]
fn dump_is_an_rdb_file_redis_loads() {
    let env = crate::env_with_repo();
    let src = RedisServer::start();
    load_awkward(&src, 0);
    load_awkward(&src, 3);
    let id = backup(&env, &[], &src.url(None));

    let out = env.run(["dump", &id]).assert_ok();
    let rdb = env.path("all.rdb");
    std::fs::write(&rdb, &out.stdout_raw).unwrap();
    assert!(out.stdout_raw.starts_with(b"REDIS0010"));
    check_rdb(&rdb);
    let loaded = RedisServer::start_with(RedisOptions {
        load_rdb: Some(rdb),
        ..RedisOptions::default()
    });
    assert_eq!(loaded.dbsizes(), src.dbsizes());
    assert_eq!(checksums(&loaded, 0), checksums(&src, 0));
    assert_eq!(checksums(&loaded, 3), checksums(&src, 3));

    // One db of it: a smaller, still valid file.
    let out = env.run(["dump", &id, "--database", "3"]).assert_ok();
    let one = env.path("db3.rdb");
    std::fs::write(&one, &out.stdout_raw).unwrap();
    check_rdb(&one);
    let loaded = RedisServer::start_with(RedisOptions {
        load_rdb: Some(one),
        ..RedisOptions::default()
    });
    assert_eq!(loaded.dbsizes(), BTreeMap::from([(3, src.dbsizes()[&3])]));
    assert_eq!(checksums(&loaded, 3), checksums(&src, 3));
}

/// `redis-check-rdb FILE` accepts the file.
fn check_rdb(path: &std::path::Path) {
    let out = Command::new(redis_bin("redis-check-rdb"))
        .arg(path)
        .output()
        .expect("run redis-check-rdb");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("RDB looks OK"),
        "redis-check-rdb rejects {}:\n{text}",
        path.display()
    );
}

fn redis_version() -> String {
    let out = Command::new(redis_bin("redis-server"))
        .arg("--version")
        .output()
        .expect("run redis-server --version");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .expect("a version")
        .to_string()
}

#[test]
fn keys_expired_since_the_backup_are_reported_not_counted_as_lost() {
    let env = crate::env_with_repo();
    let src = RedisServer::start();
    setup_bank(&src, 0);
    src.exec(0, &["SET", "short-lived", "x", "PX", "1500"]);
    let id = backup(&env, &[], &src.url(None));
    assert_eq!(manifest_keys(&manifest(&env, &id))[&0], src.dbsizes()[&0]);
    std::thread::sleep(Duration::from_millis(1600));
    let dst = RedisServer::start();
    let out = run(
        &env,
        &[],
        &[
            "--json",
            "restore",
            &id,
            "--target",
            &dst.url(None),
            "--yes",
        ],
    )
    .assert_ok();
    let report = out.json();
    assert_eq!(report["mismatches"], serde_json::json!([]), "{out}");
    assert!(report["warnings"].to_string().contains("expired"), "{out}");
    check_bank(&dst, 0);
}

/// `rediss://`: an untrusted certificate fails before anything is stored; with `?tls_ca` the
/// backup and the restore into another TLS server keep every key; the password never shows.
#[test]
fn tls_backup_and_restore_with_a_trusted_ca() {
    let env = crate::env_with_repo();
    let pw = "pw-Tls-5c4b3a2d";
    let src = RedisServer::start_with(RedisOptions {
        password: Some(pw.into()),
        tls: true,
        ..RedisOptions::default()
    });
    let tls_port = src.tls_port.unwrap().to_string();
    load_awkward(&src, 0);
    setup_bank(&src, 3);
    let sizes = src.dbsizes();
    let want0 = checksums(&src, 0);

    // The test CA is not one the system trusts: a clear failure, no snapshot.
    let untrusted =
        src.tls_url_untrusted(None)
            .replacen("rediss://", &format!("rediss://:{pw}@"), 1);
    let out = run(&env, &[], &["backup", &untrusted])
        .assert_failure()
        .assert_mentions("TLS handshake")
        .assert_mentions(&format!("127.0.0.1:{tls_port}"))
        .assert_mentions("not trusted")
        .assert_mentions("?tls_ca=");
    assert!(!out.combined().contains(pw), "{out}");
    assert!(
        env.snapshot_ids().is_empty(),
        "a failed backup lists no snapshot"
    );

    // Trusting the test CA.
    let out = run(
        &env,
        &[],
        &["--json", "backup", &src.tls_url_with_password(None)],
    )
    .assert_ok();
    assert!(!out.combined().contains(pw), "{out}");
    let id = str_field(&out.json(), "snapshot_id");
    let m = manifest(&env, &id);
    assert_eq!(manifest_keys(&m), sizes, "{m:#}");
    assert_eq!(m["details"]["tls"], "verified against tls_ca", "{m:#}");
    assert_eq!(m["details"]["checksum"], "verified");
    let shown = env.run(["--json", "show", &id]).assert_ok();
    assert!(!shown.combined().contains(pw));
    assert!(shown.combined().contains("rediss://"), "{shown}");
    let listed = env.run(["snapshots"]).assert_ok();
    assert!(!listed.combined().contains(pw));

    // Restore into another TLS server (its own CA); an untrusted target is refused first.
    let dst = RedisServer::start_with(RedisOptions {
        tls: true,
        ..RedisOptions::default()
    });
    run(
        &env,
        &[],
        &[
            "restore",
            &id,
            "--target",
            &dst.tls_url_untrusted(None),
            "--yes",
        ],
    )
    .assert_failure()
    .assert_mentions("tls_ca");
    assert!(dst.dbsizes().is_empty(), "nothing was restored");
    let out = run(
        &env,
        &[],
        &[
            "--json",
            "restore",
            &id,
            "--target",
            &dst.tls_url(None),
            "--yes",
        ],
    )
    .assert_ok();
    let report = out.json();
    assert_eq!(report["mismatches"], serde_json::json!([]), "{out}");
    assert_eq!(report["counts"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(dst.dbsizes(), sizes);
    assert_eq!(checksums(&dst, 0), want0);
    check_bank(&dst, 3);

    // The same server again, now holding the data, with the certificate check skipped (a
    // warning says so): --clean takes a safety backup over TLS first, then replaces the data.
    dst.exec(0, &["SET", "only-in-target", "x"]);
    let insecure = format!("{}?tls_insecure=1", dst.tls_url_untrusted(None));
    let out = run(
        &env,
        &[],
        &["restore", &id, "--target", &insecure, "--yes", "--clean"],
    )
    .assert_ok();
    assert!(out.stderr.contains("NOT checked"), "{out}");
    assert!(!out.combined().contains(pw), "{out}");
    assert_eq!(dst.dbsizes(), sizes);
    assert_eq!(checksums(&dst, 0), want0);
    let safety: Vec<Value> = env
        .snapshots(None::<&str>)
        .into_iter()
        .filter(|s| s["tags"].to_string().contains("safety"))
        .collect();
    assert_eq!(safety.len(), 1, "one safety snapshot");
    let safety_id = safety[0]["id"].as_str().unwrap();
    let sm = manifest(&env, safety_id);
    assert_eq!(
        sm["details"]["tls"], "not verified (tls_insecure)",
        "{sm:#}"
    );
    assert_eq!(
        manifest_keys(&sm)[&0],
        sizes[&0] + 1,
        "the safety backup holds the target's data"
    );
}

/// A server that requires client certificates, and plain and TLS ports mixed up.
#[test]
fn tls_client_certificates_and_wrong_ports_fail_clearly() {
    let env = crate::env_with_repo();
    let src = RedisServer::start_with(RedisOptions {
        tls: true,
        tls_auth_clients: true,
        ..RedisOptions::default()
    });
    setup_bank(&src, 0);
    let pki = src.pki.clone().unwrap();
    let tls_port = src.tls_port.unwrap();

    run(&env, &[], &["backup", &src.tls_url(None)])
        .assert_failure()
        .assert_mentions(&format!("127.0.0.1:{tls_port}"))
        .assert_mentions("tls_cert=");
    let with_cert = format!(
        "{}&tls_cert={}&tls_key={}",
        src.tls_url(None),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let id = backup(&env, &[], &with_cert);
    let m = manifest(&env, &id);
    assert_eq!(manifest_keys(&m), src.dbsizes());
    assert_eq!(m["details"]["transfer"], "diskless");
    // The disk-based transfer (`$<length>` form) over TLS too.
    let disk = backup(&env, &[], &format!("{with_cert}&sync=disk"));
    let dm = manifest(&env, &disk);
    assert_eq!(dm["details"]["transfer"], "disk", "{dm:#}");
    assert_eq!(manifest_keys(&dm), src.dbsizes());
    // Paths are not secrets: the stored location keeps them.
    let shown = env.run(["--json", "show", &id]).assert_ok();
    assert!(shown.combined().contains("tls_cert="), "{shown}");

    // A plain client on the TLS port, a TLS client on the plain port.
    run(
        &env,
        &[],
        &["backup", &format!("redis://127.0.0.1:{tls_port}")],
    )
    .assert_failure()
    .assert_mentions("rediss://");
    run(
        &env,
        &[],
        &[
            "backup",
            &format!(
                "rediss://127.0.0.1:{}?tls_ca={}",
                src.port,
                pki.ca.display()
            ),
        ],
    )
    .assert_failure()
    .assert_mentions("TLS handshake")
    .assert_mentions("--tls-port");
    assert_eq!(
        env.snapshot_ids().len(),
        2,
        "failed backups list no snapshot"
    );
}
