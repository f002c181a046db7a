//! A real MariaDB server for tests (`mariadb-install-db --no-defaults`, then `mariadbd
//! --no-defaults --bind-address=127.0.0.1` on a free port, in a temporary folder), with a
//! password-protected test account, and the MySQL [`DbFixture`] of the shared database suite:
//! the awkward data set, per-table checksums, a transfer writer.
//!
//! [`MariaDbServer::shared`] starts one server per test process and stops it (by its process
//! id) when the process exits. A failing test prints the end of the error log of the servers it
//! used (see [`crate::server_logs`]).

pub use mysql_async;

use crate::db_suite::{DbFixture, Writer};
use crate::servers::{closed_port, free_port, ServerProcess, INSTALL_HINT};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tempfile::TempDir;

/// The test account (all privileges, with grant option).
pub const USER: &str = "coffer";
/// Its password.
pub const PASSWORD: &str = "s3cret-Pw#1";
/// Accounts the writer moves money between.
pub const ACCOUNTS: i64 = 100;
/// Their starting balance: the total stays `ACCOUNTS * START_BALANCE`.
pub const START_BALANCE: i64 = 1000;

/// A MariaDB server on 127.0.0.1.
pub struct MariaDbServer {
    process: ServerProcess,
    /// The port.
    pub port: u16,
    dir: TempDir,
}

fn find(name: &str, dirs: &[&str]) -> PathBuf {
    for d in dirs {
        let p = Path::new(d).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} is not installed (Debian package mariadb-server / mariadb-client): {INSTALL_HINT}"
    );
}

static SHARED: OnceLock<MariaDbServer> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(s) = SHARED.get() {
        let pgid = s.process.pid() as libc::pid_t;
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        s.process.logs().keep(s.process.pid());
        let _ = std::fs::remove_dir_all(s.dir.path());
    }
}

impl MariaDbServer {
    /// The server shared by every test of this process (started on first use, stopped when the
    /// process exits). A test calling this that fails prints the end of its error log.
    pub fn shared() -> &'static MariaDbServer {
        let s = SHARED.get_or_init(|| {
            let s = MariaDbServer::start();
            unsafe { libc::atexit(stop_shared) };
            s
        });
        s.process.logs().watch_from_this_thread();
        s
    }

    /// Starts a fresh server with the test account.
    pub fn start() -> MariaDbServer {
        let sbin = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];
        let install = find("mariadb-install-db", &sbin);
        let server = find("mariadbd", &sbin);
        find("mariadb", &sbin);
        find("mariadb-dump", &sbin);
        let dir = tempfile::Builder::new()
            .prefix("coffer-mariadb-")
            .tempdir()
            .expect("create a temporary folder");
        let d = dir.path();
        let out = Command::new(&install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", install.display()));
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut cmd = Command::new(&server);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--user=root")
            .arg(format!("--pid-file={}", d.join("pid").display()))
            // With an extension: mariadbd appends `.err` to a name without one.
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .args([
                "--innodb-buffer-pool-size=64M",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=0",
                "--max-allowed-packet=64M",
            ]);
        let mut process = ServerProcess::spawn("mariadbd", cmd, &d.join("out"));
        process.add_log(&d.join("error.log"));
        process.wait_for_port(port);
        let s = MariaDbServer { process, port, dir };
        s.root_sql(&format!(
            "CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';
             CREATE USER '{USER}'@'localhost' IDENTIFIED BY '{PASSWORD}';
             GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1' WITH GRANT OPTION;
             GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'localhost' WITH GRANT OPTION;"
        ));
        s
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// Runs SQL as root through the `mariadb` client on the socket.
    pub fn root_sql(&self, sql: &str) {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "-e", sql])
            .output()
            .expect("run the mariadb client");
        assert!(
            out.status.success(),
            "mariadb -e {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The server's error log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// `mysql://coffer@127.0.0.1:PORT/DB` (the password comes from `MYSQL_PWD`).
    pub fn url(&self, db: &str) -> String {
        format!("mysql://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Connection options for the test account, on database `db` (`""`: none).
    pub fn opts(&self, db: &str) -> OptsBuilder {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(USER))
            .pass(Some(PASSWORD))
            .prefer_socket(false)
            .db_name((!db.is_empty()).then(|| db.to_string()))
            .setup(vec![
                "SET NAMES utf8mb4".to_string(),
                "SET time_zone='+00:00'".to_string(),
            ])
    }

    /// Runs statements (separated by `;\n`, no procedures) in `db`.
    pub fn exec(&self, db: &str, sql: &str) {
        let stmts: Vec<String> = split(sql);
        let opts = self.opts(db);
        block(async move {
            let mut c = Conn::new(opts).await.expect("connect to the test MariaDB");
            for s in stmts {
                c.query_drop(s.as_str())
                    .await
                    .unwrap_or_else(|e| panic!("{s}: {e}"));
            }
            let _ = c.disconnect().await;
        })
    }

    /// The first column of every row of `sql` in `db`, as text (`NULL` for null).
    pub fn strings(&self, db: &str, sql: &str) -> Vec<String> {
        let sql = sql.to_string();
        self.rows(db, &sql)
            .into_iter()
            .map(|r| match r.as_ref(0) {
                Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::NULL) | None => "NULL".to_string(),
                Some(v) => v.as_sql(false),
            })
            .collect()
    }

    /// Every row of `sql` in `db`.
    pub fn rows(&self, db: &str, sql: &str) -> Vec<Row> {
        let sql = sql.to_string();
        let opts = self.opts(db);
        block(async move {
            let mut c = Conn::new(opts).await.expect("connect to the test MariaDB");
            let rows: Vec<Row> = c
                .query(sql.as_str())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = c.disconnect().await;
            rows
        })
    }
}

/// Runs `fut` to completion on the fixture's runtime, from a thread of its own (so fixtures
/// work from async tests too).
fn block<T: Send>(fut: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| runtime().block_on(fut))
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// Splits a script at `;` line ends.
fn split(sql: &str) -> Vec<String> {
    sql.split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches(';').to_string())
        .collect()
}

/// Every byte value, 0 to 255.
pub fn every_byte() -> Vec<u8> {
    (0..=255u8).collect()
}

/// A text of `n` bytes that does not repeat (so it does not compress to nothing).
pub fn long_text(n: usize) -> String {
    let mut s = String::with_capacity(n + 32);
    let mut i = 0u64;
    while s.len() < n {
        s.push_str(&format!("{:x} ", i.wrapping_mul(0x9E3779B97F4A7C15)));
        i += 1;
    }
    s.truncate(n);
    s
}

/// The awkward data set, for database `db` (which must exist).
pub fn load_awkward(server: &MariaDbServer, db: &str) {
    server.exec(
        db,
        "CREATE TABLE bin_data (id INT PRIMARY KEY, b LONGBLOB, vb VARBINARY(300), fixed BINARY(4), bits BIT(10));
         CREATE TABLE texts (id INT PRIMARY KEY AUTO_INCREMENT, s VARCHAR(200) CHARACTER SET utf8mb4, long_t LONGTEXT, latin VARCHAR(50) CHARACTER SET latin1, maybe VARCHAR(10) NULL) DEFAULT CHARSET=utf8mb4;
         CREATE TABLE nums (id INT PRIMARY KEY, d DECIMAL(38,10), big BIGINT, ubig BIGINT UNSIGNED, f FLOAT, dbl DOUBLE, tiny TINYINT, y YEAR);
         CREATE TABLE times (id INT PRIMARY KEY, dt DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, d DATE, t TIME(3));
         CREATE TABLE docs (id INT PRIMARY KEY, j JSON, e ENUM('a','b','ç'), s SET('x','y','z')) DEFAULT CHARSET=utf8mb4;
         CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(40)) DEFAULT CHARSET=utf8mb4;
         CREATE TABLE child (id INT PRIMARY KEY, parent_id INT NOT NULL, CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES parent(id) ON DELETE CASCADE);
         CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(100));
         CREATE TABLE gen (id INT PRIMARY KEY, a INT, b INT AS (a * 2) STORED, c INT AS (a + 1) VIRTUAL);
         CREATE TABLE zero_id (id INT AUTO_INCREMENT PRIMARY KEY, v INT);
         CREATE TABLE `odd name ü/x` (`we``ird col` INT, `select` VARCHAR(5));
         CREATE TABLE empty_table (id INT PRIMARY KEY);
         CREATE TABLE schema_migrations (version VARCHAR(20) PRIMARY KEY);
         CREATE TABLE no_pk (a INT, b VARCHAR(5));
         CREATE SEQUENCE seq;
         CREATE VIEW parent_names AS SELECT id, name FROM parent;
         CREATE VIEW child_count AS SELECT COUNT(*) AS n FROM child;
         CREATE FUNCTION add_one(x INT) RETURNS INT DETERMINISTIC RETURN x + 1;
         CREATE PROCEDURE parent_total(OUT n INT) SELECT COUNT(*) INTO n FROM parent;
         CREATE TRIGGER parent_audit AFTER INSERT ON parent FOR EACH ROW INSERT INTO audit (msg) VALUES (CONCAT('parent ', NEW.id));
         CREATE EVENT cleanup_audit ON SCHEDULE EVERY 1 DAY DO DELETE FROM audit WHERE id < 0",
    );
    let every = hex(&every_byte());
    let long = long_text(3 * 1024 * 1024 / 2);
    server.exec(
        db,
        &format!(
            "INSERT INTO bin_data VALUES (1, 0x{every}, 0x{every}, 0x00FF0A0D, b'1010101010'), (2, NULL, NULL, NULL, NULL), (3, '', '', 0x00000000, b'0');
             INSERT INTO texts (s, long_t, latin, maybe) VALUES ('emoji 😀🎉 über ñ 中文', 'x', 'café', NULL), ('quote '' back \\\\ nl \\n tab \\t nul \\0 ctrl-z \\Z', '{long}', 'naïve', 'x'), ('', '', '', '');
             INSERT INTO nums VALUES (1, 1234567890123456789012345678.0123456789, 9223372036854775807, 18446744073709551615, 1.5, 0.1, -128, 2155), (2, -0.0000000001, -9223372036854775808, 0, -3.25e-5, -1.7976931348623157e308, 127, 1901), (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
             SET time_zone = '+05:30';
             INSERT INTO times VALUES (1, '2024-02-29 23:59:59.999999', '2024-02-29 23:59:59.999999', '1000-01-01', '-838:59:59.000'), (2, '9999-12-31 23:59:59', '2038-01-19 03:14:07', '9999-12-31', '12:30:00.5'), (3, NULL, NULL, NULL, NULL);
             SET time_zone = '+00:00';
             INSERT INTO docs VALUES (1, '{{\"a\": [1, 2.5, null, true], \"s\": \"😀 \\\\\\\" q\"}}', 'ç', 'x,z'), (2, NULL, NULL, ''), (3, '[]', 'a', 'y');
             INSERT INTO parent VALUES (1, 'one'), (2, 'two 😀'), (3, NULL);
             INSERT INTO child VALUES (10, 1), (11, 1), (12, 2);
             INSERT INTO gen (id, a) VALUES (1, 5), (2, NULL);
             SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO';
             INSERT INTO zero_id VALUES (0, 1), (5, 2);
             INSERT INTO `odd name ü/x` VALUES (1, 'a'), (NULL, NULL);
             INSERT INTO schema_migrations VALUES ('20240101000000'), ('20250601120000');
             INSERT INTO no_pk VALUES (1, 'a'), (1, 'a'), (NULL, 'b');
             SELECT NEXTVAL(seq);
             SELECT NEXTVAL(seq)"
        ),
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn hash_row(row: &Row) -> String {
    let mut h = Sha256::new();
    for i in 0..row.len() {
        match row.as_ref(i) {
            Some(Value::Bytes(b)) => {
                h.update((b.len() as u64).to_le_bytes());
                h.update(b);
            }
            Some(Value::NULL) | None => h.update(b"\xffNULL"),
            Some(v) => h.update(v.as_sql(false).as_bytes()),
        }
    }
    hex::encode(h.finalize())
}

/// A digest of every base table's and view's rows (order-independent), keyed by name, plus one
/// entry, `(objects)`, listing
/// the database's routines, triggers, events, views and sequences with their definitions'
/// essentials.
pub fn checksums(server: &MariaDbServer, db: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let tables = server.rows(
        db,
        &format!(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA='{db}' ORDER BY TABLE_NAME"
        ),
    );
    for t in tables {
        let name: String = t.get(0).unwrap();
        let kind: String = t.get(1).unwrap();
        if kind == "SEQUENCE" {
            continue;
        }
        let quoted = format!("`{}`", name.replace('`', "``"));
        let mut rows: Vec<String> = server
            .rows(db, &format!("SELECT * FROM {quoted}"))
            .iter()
            .map(hash_row)
            .collect();
        rows.sort();
        let mut h = Sha256::new();
        for r in &rows {
            h.update(r.as_bytes());
        }
        out.insert(
            name,
            format!("{kind}, {} rows, {}", rows.len(), hex::encode(h.finalize())),
        );
    }
    let objects = [
        format!("SELECT CONCAT('routine ', ROUTINE_NAME, ' ', ROUTINE_TYPE, ' ', ROUTINE_DEFINITION) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='{db}'"),
        format!("SELECT CONCAT('trigger ', TRIGGER_NAME, ' ', EVENT_OBJECT_TABLE, ' ', ACTION_TIMING, ' ', EVENT_MANIPULATION, ' ', ACTION_STATEMENT) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='{db}'"),
        format!("SELECT CONCAT('event ', EVENT_NAME, ' ', EVENT_DEFINITION) FROM information_schema.EVENTS WHERE EVENT_SCHEMA='{db}'"),
        format!("SELECT CONCAT('view ', TABLE_NAME) FROM information_schema.VIEWS WHERE TABLE_SCHEMA='{db}'"),
        format!("SELECT CONCAT('sequence ', TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA='{db}' AND TABLE_TYPE='SEQUENCE'"),
        format!("SELECT CONCAT('fk ', CONSTRAINT_NAME, ' ', TABLE_NAME, ' ', REFERENCED_TABLE_NAME) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA='{db}'"),
    ];
    let mut defs = Vec::new();
    for q in objects {
        defs.extend(server.strings(db, &q));
    }
    defs.sort();
    if !defs.is_empty() {
        out.insert("(objects)".to_string(), defs.join("\n"));
    }
    out
}

/// The MySQL fixture of the shared suite, on the shared server.
pub struct MariaDbFixture {
    server: &'static MariaDbServer,
}

impl Default for MariaDbFixture {
    fn default() -> Self {
        MariaDbFixture::new()
    }
}

impl MariaDbFixture {
    /// The fixture on [`MariaDbServer::shared`].
    pub fn new() -> MariaDbFixture {
        MariaDbFixture {
            server: MariaDbServer::shared(),
        }
    }

    /// The server.
    pub fn server(&self) -> &'static MariaDbServer {
        self.server
    }
}

impl DbFixture for MariaDbFixture {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn url(&self, name: &str) -> String {
        self.server.url(name)
    }

    fn unreachable_url(&self) -> String {
        format!("mysql://{USER}@127.0.0.1:{}/app", closed_port())
    }

    fn wrong_password_url(&self, name: &str) -> Option<String> {
        Some(format!(
            "mysql://{USER}:not-the-password@127.0.0.1:{}/{name}",
            self.server.port
        ))
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("MYSQL_PWD".to_string(), PASSWORD.to_string())]
    }

    fn create_empty(&self, name: &str) {
        self.server.exec(
            "",
            &format!(
                "DROP DATABASE IF EXISTS `{name}`;\nCREATE DATABASE `{name}` CHARACTER SET utf8mb4"
            ),
        );
    }

    fn load_awkward(&self, name: &str) {
        load_awkward(self.server, name);
    }

    fn checksums(&self, name: &str) -> BTreeMap<String, String> {
        checksums(self.server, name)
    }

    fn change_one(&self, name: &str) -> String {
        self.server.exec(
            name,
            "UPDATE texts SET s = CONCAT(s, ' changed') WHERE id = 1",
        );
        "texts".to_string()
    }

    fn start_writer(&self, name: &str) -> Box<dyn Writer> {
        Box::new(TransferWriter::start(self.server, name))
    }

    fn check_consistent(&self, name: &str) {
        check_transfers(self.server, name);
    }

    fn one_table(&self) -> Option<String> {
        Some("parent".to_string())
    }
}

/// Creates the writer's tables in `db` (accounts, transfers, a counter, and some filler so
/// a backup takes a while), when missing.
pub fn prepare_writer_tables(server: &MariaDbServer, db: &str) {
    let exists = server.strings(
        db,
        &format!("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='{db}' AND TABLE_NAME='accounts'"),
    );
    if exists[0] != "0" {
        return;
    }
    server.exec(
        db,
        &format!(
            "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL);
             CREATE TABLE transfers (id BIGINT AUTO_INCREMENT PRIMARY KEY, src INT, dst INT, amount BIGINT, pad VARBINARY(200));
             CREATE TABLE counter (id INT PRIMARY KEY, n BIGINT NOT NULL);
             CREATE TABLE filler (id INT PRIMARY KEY, data LONGBLOB);
             INSERT INTO counter VALUES (1, 0);
             INSERT INTO accounts SELECT seq, {START_BALANCE} FROM seq_1_to_{ACCOUNTS};
             INSERT INTO filler SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_8000"
        ),
    );
}

/// Panics unless the writer's invariant holds in `db`: the balances sum to their starting
/// total and the counter equals the number of transfers.
pub fn check_transfers(server: &MariaDbServer, db: &str) {
    let sum = server.strings(db, "SELECT SUM(balance) FROM accounts");
    assert_eq!(
        sum[0],
        (ACCOUNTS * START_BALANCE).to_string(),
        "the balances of {db} do not add up: a transaction was half seen"
    );
    let transfers = server.strings(db, "SELECT COUNT(*) FROM transfers");
    let counter = server.strings(db, "SELECT n FROM counter");
    assert_eq!(
        transfers, counter,
        "{db}: the transfer count and the counter differ: a transaction was half seen"
    );
}

/// A thread committing transfers between accounts, one transaction each.
pub struct TransferWriter {
    stop: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TransferWriter {
    /// Starts writing into `db` (creating the writer's tables first when missing).
    pub fn start(server: &MariaDbServer, db: &str) -> TransferWriter {
        prepare_writer_tables(server, db);
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicU64::new(0));
        let opts = server.opts(db);
        let (s, c) = (stop.clone(), commits.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let mut conn = Conn::new(opts).await.expect("writer connects");
                let mut i: i64 = 0;
                while !s.load(Ordering::SeqCst) {
                    i += 1;
                    let src = i % ACCOUNTS + 1;
                    let dst = (i * 7 + 3) % ACCOUNTS + 1;
                    let amount = i % 50 + 1;
                    let sql = format!(
                        "START TRANSACTION;
                         UPDATE accounts SET balance = balance - {amount} WHERE id = {src};
                         INSERT INTO transfers (src, dst, amount, pad) VALUES ({src}, {dst}, {amount}, RANDOM_BYTES(100));
                         UPDATE accounts SET balance = balance + {amount} WHERE id = {dst};
                         UPDATE counter SET n = n + 1 WHERE id = 1;
                         COMMIT"
                    );
                    for stmt in split(&sql) {
                        conn.query_drop(stmt).await.expect("writer statement");
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let _ = conn.disconnect().await;
            });
        });
        TransferWriter {
            stop,
            commits,
            thread: Some(thread),
        }
    }
}

impl Writer for TransferWriter {
    fn stop(mut self: Box<Self>) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("the writer thread panicked");
        }
        self.commits.load(Ordering::SeqCst)
    }
}

impl Drop for TransferWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
