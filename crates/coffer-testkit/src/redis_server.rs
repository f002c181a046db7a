//! A real Redis server for tests ([`RedisServer`]: Debian's `redis-server`, on 127.0.0.1, in a
//! temporary folder, persistence off, stopped by process id on drop) and the Redis
//! [`DbFixture`] of the shared database suite ([`RedisFixture`]), with Redis's awkward data set:
//! every byte value, big strings, every encoding of lists, sets, sorted sets and hashes,
//! streams with consumer groups, TTLs. With [`RedisOptions::tls`] the server also serves TLS
//! (`--tls-port`) with a throwaway CA and certificates made by the `openssl` CLI ([`TestPki`]).

use crate::db_suite::{DbFixture, Writer};
use crate::servers::{closed_port, free_port, ServerProcess, INSTALL_HINT};
use redis::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tempfile::TempDir;

/// Looks for a Redis program (`redis-server`, `redis-check-rdb`, `redis-cli`) on PATH and in
/// Debian's location; panics with the install hint when it is missing.
pub fn redis_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/bin"));
    dirs.push(PathBuf::from("/usr/local/bin"));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} is not installed (Debian packages redis-server and redis-tools): {INSTALL_HINT}"
    );
}

/// How a [`RedisServer`] is started.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `requirepass`.
    pub password: Option<String>,
    /// Send snapshots to replicas from a file on disk (`repl-diskless-sync no`) instead of
    /// straight over the socket.
    pub disk_sync: bool,
    /// An RDB file to load at start (`--dbfilename`; the file is copied into the server's
    /// folder).
    pub load_rdb: Option<PathBuf>,
    /// Also serve TLS on [`RedisServer::tls_port`] (`--tls-port`), with a server certificate
    /// for `127.0.0.1` and `localhost` signed by a throwaway CA ([`RedisServer::pki`]). The
    /// plain port stays open on 127.0.0.1 for the harness's own connections
    /// ([`RedisServer::conn`]).
    pub tls: bool,
    /// With `tls`: require a client certificate signed by the test CA
    /// (`--tls-auth-clients yes`; [`TestPki::client_cert`]).
    pub tls_auth_clients: bool,
}

/// A throwaway certificate authority and the certificates it signed, made with the `openssl`
/// CLI (EC P-256, valid for a week): PEM files in a test's folder.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA's certificate (`?tls_ca=`).
    pub ca: PathBuf,
    /// The server's certificate, for `IP:127.0.0.1` and `DNS:localhost`.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// A client certificate (`?tls_cert=`).
    pub client_cert: PathBuf,
    /// The client certificate's private key (`?tls_key=`).
    pub client_key: PathBuf,
}

impl TestPki {
    /// Makes a CA and a server and client certificate in `dir`; panics with the install hint
    /// when `openssl` is missing.
    pub fn create(dir: &Path) -> TestPki {
        std::fs::create_dir_all(dir).expect("create the certificate folder");
        let cnf = dir.join("openssl.cnf");
        std::fs::write(
            &cnf,
            "[req]\ndistinguished_name = dn\nx509_extensions = v3_ca\nprompt = no\n\
             [dn]\nCN = Coffer test CA\n\
             [v3_ca]\nbasicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n\
             [server]\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n\
             basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = serverAuth\n\
             [client]\nbasicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n",
        )
        .expect("write openssl.cnf");
        let p = |name: &str| dir.join(name);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(dir, |c| {
            c.args(["req", "-x509", "-new", "-config"])
                .arg(&cnf)
                .args(ec)
                .args(["-days", "7", "-keyout", "ca.key", "-out", "ca.pem"]);
        });
        for (who, cn) in [("server", "localhost"), ("client", "coffer-test-client")] {
            openssl(dir, |c| {
                c.args(["req", "-new", "-config"])
                    .arg(&cnf)
                    .args(ec)
                    .args(["-subj", &format!("/CN={cn}")])
                    .args(["-keyout", &format!("{who}.key")])
                    .args(["-out", &format!("{who}.csr")]);
            });
            openssl(dir, |c| {
                c.args(["x509", "-req", "-in", &format!("{who}.csr")])
                    .args(["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"])
                    .args(["-days", "7", "-extfile"])
                    .arg(&cnf)
                    .args(["-extensions", who, "-out", &format!("{who}.pem")]);
            });
        }
        TestPki {
            ca: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
        }
    }
}

/// Runs `openssl` in `dir` with the arguments `args` adds; panics with its output on failure.
fn openssl(dir: &Path, args: impl FnOnce(&mut Command)) {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir);
    args(&mut cmd);
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run openssl (Debian package openssl): {e}; {INSTALL_HINT}")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `redis-server`.
pub struct RedisServer {
    process: ServerProcess,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its `requirepass`, if any.
    pub password: Option<String>,
    /// Its TLS port on 127.0.0.1 (with [`RedisOptions::tls`]).
    pub tls_port: Option<u16>,
    /// The CA and certificates of its TLS port (with [`RedisOptions::tls`]).
    pub pki: Option<TestPki>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server without a password.
    pub fn start() -> RedisServer {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a server as `opts` says: `redis-server --port P --bind 127.0.0.1 --dir D
    /// --save '' --appendonly no --daemonize no --databases 64`, and
    /// `--repl-diskless-sync-delay 0` so a snapshot starts at once (Redis's default waits 5 s
    /// for more replicas).
    pub fn start_with(opts: RedisOptions) -> RedisServer {
        let bin = redis_bin("redis-server");
        let dir = tempfile::Builder::new()
            .prefix("coffer-redis-")
            .tempdir()
            .expect("create a temporary folder");
        let port = free_port();
        let mut cmd = Command::new(bin);
        let mut tls = None;
        if opts.tls {
            let pki = TestPki::create(&dir.path().join("pki"));
            let tls_port = loop {
                let p = free_port();
                if p != port {
                    break p;
                }
            };
            cmd.args(["--tls-port", &tls_port.to_string()])
                .arg("--tls-cert-file")
                .arg(&pki.server_cert)
                .arg("--tls-key-file")
                .arg(&pki.server_key)
                .arg("--tls-ca-cert-file")
                .arg(&pki.ca)
                .args([
                    "--tls-auth-clients",
                    if opts.tls_auth_clients { "yes" } else { "no" },
                ]);
            tls = Some((tls_port, pki));
        }
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--databases", "64", "--repl-diskless-sync-delay", "0"])
            .args(["--logfile", ""]);
        if opts.disk_sync {
            cmd.args(["--repl-diskless-sync", "no"]);
        }
        if let Some(pw) = &opts.password {
            cmd.args(["--requirepass", pw]);
        }
        if let Some(rdb) = &opts.load_rdb {
            std::fs::copy(rdb, dir.path().join("load.rdb")).expect("copy the RDB file");
            cmd.args(["--dbfilename", "load.rdb"]);
        }
        let mut process = ServerProcess::spawn("redis-server", cmd, &dir.path().join("log"));
        process.wait_for_port(port);
        if let Some((tls_port, _)) = &tls {
            process.wait_for_port(*tls_port);
        }
        let (tls_port, pki) = match tls {
            Some((p, k)) => (Some(p), Some(k)),
            None => (None, None),
        };
        let server = RedisServer {
            process,
            port,
            password: opts.password,
            tls_port,
            pki,
            dir,
        };
        // The port opens before an RDB file is loaded: wait until it answers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match redis::cmd("PING").query::<String>(&mut server.try_conn(0)) {
                Ok(_) => break,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("redis-server does not answer: {e}; log:\n{}", server.log())
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
        server
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its output so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `redis://127.0.0.1:PORT/DB`, without the password.
    pub fn url(&self, db: Option<u32>) -> String {
        match db {
            Some(d) => format!("redis://127.0.0.1:{}/{d}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The URL with the password in it (when the server has one).
    pub fn url_with_password(&self, db: Option<u32>) -> String {
        let plain = self.url(db);
        match &self.password {
            Some(pw) => plain.replacen("redis://", &format!("redis://:{pw}@"), 1),
            None => plain,
        }
    }

    /// `rediss://127.0.0.1:TLS_PORT/DB`, without the password or any TLS option (so the
    /// test CA is not trusted). Panics when the server has no TLS port.
    pub fn tls_url_untrusted(&self, db: Option<u32>) -> String {
        let port = self
            .tls_port
            .expect("the server was started without RedisOptions::tls");
        match db {
            Some(d) => format!("rediss://127.0.0.1:{port}/{d}"),
            None => format!("rediss://127.0.0.1:{port}"),
        }
    }

    /// `rediss://127.0.0.1:TLS_PORT/DB?tls_ca=CA.pem`, trusting the test CA, without the
    /// password.
    pub fn tls_url(&self, db: Option<u32>) -> String {
        let ca = &self.pki.as_ref().expect("a TLS server has a CA").ca;
        format!("{}?tls_ca={}", self.tls_url_untrusted(db), ca.display())
    }

    /// [`RedisServer::tls_url`] with the password in it (when the server has one).
    pub fn tls_url_with_password(&self, db: Option<u32>) -> String {
        let plain = self.tls_url(db);
        match &self.password {
            Some(pw) => plain.replacen("rediss://", &format!("rediss://:{pw}@"), 1),
            None => plain,
        }
    }

    fn try_conn(&self, db: u32) -> redis::Connection {
        let client = redis::Client::open(self.url_with_password(Some(db))).expect("redis URL");
        client
            .get_connection()
            .unwrap_or_else(|e| panic!("connect to redis on port {}: {e}", self.port))
    }

    /// A connection to db `db`.
    pub fn conn(&self, db: u32) -> redis::Connection {
        self.try_conn(db)
    }

    /// `DBSIZE` of every db that holds keys.
    pub fn dbsizes(&self) -> BTreeMap<u32, u64> {
        let mut c = self.conn(0);
        let text: String = redis::cmd("INFO").arg("keyspace").query(&mut c).unwrap();
        let mut out = BTreeMap::new();
        for line in text.lines() {
            if let Some((db, rest)) = line.split_once(':') {
                if let Some(n) = db.strip_prefix("db").and_then(|n| n.parse().ok()) {
                    let keys = rest
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("keys="))
                        .and_then(|k| k.parse().ok())
                        .unwrap_or(0);
                    out.insert(n, keys);
                }
            }
        }
        out
    }

    /// Runs one command in db `db`; panics on an error reply.
    pub fn exec(&self, db: u32, args: &[&str]) -> Value {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        run(&mut self.conn(db), &mut cmd)
    }

    /// Empties the whole server.
    pub fn flushall(&self) {
        let _: () = redis::cmd("FLUSHALL").query(&mut self.conn(0)).unwrap();
    }
}

/// Runs a command, panicking with the command on error.
fn run<T: redis::FromRedisValue>(c: &mut redis::Connection, cmd: &mut redis::Cmd) -> T {
    cmd.query(c)
        .unwrap_or_else(|e| panic!("redis command failed: {e}"))
}

/// Fills db `db` of `server` with the awkward data set.
pub fn load_awkward(server: &RedisServer, db: u32) {
    let mut c = server.conn(db);
    let all: Vec<u8> = (0..=255u8).cycle().take(256 * 4).collect();
    run::<()>(&mut c, redis::cmd("SET").arg("bytes:all").arg(&all));
    run::<()>(
        &mut c,
        redis::cmd("SET")
            .arg(b"key\x00\xff\r\nbin".as_slice())
            .arg(&all[..300]),
    );
    run::<()>(&mut c, redis::cmd("SET").arg("str:empty").arg(""));
    run::<()>(
        &mut c,
        redis::cmd("SET")
            .arg("str:unicode")
            .arg("héllo 😀 世界 \u{202e}"),
    );
    // A big incompressible string (> 1 MiB) and a big compressible one (LZF in the RDB).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: Vec<u8> = (0..(1 << 20) + 12345)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    run::<()>(&mut c, redis::cmd("SET").arg("str:big").arg(&big));
    run::<()>(
        &mut c,
        redis::cmd("SET")
            .arg("str:bigrep")
            .arg("abc".repeat(500_000)),
    );
    let long_key = format!("key:{}", "long".repeat(60));
    run::<()>(
        &mut c,
        redis::cmd("SET")
            .arg(&long_key)
            .arg("a long, compressible key"),
    );
    for (k, v) in [
        ("int:small", "42"),
        ("int:neg", "-9223372036854775808"),
        ("int:max", "9223372036854775807"),
        ("int:huge", "123456789012345678901234567890"),
        ("int:zero", "0"),
        ("num:float", "3.14159265358979"),
    ] {
        run::<()>(&mut c, redis::cmd("SET").arg(k).arg(v));
    }
    // Lists: a small listpack, a long quicklist, binary elements.
    run::<()>(
        &mut c,
        redis::cmd("RPUSH")
            .arg("list:small")
            .arg(&["a", "", "ç", "1"]),
    );
    let many: Vec<String> = (0..5000).map(|i| format!("element-{i}")).collect();
    run::<()>(&mut c, redis::cmd("RPUSH").arg("list:long").arg(&many));
    run::<()>(
        &mut c,
        redis::cmd("RPUSH")
            .arg("list:binary")
            .arg(&all[..100])
            .arg(&all[100..]),
    );
    // Sets: intset, small (listpack on 7.2+), hashtable, big ints.
    run::<()>(
        &mut c,
        redis::cmd("SADD")
            .arg("set:intset")
            .arg(&[1, 2, 3, -5, 1_000_000]),
    );
    run::<()>(
        &mut c,
        redis::cmd("SADD").arg("set:small").arg(&["x", "y", "ü"]),
    );
    let words: Vec<String> = (0..300).map(|i| format!("member-{i}")).collect();
    run::<()>(&mut c, redis::cmd("SADD").arg("set:hashtable").arg(&words));
    let ints: Vec<i64> = (0..1000).map(|i| i * 7919 - 3_000_000).collect();
    run::<()>(&mut c, redis::cmd("SADD").arg("set:manyints").arg(&ints));
    // Sorted sets: listpack and skiplist, awkward scores.
    run::<()>(
        &mut c,
        redis::cmd("ZADD")
            .arg("zset:small")
            .arg(&["1.5", "a", "-inf", "low", "+inf", "high", "0", "zero"]),
    );
    let mut zargs: Vec<String> = Vec::new();
    for i in 0..300 {
        zargs.push(format!("{}", (i as f64) * 0.1 - 7.0));
        zargs.push(format!("player-{i}"));
    }
    zargs.extend([
        "1e300".into(),
        "huge".into(),
        "-0.000001".into(),
        "tiny".into(),
    ]);
    run::<()>(&mut c, redis::cmd("ZADD").arg("zset:big").arg(&zargs));
    // Hashes: listpack, hashtable, binary values.
    run::<()>(
        &mut c,
        redis::cmd("HSET")
            .arg("hash:small")
            .arg(&["name", "Zoë", "age", "42", "empty", ""]),
    );
    let mut hargs: Vec<String> = Vec::new();
    for i in 0..1000 {
        hargs.push(format!("field-{i}"));
        hargs.push(format!("value-{}", i * i));
    }
    run::<()>(&mut c, redis::cmd("HSET").arg("hash:big").arg(&hargs));
    run::<()>(
        &mut c,
        redis::cmd("HSET")
            .arg("hash:binary")
            .arg(&all[..10])
            .arg(&all[10..]),
    );
    // A stream with consumer groups, pending entries, deletions.
    for i in 0..60 {
        run::<String>(
            &mut c,
            redis::cmd("XADD")
                .arg("stream:events")
                .arg("*")
                .arg("n")
                .arg(i)
                .arg("payload")
                .arg(&all[..(i * 3) as usize]),
        );
    }
    run::<()>(
        &mut c,
        redis::cmd("XGROUP").arg(&["CREATE", "stream:events", "workers", "0"]),
    );
    run::<()>(
        &mut c,
        redis::cmd("XGROUP").arg(&["CREATE", "stream:events", "late", "$"]),
    );
    let read: Value = run(
        &mut c,
        redis::cmd("XREADGROUP").arg(&[
            "GROUP",
            "workers",
            "alice",
            "COUNT",
            "10",
            "STREAMS",
            "stream:events",
            ">",
        ]),
    );
    let _: Value = run(
        &mut c,
        redis::cmd("XREADGROUP").arg(&[
            "GROUP",
            "workers",
            "bob",
            "COUNT",
            "5",
            "STREAMS",
            "stream:events",
            ">",
        ]),
    );
    let first_id = first_stream_id(&read).expect("XREADGROUP returned entries");
    run::<i64>(
        &mut c,
        redis::cmd("XACK")
            .arg("stream:events")
            .arg("workers")
            .arg(&first_id),
    );
    run::<i64>(
        &mut c,
        redis::cmd("XDEL").arg("stream:events").arg(&first_id),
    );
    run::<()>(
        &mut c,
        redis::cmd("XGROUP").arg(&["CREATECONSUMER", "stream:events", "late", "carol"]),
    );
    // TTLs.
    run::<()>(
        &mut c,
        redis::cmd("SET")
            .arg("ttl:px")
            .arg("soon")
            .arg("PX")
            .arg(3_600_000),
    );
    run::<i64>(&mut c, redis::cmd("EXPIRE").arg("hash:small").arg(86_400));
    run::<i64>(
        &mut c,
        redis::cmd("PEXPIREAT")
            .arg("list:small")
            .arg(4_102_444_800_000i64),
    );
}

fn first_stream_id(v: &Value) -> Option<String> {
    // [[stream, [[id, [fields...]], ...]]]
    let Value::Array(streams) = v else {
        return None;
    };
    let Value::Array(s) = streams.first()? else {
        return None;
    };
    let Value::Array(entries) = s.get(1)? else {
        return None;
    };
    let Value::Array(e) = entries.first()? else {
        return None;
    };
    match e.first()? {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn canon(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Int(i) => format!("i{i}"),
        Value::BulkString(b) => format!("b{}", hex::encode(b)),
        Value::SimpleString(s) => format!("s{s}"),
        Value::Okay => "ok".into(),
        Value::Double(d) => format!("d{d}"),
        Value::Boolean(b) => format!("t{b}"),
        Value::Array(a) | Value::Set(a) => {
            format!("[{}]", a.iter().map(canon).collect::<Vec<_>>().join(","))
        }
        Value::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}={}", canon(k), canon(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => format!("{other:?}"),
    }
}

/// A flat `[k, v, k, v]` reply as pairs, keeping only `keep` fields.
fn fields(v: &Value, keep: &[&str]) -> String {
    let Value::Array(a) = v else { return canon(v) };
    let mut out = Vec::new();
    for pair in a.chunks(2) {
        let [k, val] = pair else { continue };
        let name = match k {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => continue,
        };
        if keep.contains(&name.as_str()) {
            out.push(format!("{name}={}", canon(val)));
        }
    }
    out.join(";")
}

/// Every key of db `db`, sorted.
pub fn keys(c: &mut redis::Connection) -> Vec<Vec<u8>> {
    let mut cursor = "0".to_string();
    let mut out = Vec::new();
    loop {
        let (next, batch): (String, Vec<Vec<u8>>) =
            run(c, redis::cmd("SCAN").arg(&cursor).arg("COUNT").arg(1000));
        out.extend(batch);
        if next == "0" {
            break;
        }
        cursor = next;
    }
    out.sort();
    out.dedup();
    out
}

/// A type-aware description of one key's full content: type, encoding (`embstr` counted as
/// `raw`), value (sets and
/// hashes sorted), absolute expiry time, and for streams their entries, groups, consumers and
/// pending entries (without idle times).
pub fn describe_key(c: &mut redis::Connection, key: &[u8]) -> String {
    let t: String = run(c, redis::cmd("TYPE").arg(key));
    let enc: String = run(c, redis::cmd("OBJECT").arg("ENCODING").arg(key));
    // A short string's embstr/raw form is an allocation detail an RDB does not keep.
    let enc = if enc == "embstr" {
        "raw".to_string()
    } else {
        enc
    };
    let expire: i64 = run(c, redis::cmd("PEXPIRETIME").arg(key));
    let body = match t.as_str() {
        "string" => {
            let v: Vec<u8> = run(c, redis::cmd("GET").arg(key));
            hex::encode(v)
        }
        "list" => canon(&run::<Value>(
            c,
            redis::cmd("LRANGE").arg(key).arg(0).arg(-1),
        )),
        "set" => {
            let mut m: Vec<Vec<u8>> = run(c, redis::cmd("SMEMBERS").arg(key));
            m.sort();
            m.iter().map(hex::encode).collect::<Vec<_>>().join(",")
        }
        "zset" => canon(&run::<Value>(
            c,
            redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES"),
        )),
        "hash" => {
            let mut m: Vec<(Vec<u8>, Vec<u8>)> = run(c, redis::cmd("HGETALL").arg(key));
            m.sort();
            m.iter()
                .map(|(k, v)| format!("{}={}", hex::encode(k), hex::encode(v)))
                .collect::<Vec<_>>()
                .join(",")
        }
        "stream" => {
            let entries: Value = run(c, redis::cmd("XRANGE").arg(key).arg("-").arg("+"));
            let info: Value = run(c, redis::cmd("XINFO").arg("STREAM").arg(key));
            let mut s = format!(
                "{}|{}",
                canon(&entries),
                fields(
                    &info,
                    &[
                        "length",
                        "last-generated-id",
                        "max-deleted-entry-id",
                        "entries-added",
                        "recorded-first-entry-id",
                        "groups",
                    ]
                )
            );
            let groups: Value = run(c, redis::cmd("XINFO").arg("GROUPS").arg(key));
            if let Value::Array(gs) = &groups {
                for g in gs {
                    s.push_str(&format!(
                        "|group {}",
                        fields(
                            g,
                            &[
                                "name",
                                "consumers",
                                "pending",
                                "last-delivered-id",
                                "entries-read",
                                "lag"
                            ]
                        )
                    ));
                    let name = match g {
                        Value::Array(a) => a
                            .chunks(2)
                            .find(|p| matches!(&p[0], Value::BulkString(b) if b == b"name"))
                            .map(|p| canon(&p[1])),
                        _ => None,
                    }
                    .expect("a group has a name");
                    let name = hex::decode(&name[1..]).unwrap();
                    let consumers: Value =
                        run(c, redis::cmd("XINFO").arg("CONSUMERS").arg(key).arg(&name));
                    if let Value::Array(cs) = &consumers {
                        for cons in cs {
                            s.push_str(&format!(
                                " consumer {}",
                                fields(cons, &["name", "pending"])
                            ));
                        }
                    }
                    let pending: Value = run(
                        c,
                        redis::cmd("XPENDING")
                            .arg(key)
                            .arg(&name)
                            .arg("-")
                            .arg("+")
                            .arg(10_000),
                    );
                    if let Value::Array(ps) = &pending {
                        for p in ps {
                            if let Value::Array(f) = p {
                                // id, consumer, idle (varies), deliveries
                                s.push_str(&format!(
                                    " pel {} {} {}",
                                    canon(&f[0]),
                                    canon(&f[1]),
                                    canon(&f[3])
                                ));
                            }
                        }
                    }
                }
            }
            s
        }
        other => format!("unknown type {other}"),
    };
    format!("{t}|{enc}|expire={expire}|{body}")
}

/// A digest of every key of db `db`: key (escaped) to SHA-256 of [`describe_key`].
pub fn checksums(server: &RedisServer, db: u32) -> BTreeMap<String, String> {
    let mut c = server.conn(db);
    let mut out = BTreeMap::new();
    for k in keys(&mut c) {
        let d = describe_key(&mut c, &k);
        out.insert(
            k.escape_ascii().to_string(),
            hex::encode(Sha256::digest(d.as_bytes())),
        );
    }
    out
}

/// The number of accounts of the writer's bank.
const ACCOUNTS: u64 = 10;
/// What each account holds at the start.
const START_BALANCE: i64 = 1000;

/// Sets up the writer's bank in db `db`: [`ACCOUNTS`] accounts, a transaction counter, a log.
pub fn setup_bank(server: &RedisServer, db: u32) {
    let mut c = server.conn(db);
    for i in 0..ACCOUNTS {
        run::<()>(
            &mut c,
            redis::cmd("SET")
                .arg(format!("bank:acct:{i}"))
                .arg(START_BALANCE),
        );
    }
    run::<()>(&mut c, redis::cmd("SET").arg("bank:tx").arg(0));
}

/// The bank's invariant in db `db`: balances sum to the start total, and the counter equals
/// the log's length and the number of receipt keys. Panics with the numbers otherwise.
pub fn check_bank(server: &RedisServer, db: u32) -> u64 {
    let mut c = server.conn(db);
    let mut sum = 0i64;
    for i in 0..ACCOUNTS {
        let v: i64 = run(&mut c, redis::cmd("GET").arg(format!("bank:acct:{i}")));
        sum += v;
    }
    assert_eq!(
        sum,
        START_BALANCE * ACCOUNTS as i64,
        "the balances of db {db} do not add up: a transaction was split"
    );
    let tx: u64 = run(&mut c, redis::cmd("GET").arg("bank:tx"));
    let log: u64 = run(&mut c, redis::cmd("LLEN").arg("bank:log"));
    assert_eq!(tx, log, "db {db}: the counter and the log disagree");
    let receipts = keys(&mut c)
        .iter()
        .filter(|k| k.starts_with(b"bank:receipt:"))
        .count() as u64;
    assert_eq!(
        tx, receipts,
        "db {db}: the counter and the receipts disagree"
    );
    tx
}

/// A writer moving money between the bank's accounts in `MULTI`/`EXEC` transactions, each also
/// adding a log entry and a receipt key.
pub struct BankWriter {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BankWriter {
    /// Starts writing into db `db` (call [`setup_bank`] first).
    pub fn start(server: &RedisServer, db: u32) -> BankWriter {
        let mut c = server.conn(db);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut n: u64 = 0;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                let from = n % ACCOUNTS;
                let to = (n * 7 + 3) % ACCOUNTS;
                let amount = (n % 50) as i64 + 1;
                let mut p = redis::pipe();
                p.atomic()
                    .cmd("DECRBY")
                    .arg(format!("bank:acct:{from}"))
                    .arg(amount)
                    .cmd("INCRBY")
                    .arg(format!("bank:acct:{to}"))
                    .arg(amount)
                    .cmd("INCR")
                    .arg("bank:tx")
                    .cmd("RPUSH")
                    .arg("bank:log")
                    .arg(format!("{from}->{to}:{amount}"))
                    .cmd("SET")
                    .arg(format!("bank:receipt:{n}"))
                    .arg(amount);
                let r: redis::RedisResult<Value> = p.query(&mut c);
                if let Err(e) = r {
                    panic!("the bank writer failed: {e}");
                }
                d.fetch_add(1, Ordering::Relaxed);
            }
        });
        BankWriter {
            stop,
            done,
            thread: Some(thread),
        }
    }

    /// Transactions committed so far.
    pub fn count(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

impl Writer for BankWriter {
    fn stop(mut self: Box<Self>) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the bank writer panicked");
        }
        self.count()
    }
}

impl Drop for BankWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The Redis fixture of the shared suite: one password-protected server; each database name
/// of the suite is a db number of it (numbers are used as they are, other names get the next
/// free db from 1). The password reaches `coffer` through `REDISCLI_AUTH`.
pub struct RedisFixture {
    /// The server.
    pub server: RedisServer,
    names: Mutex<BTreeMap<String, u32>>,
}

/// The password of [`RedisFixture`]'s server.
pub const FIXTURE_PASSWORD: &str = "s3cret-redis-pw";

impl RedisFixture {
    /// Starts the server.
    pub fn start() -> RedisFixture {
        RedisFixture {
            server: RedisServer::start_with(RedisOptions {
                password: Some(FIXTURE_PASSWORD.into()),
                ..RedisOptions::default()
            }),
            names: Mutex::new(BTreeMap::new()),
        }
    }

    /// The db number behind a suite database name.
    pub fn db(&self, name: &str) -> u32 {
        if let Ok(n) = name.parse() {
            return n;
        }
        let mut names = self.names.lock().unwrap();
        let next = names.len() as u32 + 1;
        assert!(next < 64, "the Redis fixture ran out of dbs");
        *names.entry(name.to_string()).or_insert(next)
    }
}

impl DbFixture for RedisFixture {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn url(&self, name: &str) -> String {
        self.server.url(Some(self.db(name)))
    }

    fn unreachable_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", closed_port())
    }

    fn wrong_password_url(&self, name: &str) -> Option<String> {
        Some(format!(
            "redis://:wrong-password@127.0.0.1:{}/{}",
            self.server.port,
            self.db(name)
        ))
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("REDISCLI_AUTH".into(), FIXTURE_PASSWORD.into())]
    }

    fn create_empty(&self, name: &str) {
        let _: () = run(
            &mut self.server.conn(self.db(name)),
            &mut redis::cmd("FLUSHDB"),
        );
    }

    fn load_awkward(&self, name: &str) {
        load_awkward(&self.server, self.db(name));
    }

    fn checksums(&self, name: &str) -> BTreeMap<String, String> {
        checksums(&self.server, self.db(name))
    }

    fn change_one(&self, name: &str) -> String {
        let mut c = self.server.conn(self.db(name));
        let _: () = run(
            &mut c,
            redis::cmd("APPEND").arg("str:unicode").arg(" (changed)"),
        );
        "str:unicode".into()
    }

    fn start_writer(&self, name: &str) -> Box<dyn Writer> {
        setup_bank(&self.server, self.db(name));
        Box::new(BankWriter::start(&self.server, self.db(name)))
    }

    fn check_consistent(&self, name: &str) {
        check_bank(&self.server, self.db(name));
    }

    fn one_table(&self) -> Option<String> {
        None
    }
}
