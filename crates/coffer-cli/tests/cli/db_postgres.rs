//! The PostgreSQL source through the `coffer` command, on one real server per test process
//! (`coffer_testkit::postgres::shared`; each test uses its own databases): the shared database
//! suite; the awkward data set restored into a database that did not exist and checked table by
//! table, an unchanged second backup adding almost nothing, and `coffer dump` loaded by psql; a
//! backup taken under a running writer; per-table restore with its indexes; --clean with its
//! safety backup and a dry run that touches nothing; a whole server with its roles; bad input.

use coffer_testkit::cli::{str_field, u64_field, CmdOutput, CofferEnv};
use coffer_testkit::db_suite::{self, DbFixture};
use coffer_testkit::postgres::{self as pg, PgFixture, PgServer};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn run(env: &CofferEnv, server: &PgServer, args: &[&str]) -> CmdOutput {
    let mut cmd = env.cmd(args);
    cmd.envs(server.env());
    env.run_cmd(cmd)
}

fn backup(env: &CofferEnv, server: &PgServer, db: &str, extra: &[&str]) -> serde_json::Value {
    let url = server.url(db);
    let mut args = vec!["--json", "backup", url.as_str()];
    args.extend_from_slice(extra);
    run(env, server, &args).assert_ok().json()
}

/// Loads the awkward data set into a fresh `db` and returns its checksums.
fn awkward(server: &PgServer, db: &str) -> std::collections::BTreeMap<String, String> {
    server.create_empty(db);
    server.psql(db, pg::AWKWARD_SQL);
    pg::checksums(server, db)
}

#[test]
fn postgres_shared_suite() {
    let env = crate::env_with_repo();
    let fx = PgFixture::new();
    db_suite::run_all(&env, &fx);
}

#[test]
fn postgres_awkward_roundtrip_dedup_and_dump() {
    let env = crate::env_with_repo();
    let server = pg::shared();
    let want = awkward(server, "awk_src");
    for k in [
        "app.orders",
        "app.measurements_2025",
        "app.order_totals",
        "app.invoice_no",
        "Weird Schema.Mixed Case/Table.name",
        "large objects",
    ] {
        assert!(want.contains_key(k), "the data set misses {k}: {want:?}");
    }
    let first = backup(&env, server, "awk_src", &["--jobs", "3"]);
    let id = str_field(&first, "snapshot_id");

    // The manifest: version, size, exact row counts, schema version.
    let snaps = env.snapshots(["--json"]);
    let snap = snaps
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("listed");
    let db = &snap["extra"]["databases"][0];
    assert_eq!(db["name"], "awk_src");
    assert!(db["size_bytes"].as_u64().unwrap() > 1_000_000);
    assert_eq!(db["schema_version"], "schema_migrations: 20240202000000");
    let rows = |name: &str| {
        db["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| {
                format!(
                    "{}.{}",
                    t["schema"].as_str().unwrap(),
                    t["name"].as_str().unwrap()
                ) == name
            })
            .map(|t| t["rows"].as_u64().unwrap())
    };
    let count = |q: &str| server.psql("awk_src", q).trim().parse::<u64>().unwrap();
    assert_eq!(
        rows("app.orders"),
        Some(count("SELECT count(*) FROM app.orders"))
    );
    assert_eq!(
        rows("app.measurements"),
        Some(count("SELECT count(*) FROM app.measurements"))
    );
    assert_eq!(rows("app.no_columns"), Some(2));
    assert!(snap["extra"]["server_version"]
        .as_str()
        .unwrap()
        .starts_with("PostgreSQL "));
    assert!(!serde_json::to_string(snap).unwrap().contains(pg::PASSWORD));

    // Restore into a database that does not exist: created, every table equal.
    server.drop_db("awk_new");
    let out = run(
        &env,
        server,
        &[
            "--json",
            "restore",
            &id,
            "--target",
            &server.url("awk_new"),
            "--yes",
        ],
    )
    .assert_ok();
    let report = out.json();
    assert!(report["mismatches"].as_array().unwrap().is_empty(), "{out}");
    assert!(report["counts"].as_array().unwrap().len() >= 13, "{out}");
    assert_eq!(
        pg::checksums(server, "awk_new"),
        want,
        "restored data differs"
    );
    // Indexes, constraints and triggers came back too.
    let idx = server.psql(
        "awk_new",
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'app' AND tablename = 'orders'",
    );
    assert_eq!(
        idx.trim(),
        "orders_customer_idx,orders_meta_idx,orders_pkey"
    );
    let trig = server.psql(
        "awk_new",
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'customers_touch'",
    );
    assert_eq!(trig.trim(), "1");
    let fk = server.try_psql(
        "awk_new",
        "INSERT INTO app.orders (customer_id, amount, placed) VALUES (999999, 1, now())",
    );
    assert!(
        fk.unwrap_err().contains("foreign key"),
        "the foreign key was not restored"
    );

    // An unchanged database adds (almost) nothing the second time.
    let second = backup(&env, server, "awk_src", &[]);
    let total = u64_field(&first, "total_bytes");
    let added = u64_field(&second, "bytes_added");
    assert!(
        added * 100 < total,
        "an unchanged backup added {added} of {total} bytes"
    );

    // coffer dump, loaded by psql into an empty database, gives the same data.
    let dump = env.path("awk.sql");
    run(
        &env,
        server,
        &["dump", &id, "--output", dump.to_str().unwrap()],
    )
    .assert_ok();
    server.create_empty("awk_dump");
    let out = server
        .tool("psql", "awk_dump")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql -f dump.sql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        pg::checksums(server, "awk_dump"),
        want,
        "the dump reproduces other data"
    );

    // A per-table dump holds that table only.
    let out = run(
        &env,
        server,
        &["dump", &id, "--table", "app.blobs", "--data-only"],
    )
    .assert_ok();
    assert!(
        out.stdout.contains("COPY \"app\".\"blobs\""),
        "{}",
        out.stdout.len()
    );
    assert!(!out.stdout.contains("COPY \"app\".\"orders\""));
}

#[test]
fn postgres_backup_under_a_running_writer() {
    let env = crate::env_with_repo();
    let fx = PgFixture::new();
    let server = fx.server();
    server.create_empty("bank_src");
    // Some bulk so the backup takes a moment while transfers commit.
    server.psql(
        "bank_src",
        "CREATE TABLE filler AS SELECT i, md5(i::text) AS h FROM generate_series(1, 200000) i;",
    );
    let writer = fx.start_writer("bank_src");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let snap = backup(&env, server, "bank_src", &["--jobs", "4"]);
    let committed = writer.stop();
    assert!(committed > 0, "the writer committed nothing");
    fx.check_consistent("bank_src");
    server.drop_db("bank_dst");
    run(
        &env,
        server,
        &[
            "restore",
            &str_field(&snap, "snapshot_id"),
            "--target",
            &server.url("bank_dst"),
            "--yes",
            "--jobs",
            "3",
        ],
    )
    .assert_ok();
    fx.check_consistent("bank_dst");
    let restored: u64 = server
        .psql("bank_dst", "SELECT count(*) FROM bank.transfers")
        .trim()
        .parse()
        .unwrap();
    assert!(
        restored <= committed,
        "{restored} transfers restored, {committed} committed"
    );
}

#[test]
fn postgres_table_restore_with_its_indexes() {
    let env = crate::env_with_repo();
    let server = pg::shared();
    let want = awkward(server, "tbl_src");
    let id = str_field(&backup(&env, server, "tbl_src", &[]), "snapshot_id");
    server.create_empty("tbl_dst");
    let out = run(
        &env,
        server,
        &[
            "--json",
            "restore",
            &id,
            "--target",
            &server.url("tbl_dst"),
            "--table",
            "app.orders",
            "--table",
            "measurements",
            "--yes",
        ],
    )
    .assert_ok();
    let report = out.json();
    let restored: Vec<&str> = report["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        restored,
        [
            "app.measurements",
            "app.measurements_2024",
            "app.measurements_2025",
            "app.orders"
        ]
    );
    assert!(
        report["warnings"]
            .to_string()
            .contains("orders_customer_id_fkey"),
        "the skipped foreign key is not reported: {out}"
    );
    let got = pg::checksums(server, "tbl_dst");
    for t in [
        "app.orders",
        "app.measurements",
        "app.measurements_2024",
        "app.orders_id_seq",
    ] {
        assert_eq!(got.get(t), want.get(t), "{t} differs");
    }
    assert!(
        !got.contains_key("app.customers"),
        "an unselected table was restored"
    );
    let idx = server.psql(
        "tbl_dst",
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'app'",
    );
    for i in [
        "orders_customer_idx",
        "orders_meta_idx",
        "orders_pkey",
        "measurements_at_idx",
        "measurements_pkey",
    ] {
        assert!(idx.contains(i), "index {i} missing: {idx}");
    }
    // Restoring it again needs --clean, which replaces just that table.
    run(
        &env,
        server,
        &[
            "restore",
            &id,
            "--target",
            &server.url("tbl_dst"),
            "--table",
            "app.orders",
            "--yes",
        ],
    )
    .assert_failure()
    .assert_mentions("--clean");
    server.psql("tbl_dst", "DELETE FROM app.orders WHERE id < 100");
    run(
        &env,
        server,
        &[
            "restore",
            &id,
            "--target",
            &server.url("tbl_dst"),
            "--table",
            "app.orders",
            "--clean",
            "--no-safety-backup",
            "--yes",
        ],
    )
    .assert_ok();
    assert_eq!(
        pg::checksums(server, "tbl_dst").get("app.orders"),
        want.get("app.orders")
    );
}

#[test]
fn postgres_clean_restore_takes_a_safety_backup_and_dry_run_touches_nothing() {
    let env = crate::env_with_repo();
    let server = pg::shared();
    let want = awkward(server, "cl_src");
    let id = str_field(&backup(&env, server, "cl_src", &[]), "snapshot_id");
    // The target holds other data, partly overlapping.
    server.create_empty("cl_dst");
    server.psql(
        "cl_dst",
        "CREATE SCHEMA app; CREATE TABLE app.orders (x int); INSERT INTO app.orders VALUES (1);
         CREATE TABLE public.keepme (y text); INSERT INTO keepme VALUES ('mine');",
    );
    let before = pg::checksums(server, "cl_dst");
    let snaps_before = env.snapshot_ids().len();

    let out = run(
        &env,
        server,
        &[
            "restore",
            &id,
            "--target",
            &server.url("cl_dst"),
            "--dry-run",
        ],
    )
    .assert_ok();
    assert!(out.combined().contains("app.orders"), "{out}");
    assert_eq!(
        pg::checksums(server, "cl_dst"),
        before,
        "the dry run changed the target"
    );
    assert_eq!(
        env.snapshot_ids().len(),
        snaps_before,
        "the dry run wrote a snapshot"
    );

    run(
        &env,
        server,
        &["restore", &id, "--target", &server.url("cl_dst"), "--yes"],
    )
    .assert_failure()
    .assert_mentions("--clean");
    assert_eq!(pg::checksums(server, "cl_dst"), before);

    let out = run(
        &env,
        server,
        &[
            "--json",
            "restore",
            &id,
            "--target",
            &server.url("cl_dst"),
            "--clean",
            "--yes",
        ],
    )
    .assert_ok();
    let safety = str_field(&out.json(), "safety_snapshot_id");
    let snaps = env.snapshots(["--json"]);
    let s = snaps
        .iter()
        .find(|s| s["id"] == safety.as_str())
        .expect("the safety snapshot is listed");
    assert!(s["tags"].to_string().contains("safety"), "{s}");
    let mut got = pg::checksums(server, "cl_dst");
    assert_eq!(
        got.remove("public.keepme"),
        before.get("public.keepme").cloned(),
        "--clean dropped a table the snapshot does not hold"
    );
    assert_eq!(got, want);

    // Schema only, then data only, gives the same database.
    server.drop_db("cl_split");
    let target = server.url("cl_split");
    run(
        &env,
        server,
        &[
            "restore",
            &id,
            "--target",
            &target,
            "--schema-only",
            "--yes",
        ],
    )
    .assert_ok();
    let empty = server.psql("cl_split", "SELECT count(*) FROM app.orders");
    assert_eq!(empty.trim(), "0", "--schema-only restored data");
    let idx = server.psql(
        "cl_split",
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_meta_idx'",
    );
    assert_eq!(idx.trim(), "1", "--schema-only left out the indexes");
    run(
        &env,
        server,
        &[
            "restore",
            &id,
            "--target",
            &target,
            "--data-only",
            "--no-safety-backup",
            "--yes",
        ],
    )
    .assert_ok();
    assert_eq!(pg::checksums(server, "cl_split"), want);

    // The safety backup restores the previous content.
    server.drop_db("cl_back");
    run(
        &env,
        server,
        &[
            "restore",
            &safety,
            "--target",
            &server.url("cl_back"),
            "--yes",
        ],
    )
    .assert_ok();
    assert_eq!(pg::checksums(server, "cl_back"), before);
}

#[test]
fn postgres_whole_server_with_roles() {
    let env = crate::env_with_repo();
    let server = PgServer::start();
    server.psql(
        "postgres",
        "CREATE ROLE coffer_app LOGIN PASSWORD 'app-pw'; CREATE DATABASE ws_app OWNER coffer_app;",
    );
    server.psql(
        "ws_app",
        "SET ROLE coffer_app; CREATE TABLE items (id int PRIMARY KEY, label text);
         INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 100) i;",
    );
    let want = pg::checksums(&server, "ws_app");
    let url = format!("postgres://{}@127.0.0.1:{}/", pg::USER, server.port());
    let snap = run(&env, &server, &["--json", "backup", &url])
        .assert_ok()
        .json();
    let id = str_field(&snap, "snapshot_id");

    server.psql("postgres", "DROP DATABASE ws_app; DROP ROLE coffer_app;");
    run(&env, &server, &["restore", &id, "--target", &url, "--yes"]).assert_ok();
    assert_eq!(pg::checksums(&server, "ws_app"), want);
    let owner = server.psql(
        "ws_app",
        "SELECT tableowner FROM pg_tables WHERE tablename = 'items'",
    );
    assert_eq!(
        owner.trim(),
        "coffer_app",
        "the role or its ownership was not restored"
    );
    // The role's password came back with it.
    let out = server
        .tool("psql", "ws_app")
        .env("PGUSER", "coffer_app")
        .env("PGPASSWORD", "app-pw")
        .args(["-X", "-At", "-c", "SELECT current_user"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "coffer_app");

    // One database of the whole-server snapshot, into another name.
    run(
        &env,
        &server,
        &[
            "restore",
            &id,
            "--database",
            "ws_app",
            "--target",
            &server.url("ws_copy"),
            "--yes",
        ],
    )
    .assert_ok();
    assert_eq!(pg::checksums(&server, "ws_copy"), want);
}

#[test]
fn postgres_bad_input_gives_clear_errors() {
    let env = crate::env_with_repo();
    let fx = PgFixture::new();
    let server = fx.server();
    server.create_empty("bad_src");
    server.psql(
        "bad_src",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1);",
    );

    let out = run(&env, server, &["backup", &fx.unreachable_url()]).assert_failure();
    assert!(out.combined().contains("cannot connect"), "{out}");
    let out = run(
        &env,
        server,
        &["backup", &fx.wrong_password_url("bad_src").unwrap()],
    )
    .assert_failure();
    assert!(out.combined().contains("password"), "{out}");
    assert!(!out.combined().contains("not-the-password"), "{out}");
    run(&env, server, &["backup", &server.url("no_such_db")])
        .assert_failure()
        .assert_mentions("does not exist");
    // No password at all.
    let mut cmd = env.cmd(["backup", &server.url("bad_src")]);
    cmd.env_remove("PGPASSWORD");
    let out = env.run_cmd(cmd).assert_failure();
    assert!(out.combined().contains("password"), "{out}");

    // pg_dump missing, then too old.
    let empty = env.path("no-pg-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = env.cmd(["backup", &server.url("bad_src")]);
    cmd.envs(server.env()).env("COFFER_PG_BINDIR", &empty);
    let out = env.run_cmd(cmd).assert_failure();
    assert!(out.combined().contains("pg_dump was not found"), "{out}");
    let old = env.path("old-pg-bin");
    std::fs::create_dir_all(&old).unwrap();
    fake_tool(&old.join("pg_dump"), "pg_dump (PostgreSQL) 12.22");
    let mut cmd = env.cmd(["backup", &server.url("bad_src")]);
    cmd.envs(server.env()).env("COFFER_PG_BINDIR", &old);
    let out = env.run_cmd(cmd).assert_failure();
    assert!(
        out.combined().contains("12.22") && out.combined().contains("older than PostgreSQL 15"),
        "{out}"
    );
    assert!(
        env.snapshot_ids().is_empty(),
        "a failed backup left a snapshot"
    );
}

fn fake_tool(path: &Path, version: &str) {
    std::fs::write(path, format!("#!/bin/sh\necho '{version}'\nexit 0\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
