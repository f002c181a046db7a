//! A real PostgreSQL server for tests, and its [`DbFixture`] for the shared database suite.
//!
//! [`PgServer::start`] runs `initdb` and `postgres` from the installed server package
//! (`/usr/lib/postgresql/NN/bin`, the newest; `COFFER_TEST_PG_BIN` overrides) in a temporary
//! folder, listening on 127.0.0.1 only, with password (SCRAM) authentication over TCP. When the
//! tests run as root, the server runs as the `postgres` user (or `nobody`), as it refuses root.
//! [`shared`] starts one server per test process, stopped when the process exits. A failing
//! test prints the end of the log of the servers it used (see [`crate::server_logs`]).

use crate::db_suite::{DbFixture, Writer};
use crate::servers::{closed_port, free_port, ServerProcess, INSTALL_HINT};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The superuser's password on test servers.
pub const PASSWORD: &str = "pg-test-Secret-42";

/// The superuser on test servers.
pub const USER: &str = "postgres";

/// The folder holding `initdb`, `postgres`, `psql`, `pg_dump` (newest installed version).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("COFFER_TEST_PG_BIN") {
        return PathBuf::from(d);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb): {INSTALL_HINT}"
        ),
    }
}

/// A running PostgreSQL server in a temporary folder.
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    process: Option<ServerProcess>,
}

fn run_as_user() -> Option<(String, u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(u)) = nix::unistd::User::from_name(name) {
            return Some((name.to_string(), u.uid.as_raw(), u.gid.as_raw()));
        }
    }
    panic!("tests run as root and there is no postgres or nobody user to run PostgreSQL as");
}

fn as_user(user: &Option<(String, u32, u32)>, program: &Path) -> Command {
    match user {
        Some((name, _, _)) => {
            let mut c = Command::new("runuser");
            c.args(["-u", name, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl PgServer {
    /// Starts a server (panics with the install command when PostgreSQL is missing).
    pub fn start() -> PgServer {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let bin = bin_dir();
        let user = run_as_user();
        let dir = std::env::temp_dir().join(format!(
            "coffer-pg-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the server folder");
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).expect("write the password file");
        if let Some((_, uid, gid)) = &user {
            for p in [&dir, &pwfile] {
                std::os::unix::fs::chown(p, Some(*uid), Some(*gid))
                    .expect("chown the server folder");
            }
        }
        let out = as_user(&user, &bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}; {INSTALL_HINT}"));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut cmd = as_user(&user, &bin.join("postgres"));
        cmd.arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=60",
            ]);
        let mut process = ServerProcess::spawn("postgres", cmd, &dir.join("log"));
        process.wait_for_port(port);
        let server = PgServer {
            dir,
            port,
            bin,
            process: Some(process),
        };
        let start = Instant::now();
        loop {
            match server.try_psql("postgres", "SELECT 1") {
                Ok(_) => break,
                Err(e) if start.elapsed() > Duration::from_secs(30) => {
                    panic!("PostgreSQL did not accept connections: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        server
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's binaries folder (`psql`, `pg_dump`, ...).
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `postgres://postgres@127.0.0.1:PORT/db` (the password is in [`PgServer::env`]).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The environment giving a client the password (`PGPASSWORD`).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("PGPASSWORD".to_string(), PASSWORD.to_string())]
    }

    /// A `psql` (or other client tool) command connected to `db`.
    pub fn tool(&self, name: &str, db: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        c.env("PGPASSWORD", PASSWORD)
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", USER)
            .env("PGDATABASE", db)
            .env_remove("PGPASSFILE");
        c
    }

    /// Runs `sql` in `db` with psql (`-At`, stop on the first error); returns its output.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut child = self
            .tool("psql", db)
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-F",
                "|",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run psql: {e}; {INSTALL_HINT}"))?;
        let mut stdin = child.stdin.take().expect("piped");
        let sql = sql.to_string();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(sql.as_bytes());
        });
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let _ = feeder.join();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Like [`PgServer::try_psql`], panicking on failure.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        match self.try_psql(db, sql) {
            Ok(s) => s,
            Err(e) => panic!(
                "psql in {db} failed: {e}\nSQL: {}",
                sql.chars().take(400).collect::<String>()
            ),
        }
    }

    /// Drops `db` (closing its connections) and creates it empty.
    pub fn create_empty(&self, db: &str) {
        let q = format!("\"{}\"", db.replace('"', "\"\""));
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {q} WITH (FORCE);\nCREATE DATABASE {q};"),
        );
    }

    /// Drops `db` if it exists.
    pub fn drop_db(&self, db: &str) {
        let q = format!("\"{}\"", db.replace('"', "\"\""));
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {q} WITH (FORCE);"),
        );
    }

    /// Whether database `db` exists.
    pub fn exists(&self, db: &str) -> bool {
        let lit = db.replace('\'', "''");
        self.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{lit}'"),
        )
        .trim()
            == "1"
    }

    fn stop(&mut self) {
        stop_postmaster(&self.dir);
        self.process.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Immediate shutdown of the postmaster whose data folder is `dir/data`.
fn stop_postmaster(dir: &Path) {
    let pid = std::fs::read_to_string(dir.join("data/postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
    if let Some(pid) = pid {
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && unsafe { libc::kill(pid, 0) } == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // The log as the failure left it, before the shutdown adds to it.
        if let Some(p) = &self.process {
            p.logs().print_if_panicking();
        }
        self.stop();
    }
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(s) = SHARED.get() {
        stop_postmaster(&s.dir);
        if let Some(p) = &s.process {
            p.logs().keep(p.pid());
        }
        let _ = std::fs::remove_dir_all(&s.dir);
    }
}

/// One server for the whole test process (started on first use, stopped when the process
/// exits). A test calling this that fails prints the end of the server's log.
pub fn shared() -> &'static PgServer {
    let s = SHARED.get_or_init(|| {
        let s = PgServer::start();
        unsafe { libc::atexit(stop_shared) };
        s
    });
    if let Some(p) = &s.process {
        p.logs().watch_from_this_thread();
    }
    s
}

/// The awkward data set: every byte value, NULLs, unicode and emoji, very long text, exact
/// numerics, time zones, arrays, JSON, several schemas, odd names, views, a materialized view,
/// sequences, identity columns, foreign keys, triggers, a partitioned table, a table without
/// columns, an unlogged table, large objects, a schema version table, and a small bank.
pub const AWKWARD_SQL: &str = r#"
CREATE SCHEMA app;
CREATE SCHEMA "Weird Schema";
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN app.positive AS numeric CHECK (VALUE >= 0);
CREATE TABLE app.customers (
  id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, note text, mood app.mood,
  created timestamptz DEFAULT '2024-01-01 00:00:00+00');
INSERT INTO app.customers (name, email, note, mood, created)
  SELECT 'customer ' || i, 'c' || i || '@example.com',
         CASE WHEN i % 3 = 0 THEN NULL ELSE repeat('x', i) END,
         (ARRAY['sad', 'ok', 'happy'])[1 + i % 3]::app.mood,
         timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour 7 minutes 3.25 seconds'
  FROM generate_series(1, 500) i;
INSERT INTO app.customers (name, email, note, created) VALUES
  ('Zoë 😀 日本語 עברית', NULL, E'tab\there\nnew line\r\\backslash "double" ''single'' \\N', '2024-03-10 02:30:00 America/New_York'),
  ('', NULL, repeat('long text 🚀 ', 150000), '1999-12-31 23:59:59.999999+14'),
  ('\N', 'null-lookalike', 'NULL', 'infinity');
CREATE TABLE app.orders (
  id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES app.customers (id),
  amount numeric(20, 6) NOT NULL, exact numeric, price app.positive, placed timestamptz NOT NULL,
  tags text[], matrix int[][], meta jsonb, raw json, ratio double precision,
  total numeric GENERATED ALWAYS AS (amount * 2) STORED);
CREATE INDEX orders_customer_idx ON app.orders (customer_id);
CREATE INDEX orders_meta_idx ON app.orders USING gin (meta);
INSERT INTO app.orders (customer_id, amount, exact, price, placed, tags, matrix, meta, raw, ratio)
  SELECT 1 + i % 500, (i * 1.000001)::numeric(20, 6),
         12345678901234567890.123456789012345678901234567890 * i, i / 3.0,
         timestamptz '2023-06-01 12:00:00+05:30' + i * interval '37 minutes',
         ARRAY['a', 'b c', NULL, '{"x"}', 'ü,;'], ARRAY[[i, 2], [3, NULL]],
         jsonb_build_object('i', i, 'nested', jsonb_build_object('arr', jsonb_build_array(1, 'two', NULL, 3.5e10))),
         '{"dup": 1, "dup": 2, "s": "\u00e9"}', i * 0.1
  FROM generate_series(1, 3000) i;
INSERT INTO app.orders (customer_id, amount, exact, placed, ratio) VALUES
  (1, 0, 'NaN', '2000-01-01 00:00:00-08', 'NaN'), (2, -1.5, '-0.000000000000000000000001', '2000-01-01', 'Infinity'),
  (3, 99999999999999.999999, 1e-100, '0001-01-01 00:00:00+00', '-Infinity'), (4, 1, 0, '2038-01-19 03:14:08+00', -0.0);
CREATE TABLE app.blobs (id int PRIMARY KEY, data bytea, nothing text);
INSERT INTO app.blobs SELECT 1, string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea ORDER BY b), NULL FROM generate_series(0, 255) b;
INSERT INTO app.blobs SELECT 2, string_agg(set_byte('\x00'::bytea, 0, 255 - b % 256), ''::bytea ORDER BY b), '' FROM generate_series(0, 70000) b;
INSERT INTO app.blobs VALUES (3, ''::bytea, ''), (4, NULL, NULL), (5, '\x5c4e0a0d09', E'\\N');
INSERT INTO app.blobs SELECT 100 + i, decode(md5(i::text) || md5((i * 7)::text), 'hex'), NULL FROM generate_series(1, 200) i;
CREATE TABLE "Weird Schema"."Mixed Case/Table.name" ("Col A" text, "select" int, "ü" text);
INSERT INTO "Weird Schema"."Mixed Case/Table.name" VALUES (E'a\\b', 1, 'ß'), (NULL, NULL, NULL), ('%2F..', 2, '');
CREATE TABLE app.measurements (id bigint GENERATED ALWAYS AS IDENTITY, at date NOT NULL, value double precision,
  PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE app.measurements_2024 PARTITION OF app.measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE app.measurements_2025 PARTITION OF app.measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX measurements_at_idx ON app.measurements (at);
INSERT INTO app.measurements (at, value) SELECT date '2024-01-01' + (i % 700), i / 7.0 FROM generate_series(1, 2000) i;
CREATE TABLE app.no_columns ();
INSERT INTO app.no_columns DEFAULT VALUES; INSERT INTO app.no_columns DEFAULT VALUES;
CREATE UNLOGGED TABLE app.cache (k text PRIMARY KEY, v text);
INSERT INTO app.cache VALUES ('k1', 'v1'), ('k2', NULL);
CREATE TABLE app.empty (id int PRIMARY KEY);
CREATE VIEW app.big_orders AS SELECT id, customer_id, amount FROM app.orders WHERE amount > 1000;
CREATE MATERIALIZED VIEW app.order_totals AS
  SELECT customer_id, sum(amount) AS total, count(*) AS n FROM app.orders GROUP BY customer_id;
CREATE UNIQUE INDEX order_totals_customer ON app.order_totals (customer_id);
CREATE SEQUENCE app.invoice_no START 1000;
SELECT count(nextval('app.invoice_no')) FROM generate_series(1, 42);
CREATE SEQUENCE app.never_used;
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.note := coalesce(NEW.note, ''); RETURN NEW; END $$;
CREATE TRIGGER customers_touch BEFORE UPDATE ON app.customers FOR EACH ROW EXECUTE FUNCTION app.touch();
COMMENT ON TABLE app.orders IS 'orders: ünïcode comment; with ''quotes''';
COMMENT ON COLUMN app.orders.amount IS 'the amount';
SELECT lo_from_bytea(424242, convert_to(repeat('large object ', 100000), 'UTF8'));
SELECT lo_from_bytea(424243, (SELECT string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea ORDER BY b) FROM generate_series(0, 255) b));
SELECT lo_create(424244);
CREATE TABLE public.schema_migrations (version varchar PRIMARY KEY);
INSERT INTO public.schema_migrations VALUES ('20240101000000'), ('20240202000000');
CREATE SCHEMA bank;
CREATE TABLE bank.accounts (id int PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO bank.accounts SELECT i, 1000 FROM generate_series(1, 50) i;
CREATE TABLE bank.transfers (id bigserial PRIMARY KEY, src int NOT NULL REFERENCES bank.accounts,
  dst int NOT NULL REFERENCES bank.accounts, amount bigint NOT NULL);
CREATE INDEX transfers_src_idx ON bank.transfers (src);
ANALYZE;
"#;

/// Every user relation of `db` with its kind (`r`, `p`, `v`, `m`, `S`), as
/// `(quoted name, display name, kind)`.
fn relations(server: &PgServer, db: &str) -> Vec<(String, String, String)> {
    server
        .psql(
            db,
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
               n.nspname || '.' || c.relname, c.relkind FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 2",
        )
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, '|');
            Some((it.next()?.into(), it.next()?.into(), it.next()?.into()))
        })
        .collect()
}

/// A digest of every table, view, materialized view and sequence of `db`, and of its large
/// objects: `name -> "md5:rows"` (rows ordered by their text, byte-wise).
pub fn checksums(server: &PgServer, db: &str) -> BTreeMap<String, String> {
    let rels = relations(server, db);
    let mut sql = String::new();
    for (quoted, shown, kind) in &rels {
        let lit = shown.replace('\'', "''");
        if kind == "S" {
            sql.push_str(&format!(
                "SELECT '{lit}', last_value::text || ',' || is_called::text FROM {quoted};\n"
            ));
        } else {
            let only = if kind == "r" { "ONLY " } else { "" };
            sql.push_str(&format!(
                "SELECT '{lit}', md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), '')) \
                 || ':' || count(*) FROM {only}{quoted} t;\n"
            ));
        }
    }
    sql.push_str(
        "SELECT 'large objects', coalesce(md5(string_agg(oid::text || ':' || md5(lo_get(oid)), ',' ORDER BY oid)), '') \
         || ':' || count(*) FROM pg_largeobject_metadata;\n",
    );
    server
        .psql(db, &sql)
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The bank's transfer writer.
struct BankWriter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Writer for BankWriter {
    fn stop(mut self: Box<Self>) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("one stop")
            .join()
            .expect("the writer panicked")
    }
}

/// Starts a writer moving money between `bank.accounts` in `db` (one transaction per transfer:
/// two updates and a `bank.transfers` row), creating the bank when it is missing.
pub fn start_bank_writer(server: &PgServer, db: &str) -> Box<dyn Writer> {
    server.psql(
        db,
        "CREATE SCHEMA IF NOT EXISTS bank;
         CREATE TABLE IF NOT EXISTS bank.accounts (id int PRIMARY KEY, balance bigint NOT NULL);
         INSERT INTO bank.accounts SELECT i, 1000 FROM generate_series(1, 50) i ON CONFLICT DO NOTHING;
         CREATE TABLE IF NOT EXISTS bank.transfers (id bigserial PRIMARY KEY, src int NOT NULL REFERENCES bank.accounts,
           dst int NOT NULL REFERENCES bank.accounts, amount bigint NOT NULL);",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let conn = format!(
        "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname={db}",
        server.port()
    );
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .expect("the writer connects");
            tokio::spawn(connection);
            let mut n = 0u64;
            let mut i = 0i32;
            while !flag.load(Ordering::SeqCst) {
                i += 1;
                let (src, dst, amount) = (1 + i % 50, 1 + (i * 7 + 3) % 50, (i % 13 + 1) as i64);
                if src == dst {
                    continue;
                }
                let sql = format!(
                    "BEGIN; UPDATE bank.accounts SET balance = balance - {amount} WHERE id = {src};
                     UPDATE bank.accounts SET balance = balance + {amount} WHERE id = {dst};
                     INSERT INTO bank.transfers (src, dst, amount) VALUES ({src}, {dst}, {amount}); COMMIT;"
                );
                client.batch_execute(&sql).await.expect("a transfer");
                n += 1;
            }
            n
        })
    });
    Box::new(BankWriter {
        stop,
        thread: Some(thread),
    })
}

/// Panics unless the bank in `db` balances: the total is unchanged and every account's balance
/// matches the transfers recorded.
pub fn check_bank(server: &PgServer, db: &str) {
    let out = server.psql(
        db,
        "SELECT (SELECT sum(balance) FROM bank.accounts), (SELECT count(*) FROM bank.accounts),
           (SELECT count(*) FROM bank.accounts a WHERE a.balance <> 1000
              - coalesce((SELECT sum(amount) FROM bank.transfers WHERE src = a.id), 0)
              + coalesce((SELECT sum(amount) FROM bank.transfers WHERE dst = a.id), 0)),
           (SELECT count(*) FROM bank.transfers)",
    );
    let f: Vec<i64> = out
        .trim()
        .split('|')
        .map(|v| v.parse().unwrap_or(-1))
        .collect();
    assert_eq!(f.len(), 4, "unexpected bank query output {out:?}");
    assert_eq!(f[0], f[1] * 1000, "the bank's total changed: {out}");
    assert_eq!(f[2], 0, "accounts disagree with the transfers: {out}");
}

/// The shared suite's PostgreSQL fixture, on the process's shared server.
pub struct PgFixture {
    server: &'static PgServer,
}

impl PgFixture {
    /// A fixture on [`shared`].
    pub fn new() -> PgFixture {
        PgFixture { server: shared() }
    }

    /// The server.
    pub fn server(&self) -> &'static PgServer {
        self.server
    }
}

impl Default for PgFixture {
    fn default() -> Self {
        PgFixture::new()
    }
}

impl DbFixture for PgFixture {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    fn url(&self, name: &str) -> String {
        self.server.url(name)
    }
    fn unreachable_url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/app", closed_port())
    }
    fn wrong_password_url(&self, name: &str) -> Option<String> {
        Some(format!(
            "postgres://{USER}:not-the-password@127.0.0.1:{}/{name}",
            self.server.port()
        ))
    }
    fn env(&self) -> Vec<(String, String)> {
        self.server.env()
    }
    fn create_empty(&self, name: &str) {
        self.server.create_empty(name)
    }
    fn load_awkward(&self, name: &str) {
        self.server.psql(name, AWKWARD_SQL);
    }
    fn checksums(&self, name: &str) -> BTreeMap<String, String> {
        checksums(self.server, name)
    }
    fn change_one(&self, name: &str) -> String {
        self.server.psql(
            name,
            "UPDATE app.customers SET name = name || ' (changed)' WHERE id % 2 = 0",
        );
        "app.customers".to_string()
    }
    fn start_writer(&self, name: &str) -> Box<dyn Writer> {
        start_bank_writer(self.server, name)
    }
    fn check_consistent(&self, name: &str) {
        check_bank(self.server, name)
    }
    fn one_table(&self) -> Option<String> {
        Some("app.orders".to_string())
    }
}
