//! The PostgreSQL catalog against a real server (started here, in a temporary folder, as an
//! unprivileged user when the tests run as root): the catalog contract, racing claims, and two
//! daemons sharing one catalog, each scheduled run happening on exactly one of them.

use super::*;
use crate::catalog::tests::{claims_once_between, contract};
use crate::clock::SystemClock;
use crate::config::{Config, Job};
use crate::runner::{JobRunner, RunError, RunOutcome};
use crate::scheduler::{Event, Scheduler};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A PostgreSQL server for these tests, stopped when the test binary exits.
struct Server {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    user: Option<String>,
}

fn bin_dir() -> PathBuf {
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
    found.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!("PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install postgresql")
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl Server {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn start() -> Server {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("coffer-catalog-pg-")
            .tempdir()
            .unwrap();
        // initdb refuses root: run the server as `nobody`, owning the folder.
        let user = is_root().then(|| "nobody".to_string());
        if user.is_some() {
            let ok = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the server's folder");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = Server {
            dir,
            bin,
            port,
            user,
        };
        let data = s.dir.path().join("data");
        let out = s
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = s
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(s.dir.path().join("log"))
            .args(["-w", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                s.port,
                s.dir.path().display()
            ))
            .arg("start")
            .output()
            .expect("run pg_ctl");
        if !out.status.success() {
            let log = std::fs::read_to_string(s.dir.path().join("log")).unwrap_or_default();
            s.port = 0;
            panic!(
                "pg_ctl start: {}{log}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        s
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        // The static is never dropped: remove the folder here.
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

static SERVER: OnceLock<Server> = OnceLock::new();

extern "C" fn stop_server() {
    if let Some(s) = SERVER.get() {
        s.stop();
    }
}

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let s = Server::start();
        // SAFETY: registering a plain extern "C" function with atexit.
        unsafe { atexit(stop_server) };
        s
    })
}

extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

/// A new, empty database.
async fn database(name: &str) -> String {
    let s = server();
    let (client, conn) = tokio_postgres::connect(&s.url("postgres"), NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    s.url(name)
}

#[tokio::test]
async fn postgres_catalog_contract() {
    let url = database("contract").await;
    let c = PostgresCatalog::connect(&url).await.unwrap();
    contract(&c).await;
    // Connecting again finds the tables (and keeps the rows).
    let again = PostgresCatalog::connect(&url).await.unwrap();
    assert_eq!(again.history(None, 100).await.unwrap().len(), 3);
}

#[tokio::test]
async fn two_connections_claim_each_run_once() {
    let url = database("racing").await;
    let (a, b) = tokio::join!(
        PostgresCatalog::connect(&url),
        PostgresCatalog::connect(&url)
    );
    claims_once_between(&a.unwrap(), &b.unwrap()).await;
}

/// A runner that logs which daemon ran which job, taking a while each time.
struct Logging {
    daemon: &'static str,
    log: Arc<Mutex<Vec<(String, String)>>>,
}

#[async_trait]
impl JobRunner for Logging {
    async fn run(
        &self,
        _config: &Config,
        job: &Job,
        _kind: TaskKind,
    ) -> std::result::Result<RunOutcome, RunError> {
        self.log
            .lock()
            .unwrap()
            .push((self.daemon.to_string(), job.name.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(RunOutcome {
            snapshot_id: Some(format!("by-{}", self.daemon)),
            ..RunOutcome::default()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_sharing_a_catalog_run_each_scheduled_time_once() {
    let url = database("shared").await;
    let text = format!(
        "catalog = \"{url}\"\nmax_concurrent_jobs = 4\n\
         [repository.r]\nurl = \"/srv/r\"\n\
         [[job]]\nname = \"every-second\"\nsource = \"/a\"\nrepository = \"r\"\n\
         schedule = \"* * * * * *\"\ntimezone = \"UTC\"\n\
         [[job]]\nname = \"every-other\"\nsource = \"/b\"\nrepository = \"r\"\n\
         schedule = \"*/2 * * * * *\"\ntimezone = \"UTC\"\n"
    );
    let config = Arc::new(Config::parse(&text, Path::new("/t/coffer.toml")).unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let skipped = Arc::new(Mutex::new(Vec::new()));
    let mut daemons = Vec::new();
    for name in ["alpha", "beta"] {
        let catalog = Arc::new(PostgresCatalog::connect(&url).await.unwrap());
        let skipped = Arc::clone(&skipped);
        let s = Scheduler::new(
            Arc::clone(&config),
            catalog,
            Arc::new(Logging {
                daemon: name,
                log: Arc::clone(&log),
            }),
            Arc::new(SystemClock),
            format!("{name}-host/1"),
        )
        .with_observer(Arc::new(move |e: &Event| {
            if let Event::Skipped { reason, .. } = e {
                skipped.lock().unwrap().push(reason.clone());
            }
        }));
        daemons.push(tokio::spawn(
            s.run_until(tokio::time::sleep(Duration::from_millis(5500))),
        ));
    }
    for d in daemons {
        let summary = d.await.unwrap().unwrap();
        assert_eq!(summary.failed + summary.interrupted, 0, "{summary:?}");
    }

    let catalog = PostgresCatalog::connect(&url).await.unwrap();
    let rows = catalog.history(None, 1000).await.unwrap();
    let calls = log.lock().unwrap().clone();
    // Every call of a runner is one row, and no (job, time) has two rows.
    assert_eq!(calls.len(), rows.len(), "{calls:?}\n{rows:#?}");
    let distinct: BTreeSet<(String, i64)> = rows
        .iter()
        .map(|r| (r.job.clone(), r.scheduled_at.timestamp_millis()))
        .collect();
    assert_eq!(distinct.len(), rows.len(), "a time ran twice: {rows:#?}");
    // Each daemon's calls match the rows it owns.
    let mut by_owner: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        assert_eq!(r.status, RunStatus::Success);
        let daemon = r.owner.split('-').next().unwrap().to_string();
        assert_eq!(r.snapshot_id.as_deref(), Some(&*format!("by-{daemon}")));
        *by_owner.entry(daemon).or_default() += 1;
    }
    for (daemon, n) in &by_owner {
        assert_eq!(calls.iter().filter(|(d, _)| d == daemon).count(), *n);
    }
    // Both daemons woke for every time; for each, one ran it and the other skipped it.
    let per_job = |job: &str| rows.iter().filter(|r| r.job == job).count();
    assert!(per_job("every-second") >= 4, "{rows:#?}");
    assert!(per_job("every-other") >= 2, "{rows:#?}");
    let skipped = skipped.lock().unwrap();
    let claimed_elsewhere = skipped
        .iter()
        .filter(|r| r.contains("already claimed"))
        .count();
    assert!(
        claimed_elsewhere + 2 >= rows.len(),
        "{} rows but only {claimed_elsewhere} skips as already claimed: {skipped:?}",
        rows.len()
    );
}
