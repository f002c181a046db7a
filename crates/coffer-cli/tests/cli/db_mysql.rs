//! The MySQL/MariaDB source against a real MariaDB 10.11 (one server per test process, see
//! `coffer_testkit::mariadb`): the engine driven directly on an in-memory repository (awkward
//! data round trip with per-table checksums, manifest, dedup of unchanged tables, a backup
//! under a running writer, table restore, --clean, --data-only, the whole server with users
//! and grants, the plain dump loaded by the `mariadb` client, bad input), then the `coffer`
//! command (the shared database suite, dry run, safety backup, dump, errors).

use coffer_core::memory::MemoryBackend;
use coffer_core::{ErrorKind, Id};
use coffer_sources::database::{
    self, DbManifest, DbUrl, DumpRequest, RestoreReport, RestoreRequest,
};
use coffer_testkit::cli::str_field;
use coffer_testkit::db_engine::{self, load, new_repo, reopen};
use coffer_testkit::db_suite::{self, DbFixture};
use coffer_testkit::mariadb::{
    check_transfers, checksums, MariaDbFixture, MariaDbServer, PASSWORD, USER,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// The engine on an in-memory repository.

/// The URL of `db` with the password in it (the engine tests do not rely on MYSQL_PWD).
fn url(server: &MariaDbServer, db: &str) -> DbUrl {
    DbUrl::parse(&format!(
        "mysql://{USER}:{}@127.0.0.1:{}/{db}",
        PASSWORD.replace('#', "%23"),
        server.port
    ))
    .unwrap()
}

/// Backs up `url` as `coffer backup` does: a session, the engine, a snapshot.
async fn backup(
    be: &Arc<MemoryBackend>,
    url: DbUrl,
    jobs: usize,
) -> coffer_core::Result<(Id, DbManifest)> {
    db_engine::backup(be, url, jobs, false).await
}

fn request(target: DbUrl) -> RestoreRequest {
    RestoreRequest {
        target: Some(target),
        jobs: 2,
        ..Default::default()
    }
}

async fn restore(
    be: &Arc<MemoryBackend>,
    id: Id,
    req: &RestoreRequest,
) -> coffer_core::Result<RestoreReport> {
    let (m, src) = load(be, id).await;
    database::probe_target(&m, req).await?;
    database::restore(&src, &m, req).await
}

async fn dump(be: &Arc<MemoryBackend>, id: Id, req: &DumpRequest) -> Vec<u8> {
    let (m, src) = load(be, id).await;
    let mut out = Vec::new();
    database::dump(&src, &m, req, &mut out).await.unwrap();
    out
}

fn assert_counts_match(report: &RestoreReport) {
    assert!(!report.counts.is_empty(), "no counts were compared");
    assert!(
        report.mismatches().is_empty(),
        "row counts differ: {:?}",
        report.mismatches()
    );
}

/// Loads `sql` into `db` with the `mariadb` client, as a user would load `coffer dump`.
fn load_with_client(server: &MariaDbServer, db: Option<&str>, sql: &[u8]) {
    let mut cmd = Command::new("mariadb");
    cmd.arg("--no-defaults")
        .arg(format!("--socket={}", server.socket().display()))
        .arg("-uroot");
    if let Some(db) = db {
        cmd.arg(db);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(sql).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the mariadb client refused the dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A database name unique to one test.
fn fresh(fx: &MariaDbFixture, name: &str) -> String {
    fx.create_empty(name);
    name.to_string()
}

fn sha_of(m: &DbManifest, path: &str) -> String {
    m.streams
        .iter()
        .find(|s| s.path == path)
        .unwrap_or_else(|| panic!("no stream {path} in {:?}", m.streams))
        .sha256
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_awkward_roundtrip_manifest_dedup_and_dump() {
    let fx = MariaDbFixture::new();
    let server = fx.server();
    let src = fresh(&fx, "eng_src");
    fx.load_awkward(&src);
    let want = checksums(server, &src);
    assert!(want.len() > 10, "{want:?}");
    let be = new_repo().await;
    let (id, m) = backup(&be, url(server, &src), 2).await.unwrap();

    // The manifest: server version, exact row counts, size, schema version, streams.
    assert_eq!(m.engine, "mysql");
    assert!(m.server_version.contains("MariaDB"), "{}", m.server_version);
    assert!(!m.whole_server);
    let db = &m.databases[0];
    assert_eq!(db.name, src);
    assert!(db.size_bytes > 0);
    assert_eq!(
        db.schema_version.as_deref(),
        Some("schema_migrations: 20250601120000")
    );
    for t in &db.tables {
        let n = server.strings(
            &src,
            &format!("SELECT COUNT(*) FROM `{}`", t.name.replace('`', "``")),
        );
        assert_eq!(t.rows.to_string(), n[0], "rows of {}", t.name);
        assert!(t.stream.is_some());
    }
    let names: Vec<&str> = db.tables.iter().map(|t| t.name.as_str()).collect();
    for t in [
        "bin_data",
        "texts",
        "child",
        "parent",
        "odd name ü/x",
        "empty_table",
        "no_pk",
    ] {
        assert!(names.contains(&t), "{t} missing from {names:?}");
    }
    for not_table in ["parent_names", "seq"] {
        assert!(!names.contains(&not_table), "{not_table} listed as a table");
    }
    assert_eq!(m.details["databases"][&src]["triggers"], 1, "{}", m.details);
    assert_eq!(m.details["databases"][&src]["events"], 1, "{}", m.details);
    let text = serde_json::to_string(&m).unwrap();
    assert!(!text.contains(PASSWORD), "the manifest holds the password");

    // Restore into a fresh database: every table, view, routine, trigger and event equal;
    // the trigger did not fire again while the data loaded (audit is equal too).
    let dst = fresh(&fx, "eng_dst");
    let report = restore(&be, id, &request(url(server, &dst))).await.unwrap();
    assert_counts_match(&report);
    assert_eq!(report.counts.len(), db.tables.len());
    assert_eq!(checksums(server, &dst), want);

    // A database that does not exist is created.
    server.exec("", "DROP DATABASE IF EXISTS eng_created");
    let report = restore(&be, id, &request(url(server, "eng_created")))
        .await
        .unwrap();
    assert_counts_match(&report);
    assert_eq!(checksums(server, "eng_created"), want);

    // The plain dump, loaded by the mariadb client, gives the same database.
    let sql = dump(&be, id, &DumpRequest::default()).await;
    let from_dump = fresh(&fx, "eng_from_dump");
    load_with_client(server, Some(&from_dump), &sql);
    assert_eq!(checksums(server, &from_dump), want);

    // An unchanged database stores the same streams; a change touches one table's stream.
    let (_, again) = backup(&be, url(server, &src), 1).await.unwrap();
    let sorted = |m: &DbManifest| {
        let mut s = m.streams.clone();
        s.sort_by(|a, b| a.path.cmp(&b.path));
        s
    };
    assert_eq!(
        sorted(&again),
        sorted(&m),
        "an unchanged database changed streams"
    );
    let changed = fx.change_one(&src);
    let (_, after) = backup(&be, url(server, &src), 2).await.unwrap();
    let differ: Vec<&str> = after
        .streams
        .iter()
        .filter(|s| sha_of(&m, &s.path) != s.sha256)
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        differ,
        vec![format!("databases/{src}/data/{changed}.sql").as_str()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_backup_under_a_running_writer_is_consistent() {
    let fx = MariaDbFixture::new();
    let server = fx.server();
    let src = fresh(&fx, "eng_live");
    fx.load_awkward(&src);
    let be = new_repo().await;
    let mut total = 0;
    for jobs in [1, 3] {
        let writer = fx.start_writer(&src);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let (id, m) = backup(&be, url(server, &src), jobs).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let committed = writer.stop();
        assert!(committed > 0, "the writer committed nothing");
        total += committed;
        let transfers = m.databases[0]
            .tables
            .iter()
            .find(|t| t.name == "transfers")
            .unwrap()
            .rows;
        assert!(
            transfers > 0 && transfers <= total,
            "transfers {transfers}, committed {total}"
        );
        assert!(
            m.details["snapshot"]
                .as_str()
                .unwrap()
                .contains(if jobs == 1 {
                    "one connection"
                } else {
                    "3 connections"
                }),
            "{}",
            m.details
        );
        let dst = fresh(&fx, &format!("eng_live_copy{jobs}"));
        let report = restore(&be, id, &request(url(server, &dst))).await.unwrap();
        assert_counts_match(&report);
        check_transfers(server, &dst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_table_restore_clean_and_data_only() {
    let fx = MariaDbFixture::new();
    let server = fx.server();
    let src = fresh(&fx, "eng_tables");
    fx.load_awkward(&src);
    let want = checksums(server, &src);
    let be = new_repo().await;
    let (id, _) = backup(&be, url(server, &src), 2).await.unwrap();

    // Two tables into a fresh database: only they, equal; the trigger of parent comes along.
    let one = fresh(&fx, "eng_one");
    let mut req = request(url(server, &one));
    req.tables = vec!["parent".into(), "texts".into()];
    let report = restore(&be, id, &req).await.unwrap();
    assert_counts_match(&report);
    let got = checksums(server, &one);
    assert_eq!(got.get("parent"), want.get("parent"));
    assert_eq!(got.get("texts"), want.get("texts"));
    assert!(!got.contains_key("child"), "{got:?}");
    let triggers = server.strings(
        &one,
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='eng_one'",
    );
    assert_eq!(triggers, vec!["parent_audit"]);

    // Over existing tables: refused without --clean, nothing changed.
    server.exec(&one, "DELETE FROM texts WHERE id = 1");
    let before = checksums(server, &one);
    let (m, stream_src) = load(&be, id).await;
    let state = database::probe_target(&m, &req).await.unwrap();
    assert!(state.exists && !state.empty);
    assert_eq!(state.conflicts, vec!["parent", "texts"]);
    let err = database::restore(&stream_src, &m, &req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("--clean"), "{err}");
    assert_eq!(checksums(server, &one), before);

    // With --clean: replaced.
    req.clean = true;
    let report = restore(&be, id, &req).await.unwrap();
    assert_counts_match(&report);
    assert_eq!(checksums(server, &one).get("texts"), want.get("texts"));

    // --data-only --clean empties the tables and reloads them, schema untouched.
    server.exec(&one, "INSERT INTO texts (s) VALUES ('extra')");
    let mut data = req.clone();
    data.data_only = true;
    data.tables = vec!["texts".into()];
    let report = restore(&be, id, &data).await.unwrap();
    assert_counts_match(&report);
    assert_eq!(checksums(server, &one).get("texts"), want.get("texts"));

    // --schema-only: empty tables.
    let shape = fresh(&fx, "eng_shape");
    let mut schema = request(url(server, &shape));
    schema.schema_only = true;
    let report = restore(&be, id, &schema).await.unwrap();
    assert!(report.counts.is_empty());
    assert_eq!(
        server.strings(&shape, "SELECT COUNT(*) FROM texts"),
        vec!["0"]
    );

    // An unknown table names the tables there are.
    let mut bad = request(url(server, &one));
    bad.tables = vec!["nope".into()];
    let err = restore(&be, id, &bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.to_string().contains("nope") && err.to_string().contains("parent"),
        "{err}"
    );

    // The dump of one table holds only it, loadable.
    let sql = dump(
        &be,
        id,
        &DumpRequest {
            tables: vec!["child".into()],
            ..Default::default()
        },
    )
    .await;
    let text = String::from_utf8_lossy(&sql);
    assert!(text.contains("CREATE TABLE `child`"), "{text}");
    assert!(!text.contains("CREATE TABLE `texts`"));
    let d = fresh(&fx, "eng_child_dump");
    load_with_client(server, Some(&d), &sql);
    assert_eq!(checksums(server, &d).get("child"), want.get("child"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_whole_server_with_users_and_grants() {
    // A server of its own: other tests create and drop databases on the shared one.
    let own = MariaDbServer::start();
    let server = &own;
    let (a, b) = ("ws_a".to_string(), "ws_b".to_string());
    server.exec("", "CREATE DATABASE ws_a;\nCREATE DATABASE ws_b");
    coffer_testkit::mariadb::load_awkward(server, &a);
    server.exec(
        &b,
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10));
         INSERT INTO t VALUES (1, 'x'), (2, 'y');
         CREATE USER IF NOT EXISTS 'ws_reader'@'%' IDENTIFIED BY 'reader-pw';
         GRANT SELECT ON ws_b.* TO 'ws_reader'@'%';
         GRANT INSERT ON ws_b.t TO 'ws_reader'@'%'",
    );
    let want_a = checksums(server, &a);
    let want_b = checksums(server, &b);
    let be = new_repo().await;
    let (id, m) = backup(&be, url(server, ""), 2).await.unwrap();
    assert!(m.whole_server);
    let names: Vec<&str> = m.databases.iter().map(|d| d.name.as_str()).collect();
    assert!(
        names.contains(&"ws_a") && names.contains(&"ws_b"),
        "{names:?}"
    );
    assert!(!names.contains(&"mysql"), "{names:?}");
    assert!(m.streams.iter().any(|s| s.path == "server/users.sql"));

    // Into a second, empty server: every database, users and grants.
    let other = MariaDbServer::start();
    let report = restore(&be, id, &request(url(&other, ""))).await.unwrap();
    assert_counts_match(&report);
    assert!(
        report.restored.iter().any(|r| r == "users and grants"),
        "{report:?}"
    );
    assert_eq!(checksums(&other, &a), want_a);
    assert_eq!(checksums(&other, &b), want_b);
    let grants = other.strings("", "SHOW GRANTS FOR 'ws_reader'@'%'");
    assert!(
        grants.iter().any(|g| g.contains("SELECT ON `ws_b`.*"))
            && grants.iter().any(|g| g.contains("INSERT ON `ws_b`.`t`")),
        "{grants:?}"
    );

    // One database of it, under another name.
    let one = "ws_b_copy";
    server.exec("", "CREATE DATABASE ws_b_copy");
    let mut req = request(url(server, one));
    req.database = Some("ws_b".into());
    restore(&be, id, &req).await.unwrap();
    assert_eq!(checksums(server, one), want_b);
    // Without --database a target database is ambiguous.
    let err = restore(&be, id, &request(url(server, one)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--database"), "{err}");

    // The whole-server dump loads by itself into a server without those databases and users.
    let sql = dump(&be, id, &DumpRequest::default()).await;
    other.root_sql("DROP DATABASE ws_a; DROP DATABASE ws_b; DROP USER 'ws_reader'@'%'");
    load_with_client(&other, None, &sql);
    assert_eq!(checksums(&other, &a), want_a);
    assert_eq!(checksums(&other, &b), want_b);
    assert!(!other
        .strings("", "SHOW GRANTS FOR 'ws_reader'@'%'")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_bad_sources_give_clear_errors() {
    let fx = MariaDbFixture::new();
    let server = fx.server();
    let be = new_repo().await;

    let closed = DbUrl::parse(&fx.unreachable_url()).unwrap();
    let err = backup(&be, closed, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.to_string().contains("cannot connect"), "{err}");

    let wrong = DbUrl::parse(&fx.wrong_password_url("mysql").unwrap()).unwrap();
    let err = backup(&be, wrong, 1).await.unwrap_err();
    assert!(err.to_string().contains("access denied"), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");

    let err = backup(&be, url(server, "no_such_db"), 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("no_such_db"), "{err}");

    let listed = reopen(&be).await.list_snapshots().await.unwrap();
    assert!(listed.is_empty(), "a failed backup listed a snapshot");
}

// ---------------------------------------------------------------------------------------------
// The `coffer` command.

#[test]
fn mysql_shared_suite() {
    let env = crate::env_with_repo();
    let fx = MariaDbFixture::new();
    db_suite::run_all(&env, &fx);
}

#[test]
fn mysql_cli_password_file_dump_and_errors() {
    let env = crate::env_with_repo();
    let fx = MariaDbFixture::new();
    let server = fx.server();
    let src = fresh(&fx, "cli_src");
    fx.load_awkward(&src);
    let want = checksums(server, &src);

    // The password from a file (no MYSQL_PWD, none in the URL).
    let pw = env.write_password_file("db-pw", PASSWORD);
    let out = env
        .run([
            "--json",
            "backup",
            &fx.url(&src),
            "--db-password-file",
            pw.to_str().unwrap(),
        ])
        .assert_ok();
    let id = str_field(&out.json(), "snapshot_id");
    assert!(!out.combined().contains(PASSWORD));

    // `coffer dump` is plain SQL the mariadb client loads.
    let dumped = env.cmd(["dump", id.as_str()]).output().unwrap();
    assert!(
        dumped.status.success(),
        "{}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    let d = fresh(&fx, "cli_from_dump");
    load_with_client(server, Some(&d), &dumped.stdout);
    assert_eq!(checksums(server, &d), want);

    // --table through the CLI, then --clean over it.
    let t = fresh(&fx, "cli_table");
    db_suite::coffer(
        &env,
        &fx,
        &[
            "restore",
            &id,
            "--target",
            &fx.url(&t),
            "--table",
            "child",
            "--table",
            "parent",
            "--yes",
        ],
    )
    .assert_ok();
    let got: BTreeMap<_, _> = checksums(server, &t)
        .into_iter()
        .filter(|(k, _)| k != "(objects)")
        .collect();
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        vec!["child", "parent"]
    );
    assert_eq!(got.get("child"), want.get("child"));
    db_suite::coffer(
        &env,
        &fx,
        &[
            "restore",
            &id,
            "--target",
            &fx.url(&t),
            "--table",
            "child",
            "--yes",
        ],
    )
    .assert_failure()
    .assert_mentions("--clean");
    db_suite::coffer(
        &env,
        &fx,
        &[
            "restore",
            &id,
            "--target",
            &fx.url(&t),
            "--table",
            "child",
            "--clean",
            "--yes",
        ],
    )
    .assert_ok();

    // A missing database, a wrong password: clear errors, no snapshot.
    let n = env.snapshot_ids().len();
    let out = db_suite::coffer(&env, &fx, &["backup", &fx.url("cli_missing_db")]).assert_failure();
    assert!(out.combined().contains("cli_missing_db"), "{out}");
    let out = db_suite::coffer(
        &env,
        &fx,
        &["backup", &fx.wrong_password_url(&src).unwrap()],
    )
    .assert_failure();
    assert!(out.combined().contains("access denied"), "{out}");
    assert_eq!(env.snapshot_ids().len(), n);
}
