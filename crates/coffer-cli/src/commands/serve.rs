//! `coffer serve`: the scheduler daemon. It loads the config (refusing to start when it has
//! any problem), opens the catalog, and runs `coffer_server::scheduler` with the wall clock
//! until SIGTERM or SIGINT, then shuts down gracefully.
//!
//! Jobs run through [`ProcessRunner`]: each step is this same executable run as a child
//! (`coffer --repo URL --password-file F --json backup ...`, then `check`/`verify`, `forget`,
//! `prune` and `copy`), so a crash or a stuck storage in one job cannot take the daemon down, and
//! a run is exactly what a person would type. Children get their own process group, so a
//! terminal's Ctrl-C or a signal to the daemon's group reaches only the daemon, which then
//! decides how long they may go on.

use crate::cli::Global;
use crate::commands::schedule::{load_config, open_catalog, print_event};
use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::{Context as _, Result};
use clap::Args;
use coffer_core::retention::Policy;
use coffer_server::catalog::TaskKind;
use coffer_server::clock::SystemClock;
use coffer_server::config::{Config, Job, Prune, Repository, Verify};
use coffer_server::runner::{job_runner_impl, JobRunner, RunError, RunOutcome};
use coffer_server::scheduler::{default_owner, Scheduler};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The daemon's config (default: coffer.toml, or COFFER_CONFIG).
    #[arg(long, env = "COFFER_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Runs `serve`.
pub async fn run(ctx: &Ctx, a: ServeArgs) -> Result<u8> {
    let config = Arc::new(load_config(a.config.as_deref())?);
    let (catalog, location) = open_catalog(&config).await?;
    let runner = Arc::new(ProcessRunner::new(&ctx.global)?);
    let quiet = ctx.global.quiet;
    if !quiet {
        eprintln!(
            "coffer: daemon started (pid {}): {} job(s) from {}, catalog {}",
            std::process::id(),
            config.jobs.len(),
            config.path.display(),
            location
        );
    }
    let scheduler = Scheduler::new(
        Arc::clone(&config),
        catalog,
        runner,
        Arc::new(SystemClock),
        default_owner(),
    )
    .with_observer(Arc::new(move |e| {
        if !quiet {
            print_event(e)
        }
    }));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let summary = scheduler.run_until(shutdown).await?;
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "started": summary.started, "succeeded": summary.succeeded,
            "failed": summary.failed, "interrupted": summary.interrupted,
        }));
    } else if !quiet {
        eprintln!(
            "coffer: daemon stopped: {} run(s), {} succeeded, {} failed, {} interrupted",
            summary.started, summary.succeeded, summary.failed, summary.interrupted
        );
    }
    Ok(code::OK)
}

/// Runs a job's steps as child processes of this executable.
pub struct ProcessRunner {
    exe: PathBuf,
    passthrough: Vec<OsString>,
}

/// What one child did.
struct ChildOutput {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl ChildOutput {
    /// The child's error line (`coffer: error: ...`), or its last line of output.
    fn reason(&self, what: &str) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let line = lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("coffer: error: "))
            .or_else(|| lines.last().copied())
            .unwrap_or("no message");
        match self.code {
            Some(c) => format!("{what} failed (exit code {c}): {line}"),
            None => format!("{what} was killed by a signal: {line}"),
        }
    }
}

/// Interrupts the child with SIGINT if the run is dropped before it ends (job timeout,
/// shutdown timeout), so it stops cleanly and releases its lock.
struct StopOnDrop {
    pid: u32,
    done: Arc<AtomicBool>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !self.done.load(Ordering::SeqCst) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGINT);
            }
        }
    }
}

fn flag(name: &str, v: impl ToString) -> [OsString; 2] {
    [name.into(), v.to_string().into()]
}

/// `coffer forget` flags for a retention policy.
fn forget_flags(p: &Policy) -> Vec<OsString> {
    let mut out = Vec::new();
    for (name, v) in [
        ("--keep-last", p.keep_last),
        ("--keep-hourly", p.keep_hourly),
        ("--keep-daily", p.keep_daily),
        ("--keep-weekly", p.keep_weekly),
        ("--keep-monthly", p.keep_monthly),
        ("--keep-yearly", p.keep_yearly),
    ] {
        if let Some(n) = v {
            out.extend(flag(name, n));
        }
    }
    for (name, v) in [
        ("--keep-within", p.keep_within),
        ("--keep-within-hourly", p.keep_within_hourly),
        ("--keep-within-daily", p.keep_within_daily),
        ("--keep-within-weekly", p.keep_within_weekly),
        ("--keep-within-monthly", p.keep_within_monthly),
        ("--keep-within-yearly", p.keep_within_yearly),
    ] {
        if let Some(s) = v {
            out.extend(flag(name, s));
        }
    }
    for t in &p.keep_tags {
        out.extend(flag("--keep-tag", t));
    }
    if let Some(n) = p.min_keep {
        out.extend(flag("--min-keep", n));
    }
    if let Some(n) = p.max_keep {
        out.extend(flag("--max-keep", n));
    }
    if let Some(s) = p.max_size {
        out.extend(flag("--max-size", s));
    }
    if !p.group_by.is_default() {
        let g = &p.group_by;
        let fields: Vec<&str> = [(g.host, "host"), (g.source, "source"), (g.tags, "tags")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        out.extend(flag("--group-by", fields.join(",")));
    }
    out
}

impl ProcessRunner {
    /// A runner using this executable, passing on the global options that matter to children
    /// (cache, connections, bandwidth limits).
    pub fn new(g: &Global) -> Result<ProcessRunner> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let mut passthrough: Vec<OsString> = Vec::new();
        if g.no_cache {
            passthrough.push("--no-cache".into());
        }
        if let Some(d) = &g.cache_dir {
            passthrough.extend(["--cache-dir".into(), d.clone().into_os_string()]);
        }
        if let Some(n) = g.connections {
            passthrough.extend(flag("--connections", n));
        }
        if let Some(n) = g.limit_upload {
            passthrough.extend(flag("--limit-upload", n));
        }
        if let Some(n) = g.limit_download {
            passthrough.extend(flag("--limit-download", n));
        }
        Ok(ProcessRunner { exe, passthrough })
    }

    /// The repository options of a child: `--repo`, the password and `-o`.
    fn repo_args(repo: &Repository) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["--repo".into(), repo.url.clone().into()];
        if let Some(f) = &repo.password_file {
            a.extend(["--password-file".into(), f.clone().into_os_string()]);
        }
        if let Some(c) = &repo.password_command {
            a.extend(flag("--password-command", c));
        }
        for (k, v) in &repo.options {
            a.extend(flag("-o", format!("{k}={v}")));
        }
        a
    }

    /// Runs `coffer ARGS` to its end.
    async fn coffer(
        &self,
        repo: &Repository,
        args: Vec<OsString>,
    ) -> Result<ChildOutput, RunError> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.passthrough)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("COFFER_REPOSITORY")
            .env_remove("COFFER_CONFIG")
            .process_group(0);
        if repo.password_file.is_some() || repo.password_command.is_some() {
            cmd.env_remove("COFFER_PASSWORD_FILE")
                .env_remove("COFFER_PASSWORD")
                .env_remove("COFFER_PASSWORD_COMMAND");
        }
        let child = cmd.spawn().map_err(|e| {
            RunError::retryable(format!("cannot start {}: {e:#}", self.exe.display()))
        })?;
        let done = Arc::new(AtomicBool::new(false));
        let _guard = StopOnDrop {
            pid: child.id(),
            done: Arc::clone(&done),
        };
        let waited = tokio::task::spawn_blocking(move || {
            let out = child.wait_with_output();
            done.store(true, Ordering::SeqCst);
            out
        })
        .await
        .map_err(|e| RunError::retryable(format!("waiting for coffer: {e:#}")))?
        .map_err(|e| RunError::retryable(format!("waiting for coffer: {e:#}")))?;
        Ok(ChildOutput {
            code: waited.status.code(),
            stdout: String::from_utf8_lossy(&waited.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&waited.stderr).into_owned(),
        })
    }

    async fn backup(&self, config: &Config, job: &Job) -> Result<RunOutcome, RunError> {
        let repo = config.repository(&job.repository);
        let mut args = Self::repo_args(repo);
        args.extend(["--json".into(), "backup".into()]);
        args.extend(job.sources.iter().map(OsString::from));
        if let Some(t) = job.backup_type {
            args.extend(flag("--type", t.name()));
        }
        for t in &job.tags {
            args.extend(flag("--tag", t));
        }
        for x in &job.excludes {
            args.extend(flag("--exclude", x));
        }
        if let Some(h) = &job.host {
            args.extend(flag("--host", h));
        }
        let out = self.coffer(repo, args).await?;
        if !matches!(out.code, Some(0) | Some(3)) {
            return Err(RunError::retryable(out.reason("backup")));
        }
        let summary: serde_json::Value = serde_json::from_str(out.stdout.trim()).map_err(|e| {
            RunError::retryable(format!(
                "backup printed no JSON summary ({e:#}): {}",
                out.stdout
            ))
        })?;
        let mut outcome = RunOutcome {
            snapshot_id: summary["snapshot_id"].as_str().map(String::from),
            bytes_added: summary["bytes_added"].as_u64(),
            partial: out.code == Some(3),
            notes: Vec::new(),
        };
        if outcome.partial {
            let n = summary["unreadable"].as_array().map_or(0, Vec::len);
            outcome.notes.push(format!(
                "{n} source file(s) could not be read (see the snapshot)"
            ));
        }
        let Some(id) = outcome.snapshot_id.clone() else {
            return Err(RunError::retryable(format!(
                "backup printed no snapshot id: {}",
                out.stdout
            )));
        };

        // Verify.
        let verify: Option<Vec<OsString>> = match &job.verify {
            Verify::None => None,
            Verify::Metadata => Some(vec!["check".into()]),
            Verify::Sample(share) => Some(vec![
                "check".into(),
                "--read-data-subset".into(),
                share.into(),
            ]),
            Verify::Full => Some(vec!["verify".into(), id.clone().into()]),
        };
        if let Some(step) = verify {
            let mut args = Self::repo_args(repo);
            args.extend(step);
            let out = self.coffer(repo, args).await?;
            if out.code != Some(0) {
                return Err(RunError::fatal(
                    out.reason(&format!("verification ({})", job.verify.name())),
                    outcome,
                ));
            }
        }

        // Retention, and prune after it when the job says so.
        if let Some(retention) = &job.retention {
            let mut args = Self::repo_args(repo);
            args.push("forget".into());
            // Without flags, forget applies the repository's stored policy and time zone.
            if let Some(policy) = retention.policy() {
                args.extend(forget_flags(policy));
                args.extend(flag("--timezone", job.timezone.name()));
            }
            let prune = matches!(job.prune, Prune::AfterForget);
            let mut with_prune = args.clone();
            if prune {
                with_prune.push("--prune".into());
            }
            let out = self.coffer(repo, with_prune).await?;
            if out.code != Some(0) {
                return Err(RunError::fatal(out.reason("forget"), outcome));
            }
        }

        // Mirrors.
        for m in &job.mirrors {
            let mirror = config.repository(m);
            let mut args: Vec<OsString> = Vec::new();
            for (k, v) in repo.options.iter().chain(mirror.options.iter()) {
                args.extend(flag("-o", format!("{k}={v}")));
            }
            args.extend(["copy".into(), "--from".into(), repo.url.clone().into()]);
            args.extend(["--to".into(), mirror.url.clone().into()]);
            if let Some(f) = &repo.password_file {
                args.extend(["--from-password-file".into(), f.clone().into_os_string()]);
            }
            if let Some(f) = &mirror.password_file {
                args.extend(["--to-password-file".into(), f.clone().into_os_string()]);
            }
            if let Some(c) = repo
                .password_command
                .as_ref()
                .or(mirror.password_command.as_ref())
            {
                args.extend(flag("--password-command", c));
            }
            args.push(id.clone().into());
            let out = self.coffer(mirror, args).await?;
            if out.code != Some(0) {
                return Err(RunError::fatal(
                    out.reason(&format!("copy to mirror {m:?}")),
                    outcome,
                ));
            }
            outcome.notes.push(format!("copied to {m}"));
        }
        Ok(outcome)
    }

    async fn prune(&self, config: &Config, job: &Job) -> Result<RunOutcome, RunError> {
        let repo = config.repository(&job.repository);
        let mut args = Self::repo_args(repo);
        args.push("prune".into());
        let out = self.coffer(repo, args).await?;
        if out.code != Some(0) {
            return Err(RunError::retryable(out.reason("prune")));
        }
        Ok(RunOutcome::default())
    }
}

#[job_runner_impl]
impl JobRunner for ProcessRunner {
    async fn run(
        &self,
        config: &Config,
        job: &Job,
        kind: TaskKind,
    ) -> Result<RunOutcome, RunError> {
        match kind {
            TaskKind::Backup => self.backup(config, job).await,
            TaskKind::Prune => self.prune(config, job).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command as CliCommand};
    use clap::Parser;

    #[test]
    fn a_retention_policy_becomes_forget_flags_the_cli_accepts() {
        let policy: Policy = serde_json::from_value(serde_json::json!({
            "keep_last": -1, "keep_daily": 7, "keep_weekly": 4, "keep_within": "1y2m",
            "keep_within_hourly": "2d", "keep_tags": ["a", "b,c"], "min_keep": 3,
            "max_keep": 50, "max_size": "50GiB", "group_by": "host,tags",
        }))
        .unwrap_or_else(|e| panic!("{e:#}"));
        let mut argv: Vec<OsString> = vec!["coffer".into(), "forget".into()];
        argv.extend(forget_flags(&policy));
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e:#}"));
        let CliCommand::Forget(forget) = cli.command else {
            panic!("not forget")
        };
        let a = forget.policy;
        assert_eq!(a.keep_last, Some(-1));
        assert_eq!((a.keep_daily, a.keep_weekly), (Some(7), Some(4)));
        assert_eq!(a.keep_within.as_deref(), Some("1y2m"));
        assert_eq!(a.keep_within_hourly.as_deref(), Some("2d"));
        assert_eq!(a.keep_tags, ["a", "b,c"]);
        assert_eq!((a.min_keep, a.max_keep), (Some(3), Some(50)));
        assert_eq!(a.max_size.as_deref(), Some("50GiB"));
        assert_eq!(a.group_by.as_deref(), Some("host,tags"));
        assert!(a.keep_hourly.is_none() && a.keep_monthly.is_none());
    }
}
