//! Run the `coffer` binary in a sealed environment: a temporary folder holding the repository, a
//! password file, and fake `HOME`/XDG folders, with every inherited `COFFER_*` variable removed and
//! cheap Argon2id parameters so tests stay fast.
//!
//! ```ignore
//! let env = CofferEnv::new(env!("CARGO_BIN_EXE_coffer"));
//! env.init();
//! let summary = env.run(["--json", "backup", src]).assert_ok().json();
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The password written to [`CofferEnv::password_file`].
pub const PASSWORD: &str = "correct horse battery staple";

/// Argon2id parameters (`m_cost_kib,t_cost,p_cost`) that make key derivation nearly free.
pub const CHEAP_KDF_PARAMS: &str = "1024,1,1";

/// How long one command may run before it is killed and the test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// A sealed place to run `coffer`: see the module docs.
pub struct CofferEnv {
    dir: TempDir,
    bin: PathBuf,
    repo: PathBuf,
    password_file: PathBuf,
    home: PathBuf,
    data_home: PathBuf,
    config_home: PathBuf,
    cache_home: PathBuf,
    run_as: Option<(u32, u32)>,
    timeout: Duration,
}

impl CofferEnv {
    /// A new environment running the binary at `bin` (from an integration test:
    /// `env!("CARGO_BIN_EXE_coffer")`). Nothing is created in the repository folder yet: call
    /// [`CofferEnv::init`].
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("coffer-test-")
            .tempdir()
            .expect("create a temporary folder");
        let root = dir.path().to_path_buf();
        let env = CofferEnv {
            bin: bin.into(),
            repo: root.join("repo"),
            password_file: root.join("password"),
            home: root.join("home"),
            data_home: root.join("xdg-data"),
            config_home: root.join("xdg-config"),
            cache_home: root.join("xdg-cache"),
            run_as: None,
            timeout: DEFAULT_TIMEOUT,
            dir,
        };
        for d in [&env.home, &env.data_home, &env.config_home, &env.cache_home] {
            fs::create_dir_all(d).expect("create fake home folders");
        }
        fs::write(&env.password_file, format!("{PASSWORD}\n")).expect("write the password file");
        env
    }

    /// Like [`CofferEnv::new`], but every command runs as `uid`/`gid` (the process must be root).
    /// The binary is copied into the environment and the whole environment is handed to that user,
    /// so call [`CofferEnv::hand_over`] on whatever the test creates in it afterwards.
    pub fn new_as_user(bin: impl Into<PathBuf>, uid: u32, gid: u32) -> Self {
        let mut env = CofferEnv::new(bin);
        let copy = env.root().join("bin").join("coffer");
        fs::create_dir_all(copy.parent().unwrap()).unwrap();
        fs::copy(&env.bin, &copy)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", env.bin.display(), copy.display()));
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        env.bin = copy;
        env.run_as = Some((uid, gid));
        // The temporary folder is 0700; let the user in.
        fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
        env.hand_over(env.root());
        env
    }

    /// The user/group commands run as, when not the current one.
    pub fn run_as(&self) -> Option<(u32, u32)> {
        self.run_as
    }

    /// Give `path` (recursively, not following symlinks) to the user commands run as; a no-op when
    /// they run as the current user.
    pub fn hand_over(&self, path: &Path) {
        if let Some((uid, gid)) = self.run_as {
            chown_recursive(path, uid, gid);
        }
    }

    /// Change how long one command may run.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The temporary folder that holds everything (deleted on drop).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `root()/rel`.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root().join(rel)
    }

    /// The repository (`COFFER_REPOSITORY`).
    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// `repo()/rel`.
    pub fn repo_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.repo.join(rel)
    }

    /// The password file (`COFFER_PASSWORD_FILE`), holding [`PASSWORD`].
    pub fn password_file(&self) -> &Path {
        &self.password_file
    }

    /// The fake `HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The fake `XDG_DATA_HOME`.
    pub fn data_home(&self) -> &Path {
        &self.data_home
    }

    /// The fake `XDG_CONFIG_HOME`.
    pub fn config_home(&self) -> &Path {
        &self.config_home
    }

    /// The fake `XDG_CACHE_HOME`.
    pub fn cache_home(&self) -> &Path {
        &self.cache_home
    }

    /// The binary commands run.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Write `password` (plus a newline) to `root()/name` and return its path.
    pub fn write_password_file(&self, name: &str, password: &str) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, format!("{password}\n")).unwrap();
        self.hand_over(&p);
        p
    }

    /// A command with no repository and no password configured: only the fake home folders and
    /// the cheap KDF parameters (the embedded default repository case).
    pub fn bare_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        for (k, _) in std::env::vars_os() {
            if k.as_bytes().starts_with(b"COFFER_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("COFFER_KDF_PARAMS", CHEAP_KDF_PARAMS)
            .env("HOME", &self.home)
            .env("XDG_DATA_HOME", &self.data_home)
            .env("XDG_CONFIG_HOME", &self.config_home)
            .env("XDG_CACHE_HOME", &self.cache_home)
            .env("USER", "coffer-test")
            .env_remove("RUST_LOG")
            .current_dir(self.root())
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// A command with `COFFER_REPOSITORY` and `COFFER_PASSWORD_FILE` set to this environment's.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.bare_cmd(args);
        cmd.env("COFFER_REPOSITORY", &self.repo)
            .env("COFFER_PASSWORD_FILE", &self.password_file);
        cmd
    }

    /// Run `coffer ARGS` (see [`CofferEnv::cmd`]) to completion.
    #[track_caller]
    pub fn run<I, S>(&self, args: I) -> CmdOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_command(self.cmd(args), self.timeout)
    }

    /// Run `coffer ARGS` with no repository or password configured (see [`CofferEnv::bare_cmd`]).
    #[track_caller]
    pub fn run_bare<I, S>(&self, args: I) -> CmdOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_command(self.bare_cmd(args), self.timeout)
    }

    /// Run a command built with [`CofferEnv::cmd`] and then changed.
    #[track_caller]
    pub fn run_cmd(&self, cmd: Command) -> CmdOutput {
        run_command(cmd, self.timeout)
    }

    /// `coffer init`, which must succeed.
    #[track_caller]
    pub fn init(&self) -> CmdOutput {
        let out = self.run(["init"]).assert_ok();
        assert!(
            self.repo_path("config").is_file(),
            "init left no config file\n{out}"
        );
        out
    }

    /// `coffer --json backup ARGS`, which must exit 0; returns the summary. (Global options go
    /// before the subcommand, which works whether or not the CLI also accepts them after it.)
    #[track_caller]
    pub fn backup<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<OsString> = vec!["--json".into(), "backup".into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self.run(all).assert_ok().json()
    }

    /// `coffer --json snapshots ARGS`, which must exit 0; returns the manifests.
    #[track_caller]
    pub fn snapshots<I, S>(&self, args: I) -> Vec<Value>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<OsString> = vec!["--json".into(), "snapshots".into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        let out = self.run(all).assert_ok();
        match out.json() {
            Value::Array(a) => a,
            other => panic!("`snapshots --json` printed {other}, not an array\n{out}"),
        }
    }

    /// The ids of the snapshots, oldest first.
    #[track_caller]
    pub fn snapshot_ids(&self) -> Vec<String> {
        self.snapshots(None::<&str>)
            .iter()
            .map(|m| str_field(m, "id"))
            .collect()
    }

    /// The pack files (`data/<2 hex>/<64 hex>`), sorted by path.
    pub fn pack_files(&self) -> Vec<PathBuf> {
        pack_files(&self.repo)
    }

    /// The names of the files under `keys/`, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = match fs::read_dir(self.repo_path("keys")) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        ids.sort();
        ids
    }
}

/// The pack files (`data/<2 hex>/<64 hex>`) of the repository at `repo`, sorted by path. Files with
/// other names (temporary uploads, say) are not packs and are left out.
pub fn pack_files(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(repo.join("data")) else {
        return out;
    };
    for d in rd.flatten() {
        let dn = d.file_name();
        if !(dn.len() == 2 && is_hex(dn.as_bytes()) && d.path().is_dir()) {
            continue;
        }
        for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let n = f.file_name();
            if n.len() == 64 && is_hex(n.as_bytes()) && n.as_bytes().starts_with(dn.as_bytes()) {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

fn is_hex(b: &[u8]) -> bool {
    b.iter().all(|c| c.is_ascii_hexdigit())
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("lchown {}: {e}", path.display()));
    let md = fs::symlink_metadata(path).unwrap();
    if md.is_dir() {
        for e in fs::read_dir(path).unwrap() {
            chown_recursive(&e.unwrap().path(), uid, gid);
        }
    }
}

/// The string field `key` of a JSON object; panics with the document if it is missing.
#[track_caller]
pub fn str_field(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None => panic!("no string field {key:?} in {v:#}"),
    }
}

/// The unsigned integer field `key` of a JSON object; panics with the document if it is missing.
#[track_caller]
pub fn u64_field(v: &Value, key: &str) -> u64 {
    match v.get(key).and_then(Value::as_u64) {
        Some(n) => n,
        None => panic!("no unsigned integer field {key:?} in {v:#}"),
    }
}

/// Parse an RFC 3339 time into (seconds, nanoseconds) since the Unix epoch.
#[track_caller]
pub fn parse_time(s: &str) -> (i64, u32) {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s:?} is not an RFC 3339 time: {e}"));
    (t.timestamp(), t.timestamp_subsec_nanos())
}

/// SIGINT, for [`send_signal`].
pub const SIGINT: i32 = libc::SIGINT;
/// SIGTERM, for [`send_signal`].
pub const SIGTERM: i32 = libc::SIGTERM;

/// Send `signal` ([`SIGINT`], ...) to the process `pid`.
pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if rc != 0 {
        panic!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
    }
}

/// Wait for `child` for at most `timeout`; kills it and panics when it takes longer.
#[track_caller]
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            return s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process {} still running after {timeout:?}; killed it",
                child.id()
            );
        }
        thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// Spawn a command (stdout and stderr captured, stdin empty) and collect its output once it ends.
/// Fails the test if it runs longer than `timeout`.
#[track_caller]
pub fn run_command(mut cmd: Command, timeout: Duration) -> CmdOutput {
    let command = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let mut nap = Duration::from_millis(1);
    let (status, timed_out) = loop {
        if let Some(s) = child.try_wait().expect("wait for coffer") {
            break (s, false);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            break (child.wait().expect("wait for coffer"), true);
        }
        thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    let out = CmdOutput::new(
        command,
        status,
        t_out.join().unwrap(),
        t_err.join().unwrap(),
    );
    if timed_out {
        panic!("command did not finish within {timeout:?} (killed)\n{out}");
    }
    out
}

/// Collect the output of a child spawned with piped stdout and stderr (after it was signalled,
/// say), waiting at most `timeout`.
#[track_caller]
pub fn collect_child(mut child: Child, command: &str, timeout: Duration) -> CmdOutput {
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let status = wait_with_timeout(&mut child, timeout);
    CmdOutput::new(
        command.to_string(),
        status,
        t_out.join().unwrap(),
        t_err.join().unwrap(),
    )
}

/// `coffer a b 'c d'`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = String::from("coffer");
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"\\$*?".contains(c)) {
            s.push_str(&format!(" {a:?}"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// What a finished command did.
pub struct CmdOutput {
    /// The command line, for messages.
    pub command: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Stdout, lossily decoded.
    pub stdout: String,
    /// Stderr, lossily decoded.
    pub stderr: String,
    /// Stdout as bytes.
    pub stdout_raw: Vec<u8>,
}

impl CmdOutput {
    /// The output of `command`, decoding stdout and stderr lossily.
    pub fn new(command: String, status: ExitStatus, stdout: Vec<u8>, stderr: Vec<u8>) -> Self {
        CmdOutput {
            command,
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            stdout_raw: stdout,
        }
    }

    /// The exit code; `None` when the process was killed by a signal.
    pub fn status_code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The exit code; panics (with the output) when the process was killed by a signal.
    #[track_caller]
    pub fn code(&self) -> i32 {
        match self.status.code() {
            Some(c) => c,
            None => panic!("killed by signal {:?}\n{self}", self.status.signal()),
        }
    }

    /// Stdout followed by stderr.
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Exit code 0, or panic with the output.
    #[track_caller]
    pub fn assert_ok(self) -> Self {
        if !self.status.success() {
            panic!("expected success\n{self}");
        }
        self
    }

    /// Exit code `code`, or panic with the output.
    #[track_caller]
    pub fn assert_code(self, code: i32) -> Self {
        if self.status.code() != Some(code) {
            panic!("expected exit code {code}\n{self}");
        }
        self
    }

    /// A non-zero exit code (not a crash by signal), or panic with the output.
    #[track_caller]
    pub fn assert_failure(self) -> Self {
        match self.status.code() {
            Some(0) => panic!("expected failure\n{self}"),
            None => panic!("expected a failure exit code, not death by signal\n{self}"),
            Some(_) => self,
        }
    }

    /// Stderr holds exactly one non-empty line (a clear error, not a backtrace or usage dump).
    #[track_caller]
    pub fn assert_one_line_error(self) -> Self {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        if lines.len() != 1 {
            panic!(
                "expected a one-line error on stderr, got {} line(s)\n{self}",
                lines.len()
            );
        }
        self
    }

    /// `needle` (case-insensitive) appears in stdout or stderr, or panic with the output.
    #[track_caller]
    pub fn assert_mentions(self, needle: &str) -> Self {
        if !self
            .combined()
            .to_lowercase()
            .contains(&needle.to_lowercase())
        {
            panic!("expected the output to mention {needle:?}\n{self}");
        }
        self
    }

    /// Stdout parsed as one JSON document, or panic with the output.
    #[track_caller]
    pub fn json(&self) -> Value {
        match serde_json::from_str(self.stdout.trim()) {
            Ok(v) => v,
            Err(e) => panic!("stdout is not one JSON document ({e})\n{self}"),
        }
    }

    /// The lines of stdout.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        match (self.status.code(), self.status.signal()) {
            (Some(c), _) => writeln!(f, "exit code: {c}")?,
            (None, s) => writeln!(f, "killed by signal {s:?}")?,
        }
        writeln!(f, "--- stdout ---\n{}", clip(&self.stdout))?;
        write!(f, "--- stderr ---\n{}\n--------------", clip(&self.stderr))
    }
}

impl fmt::Debug for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 6000;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut head = MAX / 2;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - MAX / 2;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n[... {} bytes cut ...]\n{}",
        &s[..head],
        tail - head,
        &s[tail..]
    )
}
