//! The SQLite source: the engine driven directly on an in-memory repository (backup while a
//! writer process runs, in WAL and rollback-journal mode; restore by temporary file and
//! rename; table restore; dump; bad input), then the `coffer` command (the shared database
//! suite, dry run, safety backup, errors).

use coffer_core::memory::MemoryBackend;
use coffer_core::{ErrorKind, Id};
use coffer_sources::database::{
    self, DbManifest, DbUrl, DumpRequest, RestoreReport, RestoreRequest,
};
use coffer_testkit::cli::str_field;
use coffer_testkit::db_engine::{self, load, new_repo, reopen};
use coffer_testkit::db_suite::{self, DbFixture};
use coffer_testkit::sqlite_fixture::{
    check_invariant, checksums_of, load_awkward_into, open, SqliteFixture,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The engine on an in-memory repository.

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Backs up `path` as `coffer backup` does: a session, the engine, a snapshot.
async fn backup(be: &Arc<MemoryBackend>, path: &Path) -> coffer_core::Result<(Id, DbManifest)> {
    db_engine::backup(be, DbUrl::parse(&url(path))?, 1, false).await
}

fn request(target: &Path) -> RestoreRequest {
    RestoreRequest {
        target: Some(DbUrl::parse(&url(target)).unwrap()),
        jobs: 1,
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

async fn dump(be: &Arc<MemoryBackend>, id: Id) -> Vec<u8> {
    let (m, src) = load(be, id).await;
    let mut out = Vec::new();
    database::dump(&src, &m, &DumpRequest::default(), &mut out)
        .await
        .unwrap();
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

/// Files in `dir` other than the listed ones (left-over temporary files).
fn strays(dir: &Path, expected: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !expected.contains(&n.as_str()))
        .collect()
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_awkward_data_roundtrip_manifest_and_dump() {
    let fx = SqliteFixture::new();
    fx.create_empty("src");
    fx.load_awkward("src");
    let want = fx.checksums("src");
    let be = new_repo().await;
    let (id, m) = backup(&be, &fx.path("src")).await.unwrap();

    // The manifest.
    assert_eq!(m.engine, "sqlite");
    assert_eq!(
        m.server_version,
        coffer_testkit::sqlite_fixture::rusqlite::version()
    );
    let db = &m.databases[0];
    assert_eq!(db.name, "src.db");
    assert_eq!(db.page_size, Some(4096));
    assert_eq!(db.integrity_check.as_deref(), Some("ok"));
    assert_eq!(db.schema_version.as_deref(), Some("ae1027a6acf"));
    assert_eq!(m.details["user_version"], 42);
    assert_eq!(m.details["journal_mode"], "wal");
    assert!(db.size_bytes > 1_000_000, "{}", db.size_bytes);
    let c = fx.open("src");
    for t in &db.tables {
        let n: i64 = c
            .query_row(
                &format!("SELECT count(*) FROM \"{}\"", t.name.replace('"', "\"\"")),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(t.rows, n as u64, "rows of {}", t.name);
    }
    let names: Vec<&str> = db.tables.iter().map(|t| t.name.as_str()).collect();
    for t in [
        "people",
        "pets",
        "blobs",
        "numbers",
        "texts",
        "odd \"name\" / 😀",
        "docs",
    ] {
        assert!(names.contains(&t), "{t} missing from {names:?}");
    }
    assert!(!names.contains(&"people_pets"), "views are not tables");
    assert_eq!(m.streams.len(), 1);
    assert_eq!(m.streams[0].path, "db/src.db");
    assert_eq!(m.streams[0].size, db.size_bytes);
    // No temporary copy is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".src.db.coffer-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary copies left: {leftovers:?}");

    // Restore into a new file.
    let target = fx.dir().join("restored.db");
    let report = restore(&be, id, &request(&target)).await.unwrap();
    assert_counts_match(&report);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(checksums_of(&open(&target)), want, "restored data differs");
    let blob: Vec<u8> = open(&target)
        .query_row("SELECT data FROM blobs WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(blob, (0..=255u8).collect::<Vec<_>>());
    assert!(!sidecar(&target, "-wal").exists() && !sidecar(&target, "-shm").exists());

    // `dump` gives the same bytes as the restore (as it was restored, before anyone wrote).
    let target2 = fx.dir().join("restored2.db");
    restore(&be, id, &request(&target2)).await.unwrap();
    let dumped = dump(&be, id).await;
    assert_eq!(dumped.len() as u64, db.size_bytes);
    assert!(
        dumped == std::fs::read(&target2).unwrap(),
        "dump differs from a fresh restore"
    );
    assert!(dumped.starts_with(b"SQLite format 3\0"));
    // A dump with --table is refused with a pointer to restore --table.
    let (m2, src) = load(&be, id).await;
    let req = DumpRequest {
        tables: vec!["people".into()],
        ..Default::default()
    };
    let e = database::dump(&src, &m2, &req, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("restore"), "{e}");
}

/// Backups while a `sqlite3` process keeps moving money between accounts; every restored copy
/// must add up, and later copies must hold more transactions.
async fn backups_under_writer(mode: &str) {
    let fx = SqliteFixture::with_journal_mode(mode);
    fx.create_empty("live");
    let writer = fx.start_writer("live");
    let be = new_repo().await;
    // Let the writer get going.
    let started = Instant::now();
    while check_invariant(&fx.path("live")) < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the writer makes no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut ids = Vec::new();
    let mut timings = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let (id, m) = backup(&be, &fx.path("live")).await.unwrap();
        timings.push(t.elapsed());
        assert_eq!(m.databases[0].integrity_check.as_deref(), Some("ok"));
        assert_eq!(m.details["journal_mode"], mode);
        // One read transaction: the copy took several steps and never started over.
        assert_eq!(m.details["copy"]["restarts"], 0, "{}", m.details);
        assert!(
            m.details["copy"]["steps"].as_u64().unwrap() > 1,
            "{}",
            m.details
        );
        ids.push((id, m));
        std::thread::sleep(Duration::from_millis(150));
    }
    let committed = writer.stop();
    let mut seen = Vec::new();
    for (i, (id, m)) in ids.iter().enumerate() {
        let target = fx.dir().join(format!("restored-{i}.db"));
        let report = restore(&be, *id, &request(&target)).await.unwrap();
        assert_counts_match(&report);
        let n = check_invariant(&target);
        let counter = m.databases[0]
            .tables
            .iter()
            .find(|t| t.name == "transfers")
            .unwrap()
            .rows;
        assert_eq!(n, counter, "the manifest's count is the copy's");
        seen.push(n);
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "the writer committed between backups, so each copy holds more: {seen:?}"
    );
    assert!(committed > *seen.last().unwrap(), "{committed} vs {seen:?}");
    eprintln!(
        "sqlite {mode}: {committed} transactions by the writer; backups took {timings:?}; copies held {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_backup_while_another_process_writes_wal() {
    backups_under_writer("wal").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_backup_while_another_process_writes_rollback_journal() {
    backups_under_writer("delete").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_restore_replaces_the_target_by_rename_and_removes_stale_sidecars() {
    let fx = SqliteFixture::new();
    fx.create_empty("src");
    fx.load_awkward("src");
    let want = fx.checksums("src");
    let be = new_repo().await;
    let (id, _) = backup(&be, &fx.path("src")).await.unwrap();

    // An old target in WAL mode whose -wal still holds committed frames, as after a crash.
    let target = fx.path("old");
    fx.create_empty("old");
    {
        let c = fx.open("old");
        c.execute_batch(
            "PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE old_stuff (x);
             INSERT INTO old_stuff VALUES (1), (2), (3);",
        )
        .unwrap();
        let wal = std::fs::read(sidecar(&target, "-wal")).unwrap();
        assert!(!wal.is_empty(), "the WAL holds the old data");
        let shm = std::fs::read(sidecar(&target, "-shm")).unwrap();
        drop(c);
        std::fs::write(sidecar(&target, "-wal"), wal).unwrap();
        std::fs::write(sidecar(&target, "-shm"), shm).unwrap();
    }
    let inode_before = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&target).unwrap());

    // Not empty: refused without --clean, and left alone.
    let mut req = request(&target);
    let (m, src) = load(&be, id).await;
    let state = database::probe_target(&m, &req).await.unwrap();
    assert!(state.exists && !state.empty, "{state:?}");
    assert_eq!(state.conflicts, vec!["old_stuff".to_string()]);
    let e = database::restore(&src, &m, &req).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("--clean"), "{e}");
    assert!(
        sidecar(&target, "-wal").exists(),
        "a refused restore touches nothing"
    );

    req.clean = true;
    let report = database::restore(&src, &m, &req).await.unwrap();
    assert_counts_match(&report);
    let inode_after = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&target).unwrap());
    assert_ne!(
        inode_before, inode_after,
        "the target was replaced by a rename"
    );
    for s in ["-wal", "-shm", "-journal"] {
        assert!(!sidecar(&target, s).exists(), "stale {s} left");
    }
    assert_eq!(checksums_of(&open(&target)), want);
    assert!(
        strays(fx.dir(), &["src.db", "old.db"]).is_empty(),
        "temporary files left: {:?}",
        strays(fx.dir(), &["src.db", "old.db"])
    );

    // A target in a missing folder: a clear error, nothing created.
    let nowhere = fx.dir().join("missing").join("x.db");
    let e = restore(&be, id, &request(&nowhere)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");

    // A target that is not a database is never replaced, even with --clean.
    let text = fx.dir().join("notes.txt");
    std::fs::write(&text, "my precious notes, not a database").unwrap();
    let mut req = request(&text);
    req.clean = true;
    let e = restore(&be, id, &req).await.unwrap_err();
    assert!(e.to_string().contains("not a SQLite database"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "my precious notes, not a database"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_table_restore_copies_only_the_named_tables() {
    let fx = SqliteFixture::with_journal_mode("delete");
    fx.create_empty("src");
    fx.load_awkward("src");
    let want = fx.checksums("src");
    let be = new_repo().await;
    let (id, _) = backup(&be, &fx.path("src")).await.unwrap();

    // Damage two tables, then take one back.
    {
        let c = fx.open("src");
        c.execute_batch(
            "DELETE FROM people WHERE id > 2; DROP INDEX pets_owner; UPDATE numbers SET t = 'x';",
        )
        .unwrap();
    }
    let mut req = request(&fx.path("src"));
    req.tables = vec!["people".into()];
    let (m, src) = load(&be, id).await;
    let state = database::probe_target(&m, &req).await.unwrap();
    assert_eq!(state.conflicts, vec!["people".to_string()]);
    let e = database::restore(&src, &m, &req).await.unwrap_err();
    assert!(e.to_string().contains("--clean"), "{e}");
    req.clean = true;
    let report = database::restore(&src, &m, &req).await.unwrap();
    assert_eq!(report.restored, vec!["people".to_string()]);
    assert_counts_match(&report);
    let now = fx.checksums("src");
    assert_eq!(now["people"], want["people"]);
    assert_ne!(now["numbers"], want["numbers"], "numbers was not asked for");
    let c = fx.open("src");
    let trigger: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND name = 'people_audit'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(trigger, 1, "the table's trigger is back");
    let seq: i64 = c
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'people'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seq, 8, "the AUTOINCREMENT counter is back");
    drop(c);

    // Into a new file: just those tables (plus a missing table name is a clear error).
    let fresh = fx.dir().join("fresh.db");
    let mut req = request(&fresh);
    req.tables = vec!["numbers".into(), "odd \"name\" / 😀".into()];
    let report = restore(&be, id, &req).await.unwrap();
    assert_counts_match(&report);
    let got = checksums_of(&open(&fresh));
    assert_eq!(got["numbers"], want["numbers"]);
    assert_eq!(got["odd \"name\" / 😀"], want["odd \"name\" / 😀"]);
    assert_eq!(
        got.len(),
        3,
        "only the two tables (and the schema digest): {got:?}"
    );
    req.tables = vec!["nope".into()];
    let e = restore(&be, id, &req).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // --schema-only into a new file: every table, no rows, views too.
    let schema = fx.dir().join("schema.db");
    let mut req = request(&schema);
    req.schema_only = true;
    restore(&be, id, &req).await.unwrap();
    let c = open(&schema);
    let (tables, views): (i64, i64) = c
        .query_row(
            "SELECT (SELECT count(*) FROM sqlite_schema WHERE type = 'table'), (SELECT count(*) FROM sqlite_schema WHERE type = 'view')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(tables >= 8, "{tables}");
    assert_eq!(views, 1);
    let people: i64 = c
        .query_row("SELECT count(*) FROM people", [], |r| r.get(0))
        .unwrap();
    assert_eq!(people, 0);
    assert!(strays(fx.dir(), &["src.db", "fresh.db", "schema.db"]).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_bad_sources_give_clear_errors_and_no_snapshot() {
    let fx = SqliteFixture::new();
    let be = new_repo().await;
    let missing = fx.dir().join("missing.db");
    let e = backup(&be, &missing).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(!missing.exists(), "a backup never creates the source");

    let text = fx.dir().join("text.db");
    std::fs::write(&text, "hello, I am a text file and not a database at all").unwrap();
    let e = backup(&be, &text).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("not a SQLite database"), "{e}");

    let e = backup(&be, fx.dir()).await.unwrap_err();
    assert!(e.to_string().contains("folder"), "{e}");

    // A truncated database: right header, missing pages.
    fx.create_empty("whole");
    fx.load_awkward("whole");
    let bytes = std::fs::read(fx.path("whole")).unwrap();
    let cut = fx.dir().join("cut.db");
    std::fs::write(&cut, &bytes[..8192]).unwrap();
    // So damaged that SQLite cannot read its schema: a clear error (a database SQLite can
    // still read is stored with its failed integrity check: see the next test).
    let e = backup(&be, &cut).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Source, "{e}");
    assert!(e.to_string().contains("damaged"), "{e}");

    let repo = reopen(&be).await;
    let snaps = repo.list_snapshots().await.unwrap();
    assert!(snaps.is_empty(), "failed backups list no snapshot");
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_damaged_database_is_stored_with_its_integrity_result() {
    let fx = SqliteFixture::with_journal_mode("delete");
    fx.create_empty("bad");
    {
        // Forget an index in the schema: its pages become orphans the check reports.
        let c = fx.open("bad");
        c.execute_batch(
            "CREATE TABLE t (x TEXT); CREATE INDEX t_x ON t (x);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 2000)
             INSERT INTO t SELECT hex(randomblob(50)) FROM s;
             PRAGMA writable_schema = ON;
             DELETE FROM sqlite_schema WHERE name = 't_x';
             PRAGMA writable_schema = OFF;",
        )
        .unwrap();
    }
    let be = new_repo().await;
    let (id, m) = backup(&be, &fx.path("bad")).await.unwrap();
    let check = m.databases[0].integrity_check.clone().unwrap();
    assert_ne!(check, "ok");
    assert!(check.contains("never used"), "{check}");
    let warnings = m.details["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("integrity check")),
        "{warnings:?}"
    );
    let target = fx.dir().join("restored.db");
    let report = restore(&be, id, &request(&target)).await.unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("already damaged")),
        "{:?}",
        report.warnings
    );
    assert_counts_match(&report);
}

// ---------------------------------------------------------------------------------------------
// The `coffer` command.

#[test]
fn sqlite_shared_suite() {
    let env = crate::env_with_repo();
    let fx = SqliteFixture::new();
    db_suite::run_all(&env, &fx);
}

#[test]
fn sqlite_cli_dry_run_safety_backup_and_dump() {
    let env = crate::env_with_repo();
    let fx = SqliteFixture::new();
    fx.create_empty("src");
    fx.load_awkward("src");
    let want = fx.checksums("src");
    let id = str_field(&env.backup([fx.url("src")]), "snapshot_id");

    // The target holds other data.
    fx.create_empty("dst");
    fx.open("dst")
        .execute_batch("CREATE TABLE mine (x); INSERT INTO mine VALUES (1);")
        .unwrap();
    let before = std::fs::read(fx.path("dst")).unwrap();
    let dst_sums = fx.checksums("dst");

    // Without --clean: refused, untouched.
    db_suite::coffer(
        &env,
        &fx,
        &["restore", &id, "--target", &fx.url("dst"), "--yes"],
    )
    .assert_failure()
    .assert_mentions("--clean");
    assert_eq!(std::fs::read(fx.path("dst")).unwrap(), before);

    // A dry run changes nothing and writes no snapshot.
    let n = env.snapshot_ids().len();
    db_suite::coffer(
        &env,
        &fx,
        &[
            "restore",
            &id,
            "--target",
            &fx.url("dst"),
            "--clean",
            "--yes",
            "--dry-run",
        ],
    )
    .assert_ok();
    assert_eq!(std::fs::read(fx.path("dst")).unwrap(), before);
    assert_eq!(env.snapshot_ids().len(), n);

    // The real thing takes a safety backup of the target first.
    db_suite::coffer(
        &env,
        &fx,
        &[
            "restore",
            &id,
            "--target",
            &fx.url("dst"),
            "--clean",
            "--yes",
        ],
    )
    .assert_ok();
    assert_eq!(fx.checksums("dst"), want);
    let safety: Vec<_> = env
        .snapshots(["--tag", "safety"])
        .into_iter()
        .map(|s| str_field(&s, "id"))
        .collect();
    assert_eq!(safety.len(), 1, "one safety backup");
    let back = fx.dir().join("back.db");
    db_suite::coffer(
        &env,
        &fx,
        &["restore", &safety[0], "--target", &url(&back), "--yes"],
    )
    .assert_ok();
    assert_eq!(
        checksums_of(&open(&back)),
        dst_sums,
        "the safety backup holds the old target"
    );

    // `coffer dump` writes the file a fresh restore gives.
    let fresh = fx.dir().join("fresh.db");
    db_suite::coffer(
        &env,
        &fx,
        &["restore", &id, "--target", &url(&fresh), "--yes"],
    )
    .assert_ok();
    // Raw bytes: run it directly rather than through the text-capturing helper.
    let out = env.cmd(["dump", id.as_str()]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == std::fs::read(&fresh).unwrap(),
        "dump output differs from a fresh restore"
    );

    // Into a file: a summary line, or with --json the report; --json without --output is a
    // usage error (the dump would be on stdout).
    let file = fx.dir().join("dumped.db");
    let out = db_suite::coffer(
        &env,
        &fx,
        &["dump", &id, "--output", &file.to_string_lossy()],
    )
    .assert_ok();
    assert!(
        out.stdout.contains("wrote the sqlite dump of snapshot"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(&fresh).unwrap()
    );
    std::fs::remove_file(&file).unwrap();
    let out = db_suite::coffer(
        &env,
        &fx,
        &["--json", "dump", &id, "--output", &file.to_string_lossy()],
    )
    .assert_ok();
    let report = out.json();
    assert_eq!(
        report["bytes"].as_u64(),
        Some(std::fs::metadata(&file).unwrap().len()),
        "{out}"
    );
    assert_eq!(report["engine"], "sqlite", "{out}");
    db_suite::coffer(&env, &fx, &["--json", "dump", &id])
        .assert_code(2)
        .assert_mentions("--output");
}

#[test]
fn sqlite_cli_bad_input() {
    let env = crate::env_with_repo();
    let fx = SqliteFixture::new();
    let missing = db_suite::coffer(&env, &fx, &["backup", &fx.unreachable_url()]).assert_failure();
    assert!(missing.combined().contains("does not exist"), "{missing}");
    let text = fx.dir().join("text.db");
    std::fs::write(
        &text,
        "not a database, just text, long enough to have a header",
    )
    .unwrap();
    db_suite::coffer(&env, &fx, &["backup", &url(&text)])
        .assert_failure()
        .assert_mentions("not a SQLite database");
    assert!(
        env.snapshot_ids().is_empty(),
        "no snapshot for failed backups"
    );
}

#[test]
fn sqlite_cli_unreadable_file() {
    use coffer_testkit::tree::chmod;
    let env = crate::unprivileged_env();
    env.init();
    let db = env.path("secret.db");
    load_awkward_into(&open(&db));
    env.hand_over(&db);
    chmod(&db, 0o000);
    let out = env.run(["backup", &url(&db)]).assert_failure();
    assert!(out.combined().contains("permission denied"), "{out}");
    assert!(env.snapshot_ids().is_empty());
}
