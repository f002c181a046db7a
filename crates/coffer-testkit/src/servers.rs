//! Real storage servers for tests, started on 127.0.0.1 with free ports in temporary folders and
//! stopped (their whole process group killed by id) when dropped; a test that fails prints the
//! last lines of its servers' logs (see [`crate::server_logs`]):
//!
//! * [`S3Server`]: moto's `moto_server` (S3), with a bucket created by a plain `PUT`;
//! * [`AzureServer`]: Azurite's `azurite-blob`, with a container created by a SharedKey-signed
//!   `PUT` for the well-known `devstoreaccount1` account;
//! * [`GcsServer`]: `gcp-storage-emulator` in memory, with a default bucket;
//! * [`SftpServer`]: OpenSSH's `sshd` with its own config, host key and authorized client key.
//!
//! The Python and Node tools come from the project's `.tools/` folder, which
//! `./scripts/install-test-deps.sh` fills (set `COFFER_TOOLS_DIR` to use another folder); sshd
//! from Debian's `openssh-server`. A missing component makes the test panic with the install
//! command: these tests never skip silently.
//!
//! The SFTP backend runs the system `ssh` client, which takes no known_hosts or config path from
//! its caller. [`SftpServer::start`] therefore prepares, once per test process, a client folder
//! in the temporary directory (client key, `known_hosts`, an ssh config, and an `ssh` wrapper
//! that passes `-F` with that config), puts the wrapper first on `PATH` and points
//! `XDG_STATE_HOME` (where the ssh control sockets go) into it. Nothing outside temporary
//! folders is read or written; the client folder is removed when the process exits.

use crate::server_logs::ServerLogs;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a server may take to open its port.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The command that installs every component these servers need.
pub const INSTALL_HINT: &str = "run ./scripts/install-test-deps.sh (as root, on Debian)";

/// The well-known Azurite account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";

/// The well-known Azurite account key (public, documented by Microsoft).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The project's `.tools` folder (or `COFFER_TOOLS_DIR`).
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("COFFER_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools")
}

/// `path` if it is an executable file, else a panic naming `what` and how to install it.
fn require(path: PathBuf, what: &str) -> PathBuf {
    let ok = fs::metadata(&path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    if !ok {
        panic!(
            "{what} is not installed (looked for {}): {INSTALL_HINT}",
            path.display()
        );
    }
    path
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A port on 127.0.0.1 where nothing listens (for "host unreachable" tests).
pub fn closed_port() -> u16 {
    free_port()
}

/// A server process in its own process group, killed with its children on drop. Dropped while
/// its test fails (the thread panicking), it first prints the last lines of its logs; with
/// `COFFER_TEST_SERVER_LOGS` set, it keeps them (see [`crate::server_logs`]).
pub struct ServerProcess {
    name: String,
    child: Child,
    log: PathBuf,
    logs: ServerLogs,
}

impl ServerProcess {
    /// Spawns `cmd` in a new process group, its output going to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> ServerProcess {
        let out = fs::File::create(log).expect("create server log");
        let err = out.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}; {INSTALL_HINT}"));
        ServerProcess {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            logs: ServerLogs::new(name, vec![log.to_path_buf()]),
        }
    }

    /// Adds a log the server writes besides its output (MariaDB's `--log-error` file), printed
    /// and kept with it.
    pub fn add_log(&mut self, path: &Path) {
        self.logs.add(path);
    }

    /// Its logs: its output, then those [`ServerProcess::add_log`] added.
    pub fn logs(&self) -> &ServerLogs {
        &self.logs
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `port` on 127.0.0.1 accepts connections; panics with the server's output
    /// if the process exits or the port stays closed.
    pub fn wait_for_port(&mut self, port: u16) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before opening port {port}; its output:\n{}",
                    self.name,
                    self.log()
                );
            }
            if TcpStream::connect_timeout(
                &([127, 0, 0, 1], port).into(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return;
            }
            if start.elapsed() > START_TIMEOUT {
                panic!(
                    "{} did not open port {port} within {START_TIMEOUT:?}; its output:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process group: SIGTERM, then SIGKILL after 3 s.
    fn stop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        if let Ok(Some(_)) = self.child.try_wait() {
            // The leader is gone; children may still run in its group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            return;
        }
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.logs.print_if_panicking();
        self.stop();
        self.logs.keep(self.child.id());
    }
}

// ------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (for creating buckets and looking at objects).

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (decoded if chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to `127.0.0.1:port` and reads the whole response (`Connection: close`).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked && method != "HEAD" {
        body = dechunk(&body);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
    out
}

fn expect_status(what: &str, res: std::io::Result<HttpResponse>, ok: &[u16]) -> HttpResponse {
    match res {
        Ok(r) if ok.contains(&r.status) => r,
        Ok(r) => panic!("{what}: HTTP {}: {}", r.status, r.text()),
        Err(e) => panic!("{what}: {e}"),
    }
}

fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary folder")
}

fn options(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

// ------------------------------------------------------------------------------------------
// S3: moto

/// moto's S3 server. Any credentials are accepted unless started with
/// [`S3Server::start_with_auth`].
pub struct S3Server {
    process: ServerProcess,
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The bucket created at start.
    pub bucket: String,
    _dir: TempDir,
}

impl S3Server {
    /// Starts moto with the bucket `coffer-test`.
    pub fn start() -> S3Server {
        Self::start_inner(None)
    }

    /// Starts moto with IAM authentication enforced after the bucket is created: every request
    /// is then checked against moto's (empty) IAM users, so any access key is refused with
    /// `403 InvalidAccessKeyId`.
    pub fn start_with_auth() -> S3Server {
        Self::start_inner(Some(1))
    }

    fn start_inner(free_actions: Option<u32>) -> S3Server {
        let bin = require(
            tools_dir().join("venv/bin/moto_server"),
            "moto_server (PyPI moto[server])",
        );
        let dir = temp_dir("coffer-moto-");
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
        if let Some(n) = free_actions {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let mut process = ServerProcess::spawn("moto_server", cmd, &dir.path().join("log"));
        process.wait_for_port(port);
        let server = S3Server {
            process,
            port,
            bucket: "coffer-test".to_string(),
            _dir: dir,
        };
        server.create_bucket(&server.bucket);
        server
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates another bucket.
    pub fn create_bucket(&self, name: &str) {
        expect_status(
            &format!("creating bucket {name} on moto"),
            http_request(self.port, "PUT", &format!("/{name}"), &[], b""),
            &[200],
        );
    }

    /// `s3://BUCKET/PREFIX` for the test bucket.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The storage options (endpoint, region, path style, test credentials).
    pub fn options(&self) -> BTreeMap<String, String> {
        options(&[
            ("s3.endpoint", self.endpoint()),
            ("s3.region", "us-east-1".to_string()),
            ("s3.path_style", "true".to_string()),
            ("s3.access_key_id", "coffer-test-key".to_string()),
            ("s3.secret_access_key", "coffer-test-secret".to_string()),
        ])
    }

    /// `HEAD /BUCKET/KEY`, e.g. to read an object's ETag. moto refuses anonymous reads of
    /// private objects but, without [`S3Server::start_with_auth`], checks no signature: the
    /// request carries a well-formed but unsigned SigV4 `Authorization` header.
    pub fn head_object(&self, bucket: &str, key: &str) -> HttpResponse {
        let auth = "AWS4-HMAC-SHA256 Credential=coffer-test-key/20260101/us-east-1/s3/\
                    aws4_request, SignedHeaders=host, Signature=00"
            .to_string();
        expect_status(
            &format!("HEAD {bucket}/{key} on moto"),
            http_request(
                self.port,
                "HEAD",
                &format!("/{bucket}/{key}"),
                &[("Authorization", auth)],
                b"",
            ),
            &[200],
        )
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// S3 Object Lock helpers (moto enforces retention on object versions).
impl S3Server {
    /// Creates a bucket with Object Lock enabled (`x-amz-bucket-object-lock-enabled: true`),
    /// which also turns versioning on.
    pub fn create_locked_bucket(&self, name: &str) {
        expect_status(
            &format!("creating bucket {name} with Object Lock on moto"),
            http_request(
                self.port,
                "PUT",
                &format!("/{name}"),
                &[("x-amz-bucket-object-lock-enabled", "true".to_string())],
                b"",
            ),
            &[200],
        );
    }

    /// Starts moto with IAM authentication (signatures checked) and a bucket `name` with Object
    /// Lock, and returns the server with the access key id and secret of an IAM user allowed
    /// `s3:*`. The requests that set this up are the only unauthenticated ones moto allows.
    pub fn start_with_locked_bucket_and_user(name: &str) -> (S3Server, String, String) {
        // The default bucket, the locked bucket, CreateUser, PutUserPolicy, CreateAccessKey.
        let server = Self::start_inner(Some(5));
        server.create_locked_bucket(name);
        let auth = "AWS4-HMAC-SHA256 Credential=AKIDSETUP/20260101/us-east-1/iam/aws4_request, \
                    SignedHeaders=host, Signature=00"
            .to_string();
        let iam = |form: &str| {
            expect_status(
                &format!("IAM request {form} on moto"),
                http_request(
                    server.port,
                    "POST",
                    "/",
                    &[
                        ("Authorization", auth.clone()),
                        (
                            "Content-Type",
                            "application/x-www-form-urlencoded".to_string(),
                        ),
                    ],
                    format!("{form}&Version=2010-05-08").as_bytes(),
                ),
                &[200],
            )
        };
        iam("Action=CreateUser&UserName=coffer");
        iam(
            "Action=PutUserPolicy&UserName=coffer&PolicyName=all&PolicyDocument=\
             %7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A\
             %22Allow%22%2C%22Action%22%3A%22s3%3A%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D",
        );
        let key = iam("Action=CreateAccessKey&UserName=coffer").text();
        let field = |name: &str| {
            let open = format!("<{name}>");
            let start = key.find(&open).map(|i| i + open.len());
            let end = key.find(&format!("</{name}>"));
            match (start, end) {
                (Some(s), Some(e)) if s <= e => key[s..e].to_string(),
                _ => panic!("no {name} in moto's CreateAccessKey answer: {key}"),
            }
        };
        let (id, secret) = (field("AccessKeyId"), field("SecretAccessKey"));
        (server, id, secret)
    }

    /// Sends `METHOD /BUCKET/KEY?QUERY` (`path_and_query` without the leading `/`) with extra
    /// `headers` and a well-formed but unsigned SigV4 `Authorization` header (see
    /// [`S3Server::head_object`]), and returns the answer whatever its status.
    pub fn raw_request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, String)],
    ) -> HttpResponse {
        let auth = "AWS4-HMAC-SHA256 Credential=coffer-test-key/20260101/us-east-1/s3/\
                    aws4_request, SignedHeaders=host, Signature=00"
            .to_string();
        let mut all = vec![("Authorization", auth)];
        all.extend(headers.iter().cloned());
        http_request(self.port, method, &format!("/{path_and_query}"), &all, b"")
            .unwrap_or_else(|e| panic!("{method} /{path_and_query} on moto: {e}"))
    }
}

// ------------------------------------------------------------------------------------------
// Azure: Azurite

/// Azurite's blob service, with the well-known `devstoreaccount1` account.
pub struct AzureServer {
    process: ServerProcess,
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The container created at start.
    pub container: String,
    _dir: TempDir,
}

impl AzureServer {
    /// Starts Azurite with the container `coffer-test`.
    pub fn start() -> AzureServer {
        let bin = require(
            tools_dir().join("node/node_modules/.bin/azurite-blob"),
            "azurite-blob (npm azurite)",
        );
        let dir = temp_dir("coffer-azurite-");
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
            &dir.path().join("data").to_string_lossy(),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ])
        .current_dir(dir.path());
        let mut process = ServerProcess::spawn("azurite-blob", cmd, &dir.path().join("log"));
        process.wait_for_port(port);
        let server = AzureServer {
            process,
            port,
            container: "coffer-test".to_string(),
            _dir: dir,
        };
        server.create_container(&server.container);
        server
    }

    /// The blob endpoint URL (path style, with the account).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// A connection string for the well-known account.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
             BlobEndpoint={};",
            self.endpoint()
        )
    }

    /// Creates another container (a SharedKey-signed `PUT`). A connection refused or reset is
    /// retried for a few seconds: Azurite opens its port before it serves requests.
    pub fn create_container(&self, name: &str) {
        let path = format!("/{AZURITE_ACCOUNT}/{name}");
        let deadline = Instant::now() + Duration::from_secs(15);
        let res = loop {
            let res = self.signed_request("PUT", &path, &[("restype", "container")], AZURITE_KEY);
            match res {
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                res => break res,
            }
        };
        expect_status(
            &format!("creating container {name} on Azurite"),
            res,
            &[201],
        );
    }

    /// A SharedKey-signed request without a body, signed with `key` (base64).
    pub fn signed_request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        key: &str,
    ) -> std::io::Result<HttpResponse> {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        let mut sorted: Vec<_> = query.to_vec();
        sorted.sort();
        let mut resource = format!("/{AZURITE_ACCOUNT}{path}");
        for (k, v) in &sorted {
            resource.push_str(&format!("\n{}:{v}", k.to_ascii_lowercase()));
        }
        let to_sign = format!(
            "{method}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}"
        );
        let key = base64_decode(key);
        let signature = base64_encode(&hmac_sha256(&key, to_sign.as_bytes()));
        let qs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let target = if qs.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", qs.join("&"))
        };
        http_request(
            self.port,
            method,
            &target,
            &[
                ("x-ms-date", date),
                ("x-ms-version", version.to_string()),
                (
                    "Authorization",
                    format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
                ),
            ],
            b"",
        )
    }

    /// An account SAS token (without the leading `?`) for the blob service, valid for a day,
    /// that allows only `permissions` (`rl`: read and list, what a read-only key is given).
    pub fn account_sas(&self, permissions: &str) -> String {
        let version = "2019-12-12";
        let expiry = (chrono::Utc::now() + chrono::Duration::days(1))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        // Account SAS string-to-sign (versions before 2020-12-06): account, permissions,
        // services, resource types, start, expiry, IP, protocols, version, each on its line.
        let to_sign = format!(
            "{AZURITE_ACCOUNT}\n{permissions}\nb\nsco\n\n{expiry}\n\nhttps,http\n{version}\n"
        );
        let signature = base64_encode(&hmac_sha256(
            &base64_decode(AZURITE_KEY),
            to_sign.as_bytes(),
        ));
        format!(
            "sv={version}&ss=b&srt=sco&sp={permissions}&se={}&spr=https,http&sig={}",
            percent_encode(&expiry),
            percent_encode(&signature)
        )
    }

    /// `az://CONTAINER/PREFIX` for the test container.
    pub fn url(&self, prefix: &str) -> String {
        format!("az://{}/{prefix}", self.container)
    }

    /// The storage options: account, key and endpoint.
    pub fn options(&self) -> BTreeMap<String, String> {
        options(&[
            ("az.account", AZURITE_ACCOUNT.to_string()),
            ("az.key", AZURITE_KEY.to_string()),
            ("az.endpoint", self.endpoint()),
        ])
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// `s` with every byte but ASCII letters and digits as `%XX` (query string values).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let mut inner = Sha256::new();
    inner.update(&ipad);
    inner.update(msg);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(&opad);
    outer.update(inner.as_slice());
    outer.finalize().to_vec()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let Some(v) = B64.iter().position(|&x| x == c) else {
            continue;
        };
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// GCS: gcp-storage-emulator

/// gcp-storage-emulator, in memory. It has no XML multipart API and checks no credentials.
pub struct GcsServer {
    process: ServerProcess,
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The bucket created at start.
    pub bucket: String,
    _dir: TempDir,
}

impl GcsServer {
    /// Starts the emulator with the default bucket `coffer-test`.
    pub fn start() -> GcsServer {
        let bin = require(
            tools_dir().join("venv/bin/gcp-storage-emulator"),
            "gcp-storage-emulator (PyPI gcp-storage-emulator)",
        );
        let dir = temp_dir("coffer-gcs-");
        let port = free_port();
        let bucket = "coffer-test".to_string();
        let mut cmd = Command::new(bin);
        cmd.args([
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--default-bucket",
            &bucket,
            "--in-memory",
        ])
        .current_dir(dir.path());
        let mut process =
            ServerProcess::spawn("gcp-storage-emulator", cmd, &dir.path().join("log"));
        process.wait_for_port(port);
        GcsServer {
            process,
            port,
            bucket,
            _dir: dir,
        }
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `gs://BUCKET/PREFIX` for the test bucket.
    pub fn url(&self, prefix: &str) -> String {
        format!("gs://{}/{prefix}", self.bucket)
    }

    /// The storage options: the endpoint and anonymous access.
    pub fn options(&self) -> BTreeMap<String, String> {
        options(&[
            ("gs.endpoint", self.endpoint()),
            ("gs.anonymous", "true".to_string()),
        ])
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

// ------------------------------------------------------------------------------------------
// SFTP: sshd

/// The process-wide ssh client setup (see the module docs).
struct SshClient {
    dir: PathBuf,
    key: PathBuf,
    public_key: String,
    known_hosts: PathBuf,
    lock: Mutex<()>,
}

extern "C" fn remove_ssh_client_dir() {
    if let Some(client) = SSH_CLIENT.get() {
        let _ = fs::remove_dir_all(&client.dir);
    }
}

static SSH_CLIENT: OnceLock<SshClient> = OnceLock::new();

fn ssh_keygen(path: &Path) {
    let keygen = require(
        PathBuf::from("/usr/bin/ssh-keygen"),
        "ssh-keygen (openssh-client)",
    );
    let out = Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "coffer-test", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ssh_client() -> &'static SshClient {
    SSH_CLIENT.get_or_init(|| {
        let real_ssh = require(PathBuf::from("/usr/bin/ssh"), "ssh (openssh-client)");
        let dir = std::env::temp_dir().join(format!(
            "coffer-ssh-client-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ (std::ptr::addr_of!(SSH_CLIENT) as u128)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bin")).expect("create the ssh client folder");
        fs::create_dir_all(dir.join("state")).expect("create the ssh state folder");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
        let key = dir.join("id_ed25519");
        ssh_keygen(&key);
        let public_key = fs::read_to_string(dir.join("id_ed25519.pub"))
            .expect("read the client public key")
            .trim()
            .to_string();
        let known_hosts = dir.join("known_hosts");
        fs::write(&known_hosts, "").expect("write known_hosts");
        let config = dir.join("ssh_config");
        fs::write(
            &config,
            format!(
                "Host *\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  \
                 StrictHostKeyChecking yes\n  IdentityAgent none\n  PasswordAuthentication no\n  \
                 KbdInteractiveAuthentication no\n  BatchMode yes\n  LogLevel ERROR\n  \
                 ConnectTimeout 10\n",
                kh = known_hosts.display()
            ),
        )
        .expect("write the ssh config");
        let wrapper = dir.join("bin/ssh");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{}' -F '{}' \"$@\"\n",
                real_ssh.display(),
                config.display()
            ),
        )
        .expect("write the ssh wrapper");
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.join("bin")];
        paths.extend(std::env::split_paths(&path));
        // Set once, before any ssh is started (the ssh client library reads both when it
        // first connects).
        std::env::set_var("PATH", std::env::join_paths(paths).expect("join PATH"));
        std::env::set_var("XDG_STATE_HOME", dir.join("state"));
        unsafe { libc::atexit(remove_ssh_client_dir) };
        SshClient {
            dir,
            key,
            public_key,
            known_hosts,
            lock: Mutex::new(()),
        }
    })
}

/// The current user's login name.
pub fn current_user() -> String {
    let uid = unsafe { libc::getuid() };
    let pw = unsafe { libc::getpwuid(uid) };
    if pw.is_null() {
        panic!("no passwd entry for uid {uid}");
    }
    unsafe { std::ffi::CStr::from_ptr((*pw).pw_name) }
        .to_string_lossy()
        .into_owned()
}

/// OpenSSH's sshd on 127.0.0.1, accepting the test client's key for the current user, with
/// `internal-sftp`.
pub struct SftpServer {
    process: ServerProcess,
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The login name.
    pub user: String,
    dir: TempDir,
}

impl SftpServer {
    /// Starts sshd (needs root for `/run/sshd`, as Debian's sshd requires).
    pub fn start() -> SftpServer {
        let sshd = require(
            PathBuf::from("/usr/sbin/sshd"),
            "sshd (Debian openssh-server)",
        );
        let client = ssh_client();
        if !Path::new("/run/sshd").is_dir() {
            fs::create_dir_all("/run/sshd").unwrap_or_else(|e| {
                panic!("sshd needs /run/sshd and it cannot be created ({e}): run as root")
            });
        }
        let dir = temp_dir("coffer-sshd-");
        let d = dir.path();
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
        let host_key = d.join("ssh_host_ed25519_key");
        ssh_keygen(&host_key);
        fs::write(
            d.join("authorized_keys"),
            format!("{}\n", client.public_key),
        )
        .expect("write authorized_keys");
        fs::create_dir_all(d.join("data")).expect("create the data folder");
        let port = free_port();
        let config = d.join("sshd_config");
        fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {hk}\nPidFile {pid}\n\
                 AuthorizedKeysFile {ak}\nPermitRootLogin prohibit-password\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 Subsystem sftp internal-sftp\nMaxStartups 100\nMaxSessions 100\n\
                 LogLevel VERBOSE\n",
                hk = host_key.display(),
                pid = d.join("sshd.pid").display(),
                ak = d.join("authorized_keys").display(),
            ),
        )
        .expect("write sshd_config");
        let mut cmd = Command::new(sshd);
        cmd.arg("-D").arg("-e").arg("-f").arg(&config);
        let mut process = ServerProcess::spawn("sshd", cmd, &d.join("log"));
        process.wait_for_port(port);
        // Trust the host key, for this port only.
        let host_pub =
            fs::read_to_string(d.join("ssh_host_ed25519_key.pub")).expect("read the host key");
        let entry = format!("[127.0.0.1]:{port}");
        {
            let _guard = client.lock.lock().unwrap_or_else(|p| p.into_inner());
            let old = fs::read_to_string(&client.known_hosts).unwrap_or_default();
            let mut kept: Vec<&str> = old
                .lines()
                .filter(|l| !l.starts_with(&format!("{entry} ")))
                .collect();
            let mut fields = host_pub.split_whitespace();
            let line = format!(
                "{entry} {} {}",
                fields.next().unwrap_or(""),
                fields.next().unwrap_or("")
            );
            kept.push(&line);
            fs::write(&client.known_hosts, kept.join("\n") + "\n").expect("write known_hosts");
        }
        SftpServer {
            process,
            port,
            user: current_user(),
            dir,
        }
    }

    /// The folder served under [`SftpServer::url`].
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `sftp://USER@127.0.0.1:PORT/<data dir>/SUB`.
    pub fn url(&self, sub: &str) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}{}/{sub}",
            self.user,
            self.port,
            self.data_dir().display()
        )
    }

    /// The authorized client key (private key file).
    pub fn key_file(&self) -> PathBuf {
        ssh_client().key.clone()
    }

    /// A fresh key that the server does not accept (for bad-credential tests).
    pub fn unauthorized_key_file(&self) -> PathBuf {
        let key = self.dir.path().join("unauthorized_key");
        if !key.exists() {
            ssh_keygen(&key);
        }
        key
    }

    /// The storage options: the client key file and strict host key checking.
    pub fn options(&self) -> BTreeMap<String, String> {
        options(&[
            ("sftp.key_file", self.key_file().display().to_string()),
            ("sftp.known_hosts", "strict".to_string()),
        ])
    }

    /// The ids of live `ssh` client processes (control masters included) connected to this
    /// server's port, found in `/proc`.
    pub fn client_processes(&self) -> Vec<u32> {
        let port = self.port.to_string();
        let mut out = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_ssh = args
                .first()
                .map(|a| a.ends_with(b"/ssh") || *a == b"ssh")
                .unwrap_or(false);
            let on_port = args
                .windows(2)
                .any(|w| w[0] == b"-p" && w[1] == port.as_bytes());
            let zombie = fs::read_to_string(entry.path().join("stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(true);
            if is_ssh && on_port && !zombie {
                out.push(pid);
            }
        }
        out
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

impl Drop for SftpServer {
    fn drop(&mut self) {
        // ssh masters run with ControlPersist=yes: any left (a failed test) would outlive the
        // test run.
        for pid in self.client_processes() {
            // SAFETY: sending a signal has no memory effects.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let entry = format!("[127.0.0.1]:{} ", self.port);
        if let Some(client) = SSH_CLIENT.get() {
            let _guard = client.lock.lock().unwrap_or_else(|p| p.into_inner());
            if let Ok(old) = fs::read_to_string(&client.known_hosts) {
                let kept: String = old
                    .lines()
                    .filter(|l| !l.starts_with(&entry))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let _ = fs::write(&client.known_hosts, kept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_hmac() {
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
        assert_eq!(base64_decode("Zm9vYg=="), b"foob");
        assert_eq!(base64_decode(AZURITE_KEY).len(), 64);
        // RFC 4231, test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn dechunks() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
