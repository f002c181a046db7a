//! The daemon's TOML configuration (`coffer.toml`): repositories, jobs and daemon settings.
//! [`Config::load`] reads and checks a whole file and reports every problem with its file and
//! line; a config that loads is complete (every job has a valid schedule, time zone and known
//! repositories). The full reference is `docs/daemon.md`.

mod build;
mod raw;

use crate::error::{ConfigIssue, Error, Result};
use crate::retry::RetryPolicy;
use crate::schedule::Schedule;
use chrono_tz::Tz;
use coffer_core::retention::Policy;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the run history is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogLocation {
    /// A SQLite file (`sqlite:///var/lib/coffer/catalog.db`, or a plain path).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://user@host:5432/db`), shared by several daemons.
    Postgres(String),
}

impl CatalogLocation {
    /// Parses `sqlite://PATH`, `postgres://...`/`postgresql://...` or a plain path; relative
    /// paths are taken from `base`.
    pub fn parse(s: &str, base: &Path) -> std::result::Result<CatalogLocation, String> {
        let s = s.trim();
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(CatalogLocation::Postgres(s.to_string()));
        }
        let path = match s.strip_prefix("sqlite://") {
            Some(p) => p,
            None if s.contains("://") => {
                return Err(format!(
                    "catalog {s:?} is neither sqlite://PATH nor postgres://USER@HOST/DB"
                ))
            }
            None => s,
        };
        if path.is_empty() {
            return Err("catalog: the SQLite path is empty".into());
        }
        Ok(CatalogLocation::Sqlite(base.join(path)))
    }

    /// The location for messages, with any password in a URL hidden.
    pub fn display(&self) -> String {
        match self {
            CatalogLocation::Sqlite(p) => format!("sqlite://{}", p.display()),
            CatalogLocation::Postgres(url) => redact_url(url),
        }
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.split_once('@') {
        Some(p) => p,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Daemon-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Jobs run at once, at most (default 2).
    pub max_concurrent_jobs: usize,
    /// A run missed while the daemon was down runs at start-up when it is at most this old
    /// (default 1d; 0 disables catch-up).
    pub catch_up_window: Duration,
    /// How failed runs are retried.
    pub retry: RetryPolicy,
    /// On SIGTERM, how long running jobs may take before they are stopped (default 5min).
    pub shutdown_timeout: Duration,
    /// A run taking longer is stopped and fails (default 1d).
    pub job_timeout: Duration,
    /// How late a job may be before `status` calls it overdue (default 1h).
    pub overdue_margin: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_concurrent_jobs: 2,
            catch_up_window: Duration::from_secs(86_400),
            retry: RetryPolicy::default(),
            shutdown_timeout: Duration::from_secs(300),
            job_timeout: Duration::from_secs(86_400),
            overdue_margin: Duration::from_secs(3600),
        }
    }
}

/// Which retention policy a job applies after its backup.
#[derive(Debug, Clone, PartialEq)]
pub enum Retention {
    /// This one, from the config (counted in the job's time zone).
    Policy(Box<Policy>),
    /// The one stored in the repository (`retention = "repository"`; `coffer config
    /// set-retention`), with the time zone stored beside it.
    Repository,
}

impl Retention {
    /// The policy given in the config (`None` for the repository's own).
    pub fn policy(&self) -> Option<&Policy> {
        match self {
            Retention::Policy(p) => Some(&**p),
            Retention::Repository => None,
        }
    }
}

/// A `[repository.NAME]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Repository {
    /// Its name in the config.
    pub name: String,
    /// Where it is: a path (relative to the config's folder) or a URL.
    pub url: String,
    /// Its password file (relative to the config's folder).
    pub password_file: Option<PathBuf>,
    /// A command printing its password.
    pub password_command: Option<String>,
    /// The retention policy of jobs that name none.
    pub retention: Option<Retention>,
    /// Storage options (`s3.endpoint = "..."`), passed as `-o KEY=VALUE`.
    pub options: BTreeMap<String, String>,
}

/// The backup type a job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupType {
    /// Read every file.
    Full,
    /// Relative to the latest snapshot of the source.
    Incremental,
    /// Relative to the latest full snapshot of the source.
    Differential,
}

impl BackupType {
    /// The name `coffer backup --type` takes.
    pub fn name(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Incremental => "incremental",
            BackupType::Differential => "differential",
        }
    }
}

/// What is checked after a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Nothing.
    None,
    /// The repository's structure: indexes, snapshots, trees (`coffer check`).
    Metadata,
    /// The structure plus a share of the data, such as `10%` (`coffer check
    /// --read-data-subset`).
    Sample(String),
    /// Every blob of the new snapshot, every file's SHA-256 (`coffer verify ID`).
    Full,
}

impl Verify {
    /// The name as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Verify::None => "none",
            Verify::Metadata => "metadata",
            Verify::Sample(_) => "sample",
            Verify::Full => "full",
        }
    }
}

/// When prune runs for a job's repository.
#[derive(Debug, Clone)]
pub enum Prune {
    /// Never (the default).
    Never,
    /// After each backup's forget (`forget --prune`).
    AfterForget,
    /// On its own schedule, as a separate task named `JOB:prune`.
    Schedule(Box<Schedule>),
}

/// A `[[job]]`.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its unique name.
    pub name: String,
    /// What to back up: paths (relative to the config's folder) or one database URL.
    pub sources: Vec<String>,
    /// The repository's name.
    pub repository: String,
    /// When it runs.
    pub schedule: Schedule,
    /// Its time zone (for the schedule and for retention's calendar).
    pub timezone: Tz,
    /// The backup type (default: coffer's, incremental when a parent exists).
    pub backup_type: Option<BackupType>,
    /// Tags given to each snapshot.
    pub tags: Vec<String>,
    /// Exclude globs.
    pub excludes: Vec<String>,
    /// The host name recorded (default: this machine's).
    pub host: Option<String>,
    /// The retention policy applied after each backup (the job's, else its repository's).
    pub retention: Option<Retention>,
    /// When prune runs.
    pub prune: Prune,
    /// What is checked after each backup.
    pub verify: Verify,
    /// Repositories each new snapshot is copied to.
    pub mirrors: Vec<String>,
    /// How late it may be before it is overdue.
    pub overdue_margin: Duration,
}

/// A whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Where the run history is kept (`None`: the default SQLite file, chosen by the caller).
    pub catalog: Option<CatalogLocation>,
    /// The default time zone of jobs.
    pub timezone: Tz,
    /// Daemon-wide settings.
    pub settings: Settings,
    /// The repositories by name.
    pub repositories: BTreeMap<String, Repository>,
    /// The jobs, in file order.
    pub jobs: Vec<Job>,
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(vec![ConfigIssue {
                file: path.display().to_string(),
                line: 0,
                reason: format!("cannot read the config: {e}"),
            }])
        })?;
        Config::parse(&text, path)
    }

    /// Checks `text` as if read from `path` (relative paths in it are taken from `path`'s
    /// folder).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        build::build(text, path)
    }

    /// The job named `name`.
    pub fn job(&self, name: &str) -> Result<&Job> {
        self.jobs.iter().find(|j| j.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.jobs.iter().map(|j| j.name.as_str()).collect();
            Error::new(
                crate::ErrorKind::UnknownJob,
                format!(
                    "no job named {name:?} in {} (jobs: {})",
                    self.path.display(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            )
        })
    }

    /// The repository a job names (it exists: the config was checked).
    pub fn repository(&self, name: &str) -> &Repository {
        &self.repositories[name]
    }
}

/// The time zone of this machine: `TZ` if it names an IANA zone, else `/etc/localtime`'s link
/// target or `/etc/timezone`, else UTC.
pub fn local_timezone() -> Tz {
    if let Ok(tz) = std::env::var("TZ") {
        if let Ok(z) = tz.trim_start_matches(':').parse() {
            return z;
        }
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime") {
        let s = target.to_string_lossy();
        if let Some((_, name)) = s.split_once("zoneinfo/") {
            if let Ok(z) = name.parse() {
                return z;
            }
        }
    }
    if let Ok(s) = std::fs::read_to_string("/etc/timezone") {
        if let Ok(z) = s.trim().parse() {
            return z;
        }
    }
    Tz::UTC
}

#[cfg(test)]
mod tests;
