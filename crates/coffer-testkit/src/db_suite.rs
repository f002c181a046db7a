//! The shared database suite: one set of CLI-level tests (backup, restore into a fresh
//! database with every table's checksum compared, a backup under a running writer, selective
//! table restore, the safety backup, a dry run that changes nothing, bad input) that every
//! database source must pass. An engine's tests implement [`DbFixture`] and call [`run_all`].

use crate::cli::{str_field, u64_field, CofferEnv};
use std::collections::BTreeMap;

/// A running writer started by [`DbFixture::start_writer`].
pub trait Writer: Send {
    /// Stops it and returns the number of transactions it committed.
    fn stop(self: Box<Self>) -> u64;
}

/// One database engine, as the shared suite drives it. Implementations start their server
/// (a real one, in a temporary directory, on 127.0.0.1) when created.
pub trait DbFixture {
    /// The snapshot's source kind: `postgres`, `mysql`, `sqlite` or `redis`.
    fn kind(&self) -> &'static str;
    /// The URL of database `name` on the fixture's server (for SQLite, a file in the fixture's
    /// folder; for Redis, whose restores replace a whole server, each name may be a server of
    /// its own). Credentials are in the URL or in `env`. The suite uses the names `suite_src`,
    /// `suite_dst`, `suite_busy`, `suite_undo`, `suite_one`, `suite_live`, `suite_live_copy`.
    fn url(&self, name: &str) -> String;
    /// The URL of a server that is not running (a closed port; SQLite: a missing folder).
    fn unreachable_url(&self) -> String;
    /// The URL of `name` with a wrong password (`None` when the engine has no passwords).
    fn wrong_password_url(&self, name: &str) -> Option<String>;
    /// Environment variables the `coffer` process needs (`PGPASSWORD`, ...).
    fn env(&self) -> Vec<(String, String)>;
    /// Creates `name`, empty, dropping what was there.
    fn create_empty(&self, name: &str);
    /// Fills `name` with the engine's awkward data set (every byte value, NULLs, unicode,
    /// long text, exact numerics, time zones, JSON, ... as the engine has them).
    fn load_awkward(&self, name: &str);
    /// A digest of each table's (or key's) full content, by name. Equal maps mean equal data.
    fn checksums(&self, name: &str) -> BTreeMap<String, String>;
    /// Changes the data of exactly one table (or key) of `name`; returns its name.
    fn change_one(&self, name: &str) -> String;
    /// Starts a writer committing transactions into `name` that keep an invariant
    /// [`DbFixture::check_consistent`] verifies (a backup must see all of a transaction or none).
    fn start_writer(&self, name: &str) -> Box<dyn Writer>;
    /// Panics unless the writer's invariant holds in `name` (after a restore).
    fn check_consistent(&self, name: &str);
    /// A table `--table` can select (`None`: the engine has no per-table restore).
    fn one_table(&self) -> Option<String>;
}

/// Runs `coffer` with the fixture's environment.
pub fn coffer(env: &CofferEnv, fx: &dyn DbFixture, args: &[&str]) -> crate::cli::CmdOutput {
    let mut cmd = env.cmd(args);
    for (k, v) in fx.env() {
        cmd.env(k, v);
    }
    env.run_cmd(cmd)
}

/// The ids of the snapshots whose source kind is the fixture's, oldest first.
fn db_snapshots(env: &CofferEnv, fx: &dyn DbFixture) -> Vec<serde_json::Value> {
    let out = coffer(env, fx, &["--json", "snapshots"]).assert_ok();
    match out.json() {
        serde_json::Value::Array(a) => a
            .into_iter()
            .filter(|s| s["source"]["kind"] == fx.kind())
            .collect(),
        other => panic!("`snapshots --json` printed {other}\n{out}"),
    }
}

/// Every test of the suite, in order, on one server and one repository.
pub fn run_all(env: &CofferEnv, fx: &dyn DbFixture) {
    if !env.repo_path("config").exists() {
        env.init();
    }
    let id = roundtrip(env, fx);
    dry_run_changes_nothing(env, fx, &id);
    non_empty_target(env, fx, &id);
    if fx.one_table().is_some() {
        selective_table(env, fx, &id);
    }
    second_backup(env, fx);
    backup_under_writer(env, fx);
    bad_input(env, fx);
}

/// Backs up the awkward data, restores it into a fresh database and compares every table;
/// the manifest names the source without secrets; check --read-data passes; `dump` writes
/// something. Returns the snapshot id.
pub fn roundtrip(env: &CofferEnv, fx: &dyn DbFixture) -> String {
    fx.create_empty("suite_src");
    fx.load_awkward("suite_src");
    let want = fx.checksums("suite_src");
    assert!(!want.is_empty(), "the awkward data set is empty");
    let out = coffer(env, fx, &["--json", "backup", &fx.url("suite_src")]).assert_ok();
    let summary = out.json();
    let id = str_field(&summary, "snapshot_id");
    assert!(u64_field(&summary, "bytes_added") > 0, "{out}");

    let snaps = db_snapshots(env, fx);
    let snap = snaps
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap_or_else(|| panic!("snapshot {id} is not listed"));
    let location = snap["source"]["location"].as_str().unwrap_or_default();
    // `--source URL` finds it, a password in the URL or not.
    let by_source = coffer(
        env,
        fx,
        &["--json", "snapshots", "--source", &fx.url("suite_src")],
    )
    .assert_ok()
    .json();
    assert!(
        by_source
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["id"] == id.as_str())),
        "snapshots --source {} does not list {id}: {by_source}",
        coffer_sources::database::DbUrl::redact_str(&fx.url("suite_src"))
    );
    for secret in fx.wrong_password_url("x").into_iter().chain([fx.url("x")]) {
        if let Some(pw) = password_of(&secret) {
            assert!(
                !location.contains(&pw),
                "the manifest shows a password: {location}"
            );
        }
    }
    let extra = &snap["extra"];
    assert_eq!(extra["engine"], fx.kind(), "manifest: {extra}");
    assert!(
        !extra["server_version"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "manifest without server version: {extra}"
    );
    let streams = extra["streams"].as_array().cloned().unwrap_or_default();
    assert!(!streams.is_empty(), "manifest lists no streams: {extra}");
    for s in &streams {
        assert_eq!(
            s["sha256"].as_str().map(str::len),
            Some(64),
            "stream without SHA-256: {s}"
        );
    }

    fx.create_empty("suite_dst");
    let out = coffer(
        env,
        fx,
        &[
            "--json",
            "restore",
            &id,
            "--target",
            &fx.url("suite_dst"),
            "--yes",
        ],
    )
    .assert_ok();
    let report = out.json();
    assert_eq!(
        report["mismatches"].as_array().map(Vec::len),
        Some(0),
        "{out}"
    );
    assert!(
        report["safety_snapshot_id"].is_null(),
        "a safety backup of an empty target was taken: {out}"
    );
    assert_eq!(fx.checksums("suite_dst"), want, "restored data differs");

    coffer(env, fx, &["check", "--read-data"]).assert_ok();
    let dump = coffer(env, fx, &["dump", &id]).assert_ok();
    assert!(!dump.stdout_raw.is_empty(), "dump printed nothing");
    id
}

fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split('/').next()?.rsplit_once('@')?.0;
    let pw = userinfo.split_once(':')?.1;
    (!pw.is_empty()).then(|| pw.to_string())
}

/// A dry run into a non-empty target prints the plan and changes nothing.
pub fn dry_run_changes_nothing(env: &CofferEnv, fx: &dyn DbFixture, id: &str) {
    fx.create_empty("suite_busy");
    fx.load_awkward("suite_busy");
    let changed = fx.change_one("suite_busy");
    let before = fx.checksums("suite_busy");
    let count = db_snapshots(env, fx).len();
    let out = coffer(
        env,
        fx,
        &[
            "restore",
            id,
            "--target",
            &fx.url("suite_busy"),
            "--dry-run",
            "--clean",
        ],
    )
    .assert_ok();
    assert!(out.stdout.contains("nothing was changed"), "{out}");
    assert!(out.stdout.contains("safety backup"), "{out}");
    // --clean was given: the dry run does not ask for it.
    assert!(
        !out.stdout.contains("needs --clean") && out.stdout.contains("--clean replaces"),
        "{out}"
    );
    // Without --clean it says the restore would be refused, and no safety backup is promised.
    let out = coffer(
        env,
        fx,
        &[
            "restore",
            id,
            "--target",
            &fx.url("suite_busy"),
            "--dry-run",
        ],
    )
    .assert_ok();
    assert!(out.stdout.contains("needs --clean"), "{out}");
    assert!(!out.stdout.contains("safety backup"), "{out}");
    assert_eq!(
        fx.checksums("suite_busy"),
        before,
        "a dry run changed {changed}"
    );
    assert_eq!(
        db_snapshots(env, fx).len(),
        count,
        "a dry run wrote a snapshot"
    );
}

/// A non-empty target: refused without --clean (nothing changed); with --clean a safety
/// backup is taken first, then the data is replaced; restoring the safety backup brings the
/// old content back; `restore latest` skips the safety backup, saying so.
pub fn non_empty_target(env: &CofferEnv, fx: &dyn DbFixture, id: &str) {
    let before = fx.checksums("suite_busy");
    let out = coffer(
        env,
        fx,
        &["restore", id, "--target", &fx.url("suite_busy"), "--yes"],
    )
    .assert_code(2)
    .assert_mentions("--clean");
    assert_eq!(
        fx.checksums("suite_busy"),
        before,
        "a refused restore changed data\n{out}"
    );

    let out = coffer(
        env,
        fx,
        &[
            "--json",
            "restore",
            id,
            "--target",
            &fx.url("suite_busy"),
            "--clean",
            "--yes",
        ],
    )
    .assert_ok();
    let report = out.json();
    let safety = report["safety_snapshot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no safety backup was taken\n{out}"))
        .to_string();
    assert_eq!(fx.checksums("suite_busy"), fx.checksums("suite_src"));
    let tagged = db_snapshots(env, fx)
        .into_iter()
        .find(|s| s["id"] == safety.as_str())
        .unwrap_or_else(|| panic!("the safety snapshot {safety} is not listed"));
    assert_eq!(tagged["tags"], serde_json::json!(["safety"]), "{tagged}");

    // The safety backup restores the previous content.
    fx.create_empty("suite_undo");
    coffer(
        env,
        fx,
        &[
            "restore",
            &safety,
            "--target",
            &fx.url("suite_undo"),
            "--yes",
        ],
    )
    .assert_ok();
    assert_eq!(
        fx.checksums("suite_undo"),
        before,
        "the safety backup lost data"
    );

    // `latest` is the newest backup of this engine, not the newer safety backup, and the
    // output says which safety backup it skipped.
    fx.create_empty("suite_latest");
    let out = coffer(
        env,
        fx,
        &[
            "restore",
            "latest",
            "--target",
            &fx.url("suite_latest"),
            "--yes",
        ],
    )
    .assert_ok();
    assert!(
        out.stderr
            .contains(&format!("skipped the newer safety backup {}", &safety[..8])),
        "the restore does not say it skipped the safety backup\n{out}"
    );
    assert_eq!(
        fx.checksums("suite_latest"),
        fx.checksums("suite_src"),
        "latest restored the safety backup instead of the newest backup\n{out}"
    );
}

/// `--table T` into a fresh database restores that table, equal to the source.
pub fn selective_table(env: &CofferEnv, fx: &dyn DbFixture, id: &str) {
    let table = fx.one_table().expect("a table");
    fx.create_empty("suite_one");
    coffer(
        env,
        fx,
        &[
            "restore",
            id,
            "--target",
            &fx.url("suite_one"),
            "--table",
            &table,
            "--yes",
        ],
    )
    .assert_ok();
    let got = fx.checksums("suite_one");
    let want = fx.checksums("suite_src");
    let key = got
        .keys()
        .find(|k| **k == table || k.ends_with(&format!(".{table}")))
        .unwrap_or_else(|| panic!("table {table} was not restored (got {got:?})"))
        .clone();
    assert_eq!(got.get(&key), want.get(&key), "table {table} differs");
    assert!(
        got.len() < want.len(),
        "--table {table} restored every table: {got:?}"
    );

    // A table the snapshot lacks is a usage error naming it.
    coffer(
        env,
        fx,
        &[
            "restore",
            id,
            "--target",
            &fx.url("suite_one"),
            "--table",
            "no_such_table_x",
            "--yes",
        ],
    )
    .assert_code(2)
    .assert_mentions("no_such_table_x");
}

/// An unchanged second backup adds little; a change to one table adds something.
pub fn second_backup(env: &CofferEnv, fx: &dyn DbFixture) {
    let first = coffer(env, fx, &["--json", "backup", &fx.url("suite_src")])
        .assert_ok()
        .json();
    let total = u64_field(&first, "total_bytes");
    // Everything was stored by the roundtrip's backup already.
    let added = u64_field(&first, "bytes_added");
    assert!(
        added <= total / 10 + 64 * 1024,
        "an unchanged backup added {added} bytes of {total}"
    );
    // `diff` of two backups of the unchanged database lists exactly the streams whose bytes
    // differ (their SHA-256 in the manifests), not every stream.
    let again = coffer(env, fx, &["--json", "backup", &fx.url("suite_src")])
        .assert_ok()
        .json();
    let (first_id, again_id) = (
        str_field(&first, "snapshot_id"),
        str_field(&again, "snapshot_id"),
    );
    let (modified, streams) = diff_matches_manifests(env, fx, &first_id, &again_id);
    assert!(
        modified < streams,
        "diff of two backups of an unchanged database: {modified} of {streams} streams modified"
    );
    fx.change_one("suite_src");
    let changed = coffer(env, fx, &["--json", "backup", &fx.url("suite_src")])
        .assert_ok()
        .json();
    assert!(u64_field(&changed, "bytes_added") > 0, "{changed}");
    let (modified, _) =
        diff_matches_manifests(env, fx, &again_id, &str_field(&changed, "snapshot_id"));
    assert!(
        modified > 0,
        "diff shows no change after a change to one table"
    );
}

/// Runs `diff --json a b` and checks that the streams it lists as modified are those whose
/// SHA-256 differs between the two snapshots' manifests; returns how many are, and how many
/// streams `a` has.
fn diff_matches_manifests(env: &CofferEnv, fx: &dyn DbFixture, a: &str, b: &str) -> (usize, usize) {
    let snaps = db_snapshots(env, fx);
    let digests = |id: &str| -> BTreeMap<String, String> {
        let snap = snaps
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("snapshot {id} is not listed"));
        snap["extra"]["streams"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                (
                    format!("/{}", s["path"].as_str().unwrap_or_default()),
                    s["sha256"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let (da, db) = (digests(a), digests(b));
    let want: Vec<String> = da
        .iter()
        .filter(|(p, h)| db.get(*p).is_some_and(|h2| h2 != *h))
        .map(|(p, _)| p.clone())
        .collect();
    let out = coffer(env, fx, &["--json", "diff", a, b]).assert_ok();
    let changes = out.json()["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let got: Vec<String> = changes
        .iter()
        .filter(|c| c["change"] == "modified")
        .map(|c| c["path"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(got, want, "diff {a} {b}: modified streams\n{out}");
    (got.len(), da.len())
}

/// A backup taken while a writer commits transactions restores to a consistent state.
pub fn backup_under_writer(env: &CofferEnv, fx: &dyn DbFixture) {
    fx.create_empty("suite_live");
    fx.load_awkward("suite_live");
    let writer = fx.start_writer("suite_live");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = coffer(env, fx, &["--json", "backup", &fx.url("suite_live")]).assert_ok();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let committed = writer.stop();
    assert!(committed > 0, "the writer committed nothing");
    let id = str_field(&out.json(), "snapshot_id");
    fx.create_empty("suite_live_copy");
    coffer(
        env,
        fx,
        &[
            "restore",
            &id,
            "--target",
            &fx.url("suite_live_copy"),
            "--yes",
        ],
    )
    .assert_ok();
    fx.check_consistent("suite_live_copy");
}

/// Unreachable server, wrong password: one clear line, exit 1, no snapshot listed.
pub fn bad_input(env: &CofferEnv, fx: &dyn DbFixture) {
    let count = db_snapshots(env, fx).len();
    let out = coffer(env, fx, &["backup", &fx.unreachable_url()])
        .assert_code(1)
        .assert_one_line_error();
    assert!(out.stderr.contains("no snapshot"), "{out}");
    if let Some(url) = fx.wrong_password_url("suite_src") {
        let out = coffer(env, fx, &["backup", &url])
            .assert_code(1)
            .assert_one_line_error();
        let pw = password_of(&url).expect("a password in the URL");
        assert!(
            !out.combined().contains(&pw),
            "the password was printed\n{out}"
        );
    }
    assert_eq!(
        db_snapshots(env, fx).len(),
        count,
        "a failed backup listed a snapshot"
    );
}
