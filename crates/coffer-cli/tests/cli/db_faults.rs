//! Databases when things break, against real servers and real full disks (a small tmpfs, as in
//! `disk_full.rs`): the repository's disk filling during `coffer backup URL` (PostgreSQL,
//! MySQL, SQLite, Redis), a restore target whose disk fills (a SQLite file, a PostgreSQL tablespace),
//! and a table dropped while a backup runs (PostgreSQL makes the DROP wait; MySQL fails naming
//! the table). Races are made deterministic with the hidden `COFFER_TEST_DB_PAUSE_AT` hook of
//! the engines' backups.

use super::s;
use coffer_testkit::cli::{str_field, CmdOutput, CofferEnv};
use coffer_testkit::db_suite::DbFixture;
use coffer_testkit::mariadb::{self as mdb, MariaDbFixture, MariaDbServer};
use coffer_testkit::postgres::{self as pg, PgServer};
use coffer_testkit::redis_server::RedisServer;
use coffer_testkit::small_disk::SmallDisk;
use coffer_testkit::sqlite_fixture::{self, rusqlite};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// `coffer ARGS` with extra environment variables (database passwords, test hooks).
fn run_with(env: &CofferEnv, vars: &[(String, String)], args: &[&str]) -> CmdOutput {
    let mut cmd = env.cmd(args);
    cmd.envs(vars.iter().map(|(k, v)| (k, v)));
    env.run_cmd(cmd)
}

/// The snapshots the repository lists.
fn snapshot_count(env: &CofferEnv) -> usize {
    env.snapshots(["--json"]).len()
}

/// Asserts `out` failed with exactly one `coffer: error` line.
#[track_caller]
fn assert_one_error(out: &CmdOutput) {
    // Shown with --nocapture: the messages a user would read.
    println!("{}", out.stderr);
    assert_ne!(out.code(), 0, "the command should fail\n{out}");
    let errors = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("coffer: error"))
        .count();
    assert_eq!(errors, 1, "one clear error line\n{out}");
}

// ---------------------------------------------------------------------------------------------
// The repository's disk fills during a database backup.

/// Backs up `url` into a repository on a 6 MiB tmpfs (the database holds about 20 MiB that do
/// not compress): the backup fails saying the repository's disk is full, naming the path, and
/// lists nothing; once there is room, `check` passes and the next backup works.
fn full_repository_during_backup(url: &str, vars: &[(String, String)]) {
    let env = crate::env();
    let disk = SmallDisk::mount(env.repo(), "6m");
    env.init();
    let out = run_with(&env, vars, &["backup", url]);
    assert_one_error(&out);
    assert_eq!(out.code(), 1, "{out}");
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("no space left"),
        "the error says the disk is full\n{out}"
    );
    assert!(
        out.stderr.contains(s(env.repo())),
        "the error names the repository's path {}\n{out}",
        env.repo().display()
    );
    assert!(
        out.stderr.contains("the repository's disk is full"),
        "the error says it is the repository's disk\n{out}"
    );
    assert!(
        out.stderr.contains("no snapshot was written"),
        "the error says no snapshot was written\n{out}"
    );
    assert!(
        !out.stderr.contains(pg::PASSWORD),
        "no password in the output\n{out}"
    );

    disk.grow("200m");
    assert_eq!(snapshot_count(&env), 0, "no partial snapshot is listed");
    env.run(["check"]).assert_ok();
    let out = run_with(&env, vars, &["--json", "backup", url]).assert_ok();
    let id = str_field(&out.json(), "snapshot_id");
    let ids = env.snapshot_ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(
        id.starts_with(&ids[0]) || ids[0].starts_with(&id),
        "{id} {ids:?}"
    );
    env.run(["check", "--read-data"]).assert_ok();
}

#[test]
fn postgres_backup_onto_a_full_repository_disk_lists_nothing() {
    let server = pg::shared();
    let db = "fault_full_repo";
    server.create_empty(db);
    // 20 MiB of random bytes (bytea does not compress; COPY writes it as hex).
    server.psql(
        db,
        "CREATE TABLE small (id int PRIMARY KEY, v text);
         INSERT INTO small SELECT i, 'row ' || i FROM generate_series(1, 100) i;
         CREATE TABLE big (id int PRIMARY KEY, data bytea);
         INSERT INTO big SELECT i, (SELECT decode(string_agg(md5(random()::text || i || j), ''), 'hex')
                                    FROM generate_series(1, 256) j)
           FROM generate_series(1, 5000) i;",
    );
    full_repository_during_backup(&server.url(db), &server.env());
    server.drop_db(db);
}

#[test]
fn mysql_backup_onto_a_full_repository_disk_lists_nothing() {
    let fx = MariaDbFixture::new();
    let db = "fault_full_repo";
    fx.create_empty(db);
    fx.server().exec(
        db,
        "CREATE TABLE small (id INT PRIMARY KEY, v TEXT);
         INSERT INTO small SELECT seq, CONCAT('row ', seq) FROM seq_1_to_100;
         CREATE TABLE big (id INT PRIMARY KEY, data BLOB);
         INSERT INTO big SELECT seq, CONCAT(RANDOM_BYTES(1024), RANDOM_BYTES(1024)) FROM seq_1_to_10000;",
    );
    full_repository_during_backup(&fx.url(db), &fx.env());
}

/// A SQLite file of about 20 MiB of random bytes (and a small table).
fn random_sqlite(path: &Path) {
    let c = sqlite_fixture::open(path);
    c.execute_batch(
        "CREATE TABLE small (id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO small (v) VALUES ('a'), ('b'), ('c');
         CREATE TABLE big (id INTEGER PRIMARY KEY, data BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
           INSERT INTO big SELECT i, randomblob(4096) FROM n;",
    )
    .unwrap();
}

#[test]
fn sqlite_backup_onto_a_full_repository_disk_lists_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.db");
    random_sqlite(&file);
    full_repository_during_backup(&format!("sqlite://{}", file.display()), &[]);
}

#[test]
fn redis_backup_onto_a_full_repository_disk_lists_nothing() {
    let server = RedisServer::start();
    // 2000 keys of 20 KB of random hex text (about 20 MiB once compressed).
    server.exec(
        0,
        &[
            "EVAL",
            "for i = 1, 2000 do local t = {} for j = 1, 2500 do t[j] = string.format('%08x', math.random(0, 2147483647)) end redis.call('SET', 'k' .. i, table.concat(t)) end return 1",
            "0",
        ],
    );
    full_repository_during_backup(&server.url(Some(0)), &[]);
}

// ---------------------------------------------------------------------------------------------
// The restore target's disk fills.

/// Every file name in `dir`.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The short id of the safety backup the restore's output announces.
fn safety_id(env: &CofferEnv) -> String {
    let snaps: Vec<_> = env
        .snapshots(None::<&str>)
        .into_iter()
        .filter(|s| {
            s["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "safety"))
        })
        .collect();
    assert_eq!(snaps.len(), 1, "one safety backup: {snaps:?}");
    str_field(&snaps[0], "id")[..8].to_string()
}

#[test]
fn sqlite_restore_onto_a_full_disk_leaves_the_target_untouched() {
    let env = crate::env_with_repo();
    let src = env.path("big.db");
    random_sqlite(&src);
    let backup = env.backup([format!("sqlite://{}", src.display())]);
    let id = str_field(&backup, "snapshot_id");

    // The target: a small database on a disk with room for it, not for the snapshot's 20 MiB.
    let disk = SmallDisk::mount(&env.path("small"), "8m");
    let target = disk.path().join("app.db");
    {
        let c = sqlite_fixture::open(&target);
        c.execute_batch(
            "PRAGMA journal_mode = DELETE;
             CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
             INSERT INTO notes (body) VALUES ('keep me'), ('and me');",
        )
        .unwrap();
    }
    let before = std::fs::read(&target).unwrap();
    let files_before = names_in(disk.path());

    let out = env.run([
        "restore",
        &id,
        "--target",
        &format!("sqlite://{}", target.display()),
        "--clean",
        "--yes",
    ]);
    assert_one_error(&out);
    let safety = safety_id(&env);
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("no space left"),
        "the error says the disk is full\n{out}"
    );
    assert!(
        out.stderr.contains("the target was not changed"),
        "the error says the target was left as it was\n{out}"
    );
    assert!(
        !out.stderr.contains("partly restored"),
        "the error does not claim a partial restore that did not happen\n{out}"
    );
    assert!(
        out.stderr.contains(&format!("safety backup {safety}")),
        "the error gives the safety backup's id {safety}\n{out}"
    );
    assert_eq!(
        std::fs::read(&target).unwrap(),
        before,
        "the target file is unchanged"
    );
    assert_eq!(
        names_in(disk.path()),
        files_before,
        "no temporary file is left on the full disk"
    );
    let c = rusqlite::Connection::open(&target).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);

    // With room, the same restore works.
    disk.grow("100m");
    env.run([
        "restore",
        &id,
        "--target",
        &format!("sqlite://{}", target.display()),
        "--clean",
        "--yes",
    ])
    .assert_ok();
    let c = rusqlite::Connection::open(&target).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM big", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 5000);
}

/// The uid of the PostgreSQL server (the owner of its data directory).
fn pg_owner(server: &PgServer) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let data = server.psql("postgres", "SHOW data_directory");
    std::fs::metadata(data.trim()).unwrap().uid()
}

#[test]
fn postgres_restore_into_a_full_tablespace_says_what_is_left_and_the_safety_backup() {
    // A server of its own: the tablespace must not show up in other tests' whole-server backups.
    let server = PgServer::start();
    let env = crate::env_with_repo();
    let db = "src";
    server.create_empty(db);
    server.psql(
        db,
        "CREATE TABLE small (id int PRIMARY KEY, v text);
         INSERT INTO small SELECT i, 'row ' || i FROM generate_series(1, 100) i;
         CREATE TABLE big (id int PRIMARY KEY, data bytea);
         INSERT INTO big SELECT i, (SELECT decode(string_agg(md5(random()::text || i || j), ''), 'hex')
                                    FROM generate_series(1, 256) j)
           FROM generate_series(1, 5000) i;",
    );
    let out = run_with(&env, &server.env(), &["--json", "backup", &server.url(db)]).assert_ok();
    let id = str_field(&out.json(), "snapshot_id");

    // The target database lives in a tablespace on a 24 MiB disk: its template copy fits, the
    // snapshot's 20 MiB table does not.
    let disk = SmallDisk::mount(&env.path("ts"), "24m");
    let uid = pg_owner(&server);
    std::os::unix::fs::chown(disk.path(), Some(uid), None).unwrap();
    server.psql(
        "postgres",
        &format!(
            "CREATE TABLESPACE small LOCATION '{}'",
            disk.path().display()
        ),
    );
    server.psql("postgres", "CREATE DATABASE tgt TABLESPACE small");
    server.psql(
        "tgt",
        "CREATE TABLE notes (id int PRIMARY KEY, body text);
         INSERT INTO notes VALUES (1, 'keep me'), (2, 'and me');",
    );

    let out = run_with(
        &env,
        &server.env(),
        &[
            "restore",
            &id,
            "--target",
            &server.url("tgt"),
            "--clean",
            "--yes",
        ],
    );
    assert_one_error(&out);
    let safety = safety_id(&env);
    assert!(
        out.stderr.to_lowercase().contains("no space left"),
        "the error gives the server's cause (no space left)\n{out}"
    );
    assert!(
        out.stderr.contains("partly restored"),
        "the error says the target is partly restored\n{out}"
    );
    assert!(
        out.stderr.contains("table public.big"),
        "the error names the table that failed\n{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("coffer restore {safety} --target")),
        "the error gives the safety backup's id {safety} and how to put it back\n{out}"
    );
    assert!(!out.stderr.contains(pg::PASSWORD), "{out}");

    // The safety backup holds the target as it was: put it back (into a database outside the
    // full tablespace) and look.
    let out = run_with(
        &env,
        &server.env(),
        &["restore", &safety, "--target", &server.url("back"), "--yes"],
    )
    .assert_ok();
    assert_eq!(
        server
            .psql(
                "back",
                "SELECT string_agg(body, ',' ORDER BY id) FROM notes"
            )
            .trim(),
        "keep me,and me",
        "{out}"
    );
    server.psql("postgres", "DROP DATABASE tgt WITH (FORCE)");
    server.psql("postgres", "DROP TABLESPACE small");
}

#[test]
fn mysql_restore_onto_a_full_disk_says_what_is_left_and_the_safety_backup() {
    // A server of its own: one of its databases lives on a small disk.
    let server = MariaDbServer::start();
    let vars = vec![("MYSQL_PWD".to_string(), mdb::PASSWORD.to_string())];
    let env = crate::env_with_repo();
    server.exec("", "CREATE DATABASE src");
    server.exec(
        "src",
        "CREATE TABLE small (id INT PRIMARY KEY, v TEXT);
         INSERT INTO small SELECT seq, CONCAT('row ', seq) FROM seq_1_to_100;
         CREATE TABLE big (id INT PRIMARY KEY, data BLOB);
         INSERT INTO big SELECT seq, CONCAT(RANDOM_BYTES(1024), RANDOM_BYTES(1024)) FROM seq_1_to_10000;",
    );
    let out = run_with(&env, &vars, &["--json", "backup", &server.url("src")]).assert_ok();
    let id = str_field(&out.json(), "snapshot_id");

    // Database `tgt` is a folder of the data directory: a 6 MiB disk mounted there.
    let datadir = PathBuf::from(server.strings("", "SELECT @@datadir")[0].clone());
    let disk = SmallDisk::mount(&datadir.join("tgt"), "6m");
    server.exec(
        "tgt",
        "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT);
         INSERT INTO notes VALUES (1, 'keep me'), (2, 'and me');",
    );
    let out = run_with(
        &env,
        &vars,
        &[
            "restore",
            &id,
            "--target",
            &server.url("tgt"),
            "--clean",
            "--yes",
        ],
    );
    assert_one_error(&out);
    let safety = safety_id(&env);
    assert!(
        out.stderr.contains("tgt.big"),
        "the error names the table that failed\n{out}"
    );
    assert!(
        out.stderr.contains("The table 'big' is full")
            && out.stderr.contains("the server's disk is full"),
        "the error gives the server's cause\n{out}"
    );
    assert!(
        out.stderr.len() < 2000,
        "the error quotes the client's error, not the failed statement's data\n{out}"
    );
    assert!(
        out.stderr.contains("partly restored"),
        "the error says the target is partly restored\n{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("coffer restore {safety} --target")),
        "the error gives the safety backup's id {safety} and how to put it back\n{out}"
    );
    assert!(!out.stderr.contains(mdb::PASSWORD), "{out}");

    // The safety backup holds the target as it was.
    run_with(
        &env,
        &vars,
        &["restore", &safety, "--target", &server.url("back"), "--yes"],
    )
    .assert_ok();
    assert_eq!(
        server.strings("back", "SELECT GROUP_CONCAT(body ORDER BY id) FROM notes"),
        vec!["keep me,and me".to_string()]
    );
    drop(disk);
}

// ---------------------------------------------------------------------------------------------
// A table dropped while the backup runs.

/// A backup started in the background that pauses at `stage` (the engines' test hook).
struct PausedBackup {
    child: Option<Child>,
    dir: tempfile::TempDir,
    stage: String,
}

impl PausedBackup {
    /// Starts `coffer --json backup URL` and waits until it reaches `stage`.
    fn start(env: &CofferEnv, vars: &[(String, String)], url: &str, stage: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = env.cmd(["--json", "backup", url, "--jobs", "2"]);
        cmd.envs(vars.iter().map(|(k, v)| (k, v)))
            .env("COFFER_TEST_DB_PAUSE_AT", stage)
            .env("COFFER_TEST_DB_PAUSE_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let reached = dir.path().join(format!("{stage}.reached"));
        let start = Instant::now();
        while !reached.exists() {
            if let Some(st) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the backup ended ({st}) before reaching {stage}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the backup did not reach {stage} in a minute"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PausedBackup {
            child: Some(child),
            dir,
            stage: stage.to_string(),
        }
    }

    /// Lets it go on and waits for it to end.
    fn finish(mut self) -> CmdOutput {
        std::fs::write(self.dir.path().join(format!("{}.go", self.stage)), b"").unwrap();
        let child = self.child.take().expect("finished once");
        coffer_testkit::cli::collect_child(child, "coffer backup", Duration::from_secs(120))
    }
}

impl Drop for PausedBackup {
    /// A test that failed before [`PausedBackup::finish`] leaves no paused backup behind.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A database with a few tables, one of them `victim`.
fn pg_tables(server: &PgServer, db: &str) {
    server.create_empty(db);
    server.psql(
        db,
        "CREATE TABLE keeper (id int PRIMARY KEY, v text);
         INSERT INTO keeper SELECT i, 'k' || i FROM generate_series(1, 1000) i;
         CREATE TABLE victim (id int PRIMARY KEY, v text);
         INSERT INTO victim SELECT i, 'v' || i FROM generate_series(1, 2500) i;",
    );
}

#[test]
fn postgres_drop_table_during_backup_waits_and_the_snapshot_is_complete() {
    let server = pg::shared();
    let env = crate::env_with_repo();
    let db = "fault_drop_wait";
    pg_tables(server, db);
    let paused = PausedBackup::start(
        &env,
        &server.env(),
        &server.url(db),
        "postgres-tables-locked",
    );
    // The backup holds ACCESS SHARE on every table: the DROP cannot get its lock.
    let clock = Instant::now();
    let dropped = server.try_psql(db, "SET lock_timeout = '700ms'; DROP TABLE victim;");
    let err = dropped.expect_err("DROP TABLE must wait for the backup");
    assert!(err.contains("lock timeout"), "{err}");
    assert!(clock.elapsed() >= Duration::from_millis(600));
    let out = paused.finish().assert_ok();
    let id = str_field(&out.json(), "snapshot_id");

    // The snapshot is complete: the restore has the table and all its rows.
    server.drop_db("fault_drop_wait_back");
    let out = run_with(
        &env,
        &server.env(),
        &[
            "--json",
            "restore",
            &id,
            "--target",
            &server.url("fault_drop_wait_back"),
            "--yes",
        ],
    )
    .assert_ok();
    assert!(
        out.json()["mismatches"].as_array().unwrap().is_empty(),
        "{out}"
    );
    assert_eq!(
        server
            .psql("fault_drop_wait_back", "SELECT count(*) FROM victim")
            .trim(),
        "2500"
    );
    // And now the DROP goes through.
    server.psql(db, "DROP TABLE victim");
    server.drop_db(db);
    server.drop_db("fault_drop_wait_back");
}

#[test]
fn postgres_drop_table_queued_during_backup_fails_it_naming_the_table() {
    let server = pg::shared();
    let env = crate::env_with_repo();
    let db = "fault_drop_queued";
    pg_tables(server, db);
    let paused = PausedBackup::start(
        &env,
        &server.env(),
        &server.url(db),
        "postgres-tables-locked",
    );
    // A DROP without a lock timeout queues behind the backup's lock.
    let dropper = {
        let db = db.to_string();
        std::thread::spawn(move || pg::shared().try_psql(&db, "DROP TABLE victim;"))
    };
    let start = Instant::now();
    loop {
        let waiting = server.psql(
            db,
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND mode = 'AccessExclusiveLock'",
        );
        if waiting.trim() != "0" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the DROP never queued"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = paused.finish();
    assert_one_error(&out);
    assert!(
        out.stderr.contains("victim"),
        "the error names the table\n{out}"
    );
    assert!(
        out.stderr.contains("exclusive lock"),
        "the error says why (a waiting exclusive lock)\n{out}"
    );
    assert!(out.stderr.contains("no snapshot was written"), "{out}");
    dropper
        .join()
        .unwrap()
        .expect("the DROP goes through once the backup has stopped");
    assert_eq!(snapshot_count(&env), 0, "no partial snapshot is listed");
    env.run(["check"]).assert_ok();
    server.drop_db(db);
}

/// MySQL: a table dropped at `stage` fails the backup with an error naming it; nothing is listed
/// and the repository passes its check.
fn mysql_drop_at(db: &str, stage: &str, expect: &str) {
    let fx = MariaDbFixture::new();
    let env = crate::env_with_repo();
    fx.create_empty(db);
    fx.server().exec(
        db,
        "CREATE TABLE keeper (id INT PRIMARY KEY, v TEXT);
         INSERT INTO keeper SELECT seq, CONCAT('k', seq) FROM seq_1_to_1000;
         CREATE TABLE victim (id INT PRIMARY KEY, v TEXT);
         INSERT INTO victim SELECT seq, CONCAT('v', seq) FROM seq_1_to_2500;",
    );
    let paused = PausedBackup::start(&env, &fx.env(), &fx.url(db), stage);
    fx.server().exec(db, "DROP TABLE victim");
    let out = paused.finish();
    assert_one_error(&out);
    assert!(
        out.stderr.contains(&format!("table {db}.victim")),
        "the error names the table\n{out}"
    );
    assert!(
        out.stderr.contains(expect),
        "the error says what happened ({expect})\n{out}"
    );
    assert!(out.stderr.contains("run the backup again"), "{out}");
    assert!(out.stderr.contains("no snapshot was written"), "{out}");
    assert_eq!(snapshot_count(&env), 0, "no partial snapshot is listed");
    env.run(["check"]).assert_ok();
    // Run again, as the message says: it works, without the table.
    let out = run_with(&env, &fx.env(), &["--json", "backup", &fx.url(db)]).assert_ok();
    assert_eq!(out.json()["tables"], 1, "{out}");
}

#[test]
fn mysql_table_dropped_between_schema_and_snapshot_fails_naming_it() {
    mysql_drop_at(
        "fault_drop_schema",
        "mysql-schema-dumped",
        "was dropped while the backup ran",
    );
}

#[test]
fn mysql_table_dropped_before_its_rows_are_read_fails_naming_it() {
    mysql_drop_at(
        "fault_drop_rows",
        "mysql-tables-listed",
        "was dropped or altered while the backup ran",
    );
}
