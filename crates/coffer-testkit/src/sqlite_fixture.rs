//! SQLite for the shared database suite: database files in a temporary folder, the awkward
//! data set, per-table checksums, and a writer that is a separate process (the `sqlite3`
//! command-line shell fed transactions through a pipe).

pub use rusqlite;

use crate::db_suite::{DbFixture, Writer};
use crate::servers::INSTALL_HINT;
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// Accounts the writer moves money between.
pub const ACCOUNTS: i64 = 200;
/// The starting balance of each account: the total stays `ACCOUNTS * START_BALANCE`.
pub const START_BALANCE: i64 = 1000;

/// SQLite database files in a temporary folder, in one journal mode.
pub struct SqliteFixture {
    dir: TempDir,
    journal_mode: String,
}

impl Default for SqliteFixture {
    fn default() -> Self {
        SqliteFixture::new()
    }
}

impl SqliteFixture {
    /// Databases in WAL mode.
    pub fn new() -> Self {
        SqliteFixture::with_journal_mode("wal")
    }

    /// Databases in `mode` (`wal`, `delete`, `truncate`, `persist`).
    pub fn with_journal_mode(mode: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("coffer-sqlite-")
            .tempdir()
            .expect("create a temporary folder");
        SqliteFixture {
            dir,
            journal_mode: mode.to_string(),
        }
    }

    /// The folder holding the databases.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file of database `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.db"))
    }

    /// A connection to database `name` (created when missing), with a generous busy timeout.
    pub fn open(&self, name: &str) -> Connection {
        open(&self.path(name))
    }

    /// Creates `name` with the writer's tables (accounts, transfers, a counter, and 8 MiB of
    /// filler, so a backup copies many pages, in several steps, while the writer runs).
    pub fn prepare_writer_tables(&self, name: &str) {
        let c = self.open(name);
        c.execute_batch(&format!(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS transfers (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, pad BLOB);
             CREATE TABLE IF NOT EXISTS counter (n INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, data BLOB);
             INSERT INTO counter (n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM counter);
             INSERT INTO accounts (id, balance)
               WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {ACCOUNTS})
               SELECT i, {START_BALANCE} FROM s WHERE NOT EXISTS (SELECT 1 FROM accounts);
             INSERT INTO filler (data)
               WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 2000)
               SELECT randomblob(4000) FROM s WHERE NOT EXISTS (SELECT 1 FROM filler);
             COMMIT;"
        ))
        .expect("create the writer's tables");
    }
}

/// Opens (creating) a database file with a busy timeout.
pub fn open(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    c.busy_timeout(Duration::from_secs(60)).unwrap();
    c
}

/// The `sqlite3` shell, or a panic saying how to install it.
pub fn sqlite3_shell() -> PathBuf {
    let ok = Command::new("sqlite3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the sqlite3 command-line shell is not installed (Debian package sqlite3): {INSTALL_HINT}"
    );
    PathBuf::from("sqlite3")
}

/// Removes `path` and its `-wal`, `-shm` and `-journal` files.
pub fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Every byte value once, in order.
pub fn every_byte() -> Vec<u8> {
    (0..=255u8).collect()
}

/// Fills `c` with the awkward data set (see [`DbFixture::load_awkward`]).
pub fn load_awkward_into(c: &Connection) {
    c.execute_batch(
        r#"
        PRAGMA foreign_keys = ON;
        BEGIN;
        CREATE TABLE people (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            note TEXT,
            born REAL,
            upper_name TEXT GENERATED ALWAYS AS (upper(name)) VIRTUAL
        );
        CREATE TABLE pets (
            id INTEGER PRIMARY KEY,
            owner INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
            species TEXT
        );
        CREATE INDEX pets_owner ON pets (owner);
        CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT NOT NULL);
        CREATE TRIGGER people_audit AFTER INSERT ON people
            BEGIN INSERT INTO audit (what) VALUES ('added ' || NEW.name); END;
        CREATE VIEW people_pets AS
            SELECT p.name AS name, count(q.id) AS pets
            FROM people p LEFT JOIN pets q ON q.owner = p.id GROUP BY p.id;
        CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB);
        CREATE TABLE numbers (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT);
        CREATE TABLE texts (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
        CREATE TABLE "odd ""name"" / 😀" (x, y);
        CREATE UNIQUE INDEX "odd index ✓" ON "odd ""name"" / 😀" (x);
        CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
        INSERT INTO alembic_version VALUES ('ae1027a6acf');
        CREATE VIRTUAL TABLE docs USING fts5 (body);
        PRAGMA user_version = 42;
        "#,
    )
    .expect("create the awkward schema");
    let names = [
        "Zoë",
        "李小龍",
        "Ñandú 🦤",
        "👩‍👩‍👧‍👦 family",
        "O'Brien \"quoted\"",
        "tab\there\nnewline",
        "",
        "a\u{0}b",
    ];
    for (i, n) in names.iter().enumerate() {
        let note: Option<String> = (i % 2 == 0).then(|| format!("note {i} ✓ ∑"));
        let born: Option<f64> = (i % 3 != 0).then_some(1900.5 + i as f64);
        c.execute(
            "INSERT INTO people (name, note, born) VALUES (?1, ?2, ?3)",
            rusqlite::params![n, note, born],
        )
        .unwrap();
    }
    for i in 0..40i64 {
        c.execute(
            "INSERT INTO pets (owner, species) VALUES (?1, ?2)",
            rusqlite::params![
                1 + i % names.len() as i64,
                if i % 5 == 0 {
                    None
                } else {
                    Some(format!("species {i} 🐈"))
                }
            ],
        )
        .unwrap();
    }
    c.execute("INSERT INTO blobs (data) VALUES (?1)", [every_byte()])
        .unwrap();
    let mut rev = every_byte();
    rev.reverse();
    c.execute("INSERT INTO blobs (data) VALUES (?1)", [rev])
        .unwrap();
    for b in 0..=255u8 {
        c.execute("INSERT INTO blobs (data) VALUES (?1)", [vec![b]])
            .unwrap();
    }
    c.execute("INSERT INTO blobs (data) VALUES (?1)", [Vec::<u8>::new()])
        .unwrap();
    c.execute("INSERT INTO blobs (data) VALUES (NULL)", [])
        .unwrap();
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    c.execute("INSERT INTO blobs (data) VALUES (?1)", [big])
        .unwrap();
    let ints = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    let reals = [
        0.1,
        -0.0,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        std::f64::consts::PI,
        -1e-300,
    ];
    for (i, r) in ints.iter().zip(reals.iter()) {
        c.execute(
            "INSERT INTO numbers (i, r, t) VALUES (?1, ?2, ?3)",
            rusqlite::params![i, r, format!("{i}")],
        )
        .unwrap();
    }
    c.execute(
        "INSERT INTO numbers (i, r, t) VALUES (NULL, NULL, '00123')",
        [],
    )
    .unwrap();
    let long: String = "long text ✓ 😀 ".repeat(80_000);
    let texts: [(&str, Option<&str>); 6] = [
        ("emoji", Some("😀🎉🧪🏳️‍🌈")),
        ("rtl", Some("مرحبا بالعالم")),
        ("combining", Some("e\u{301} vs é")),
        ("empty", Some("")),
        ("null", None),
        ("long", Some(&long)),
    ];
    for (k, v) in texts {
        c.execute(
            "INSERT INTO texts (k, v) VALUES (?1, ?2)",
            rusqlite::params![k, v],
        )
        .unwrap();
    }
    c.execute(
        r#"INSERT INTO "odd ""name"" / 😀" (x, y) VALUES (1, 'one'), ('two', X'0002'), (3.5, NULL), (NULL, 4)"#,
        [],
    )
    .unwrap();
    c.execute(
        "INSERT INTO docs (body) VALUES ('the quick brown fox'), ('jumps over the lazy dog 🐕')",
        [],
    )
    .unwrap();
    c.execute_batch("COMMIT").expect("commit the awkward data");
}

/// A digest of each user table's rows (in a fixed order) and one of the schema (`schema`,
/// including `user_version`).
pub fn checksums_of(c: &Connection) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in tables {
        let q = format!("\"{}\"", t.replace('"', "\"\""));
        let n = c
            .prepare(&format!("SELECT * FROM {q}"))
            .unwrap()
            .column_count();
        let order: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        let mut st = c
            .prepare(&format!("SELECT * FROM {q} ORDER BY {}", order.join(", ")))
            .unwrap();
        let mut rows = st.query([]).unwrap();
        let mut h = Sha256::new();
        let mut count = 0u64;
        while let Some(row) = rows.next().unwrap() {
            count += 1;
            for i in 0..n {
                hash_value(&mut h, row.get_ref(i).unwrap());
            }
        }
        out.insert(t, format!("{count}:{}", hex::encode(h.finalize())));
    }
    let mut h = Sha256::new();
    let mut st = c
        .prepare(
            "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name",
        )
        .unwrap();
    let mut rows = st.query([]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        for i in 0..4 {
            hash_value(&mut h, row.get_ref(i).unwrap());
        }
    }
    let uv: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    h.update(uv.to_le_bytes());
    out.insert("schema".into(), hex::encode(h.finalize()));
    out
}

fn hash_value(h: &mut Sha256, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => h.update([0]),
        ValueRef::Integer(i) => {
            h.update([1]);
            h.update(i.to_le_bytes());
        }
        ValueRef::Real(r) => {
            h.update([2]);
            h.update(r.to_bits().to_le_bytes());
        }
        ValueRef::Text(t) => {
            h.update([3]);
            h.update((t.len() as u64).to_le_bytes());
            h.update(t);
        }
        ValueRef::Blob(b) => {
            h.update([4]);
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        }
    }
}

/// Panics unless the writer's invariant holds in the database at `path`: the balances add up
/// to the starting total, and the counter equals the number of transfers.
pub fn check_invariant(path: &Path) -> u64 {
    let c = open(path);
    let (sum, accounts): (i64, i64) = c
        .query_row("SELECT sum(balance), count(*) FROM accounts", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("read the accounts");
    assert_eq!(
        accounts,
        ACCOUNTS,
        "accounts are missing in {}",
        path.display()
    );
    assert_eq!(
        sum,
        ACCOUNTS * START_BALANCE,
        "the balances of {} do not add up: a transaction was copied in part",
        path.display()
    );
    let (n, transfers): (i64, i64) = c
        .query_row(
            "SELECT (SELECT n FROM counter), (SELECT count(*) FROM transfers)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        n,
        transfers,
        "the counter and the transfers of {} disagree: a transaction was copied in part",
        path.display()
    );
    n as u64
}

/// The writer: a `sqlite3` child process fed one transfer transaction after another.
pub struct ShellWriter {
    child: Child,
    stop: Arc<AtomicBool>,
    feeder: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl ShellWriter {
    /// Starts writing into the database at `path` (which must hold the writer's tables).
    pub fn start(path: &Path) -> ShellWriter {
        let shell = sqlite3_shell();
        let mut child = Command::new(shell)
            .arg("-bail")
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start sqlite3: {e}; {INSTALL_HINT}"));
        let mut stdin = child.stdin.take().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let feeder = std::thread::spawn(move || {
            let _ = writeln!(stdin, ".timeout 60000\nPRAGMA synchronous = OFF;");
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ std::process::id() as u64;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            while !flag.load(Ordering::Relaxed) {
                let a = 1 + next() % ACCOUNTS as u64;
                let b = 1 + (a + next() % (ACCOUNTS as u64 - 1)) % ACCOUNTS as u64;
                let amount = 1 + next() % 100;
                let filler = 1 + next() % 2000;
                let sql = format!(
                    "BEGIN IMMEDIATE;\
                     UPDATE accounts SET balance = balance - {amount} WHERE id = {a};\
                     UPDATE filler SET data = randomblob(4000) WHERE id = {filler};\
                     INSERT INTO transfers (src, dst, amount, pad) VALUES ({a}, {b}, {amount}, randomblob(300));\
                     UPDATE accounts SET balance = balance + {amount} WHERE id = {b};\
                     UPDATE counter SET n = n + 1;\
                     COMMIT;\n"
                );
                if stdin.write_all(sql.as_bytes()).is_err() {
                    return; // the shell stopped: `stop` reports why
                }
                // A steady load (up to a few hundred transactions a second), not a flood that
                // grows the database by gigabytes.
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        ShellWriter {
            child,
            stop,
            feeder: Some(feeder),
            path: path.to_path_buf(),
        }
    }
}

impl Writer for ShellWriter {
    fn stop(mut self: Box<Self>) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(f) = self.feeder.take() {
            f.join().expect("the writer's feeder panicked");
        }
        let status = crate::cli::wait_with_timeout(&mut self.child, Duration::from_secs(120));
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        assert!(
            status.success(),
            "the sqlite3 writer failed ({status}): {err}"
        );
        let c = open(&self.path);
        let n: i64 = c
            .query_row("SELECT n FROM counter", [], |r| r.get(0))
            .unwrap();
        n as u64
    }
}

impl Drop for ShellWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.feeder.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl DbFixture for SqliteFixture {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn url(&self, name: &str) -> String {
        format!("sqlite://{}", self.path(name).display())
    }

    fn unreachable_url(&self) -> String {
        format!(
            "sqlite://{}",
            self.dir
                .path()
                .join("no-such-folder")
                .join("app.db")
                .display()
        )
    }

    fn wrong_password_url(&self, _name: &str) -> Option<String> {
        None
    }

    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn create_empty(&self, name: &str) {
        let p = self.path(name);
        remove_db(&p);
        let c = open(&p);
        let mode: String = c
            .query_row(
                &format!("PRAGMA journal_mode = {}", self.journal_mode),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            mode,
            self.journal_mode,
            "set the journal mode of {}",
            p.display()
        );
    }

    fn load_awkward(&self, name: &str) {
        load_awkward_into(&self.open(name));
    }

    fn checksums(&self, name: &str) -> BTreeMap<String, String> {
        checksums_of(&self.open(name))
    }

    fn change_one(&self, name: &str) -> String {
        let c = self.open(name);
        let n = c
            .execute(
                "UPDATE numbers SET t = t || ' changed' WHERE id = (SELECT min(id) FROM numbers)",
                [],
            )
            .unwrap();
        assert_eq!(n, 1, "change one row of numbers");
        "numbers".into()
    }

    fn start_writer(&self, name: &str) -> Box<dyn Writer> {
        self.prepare_writer_tables(name);
        Box::new(ShellWriter::start(&self.path(name)))
    }

    fn check_consistent(&self, name: &str) {
        check_invariant(&self.path(name));
    }

    fn one_table(&self) -> Option<String> {
        Some("people".into())
    }
}
