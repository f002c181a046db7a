//! `coffer schedule list|next|run|history`: the daemon's jobs, from its config and catalog.
//! Also the helpers `serve` and `status` share: loading the config, opening the catalog,
//! printing times and events.

use crate::commands::serve::ops_runner;
use crate::context::Ctx;
use crate::output::{self, code, UsageError};
use anyhow::{anyhow, Context as _, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use coffer_core::retention::Tz;
use coffer_server::catalog::{self, Catalog, RunRecord, RunStatus, TaskKind};
use coffer_server::clock::SystemClock;
use coffer_server::config::{CatalogLocation, Config};
use coffer_server::scheduler::{default_owner, tasks, Event, Scheduler};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `--config`, which every daemon command takes.
#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// The daemon's config (default: coffer.toml, or COFFER_CONFIG).
    #[arg(long, env = "COFFER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `schedule` subcommands.
#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// List the jobs with their next run times (and check the config).
    List(ConfigArg),
    /// The next run times of a job.
    Next {
        /// The job.
        job: String,
        /// How many.
        #[arg(long, short = 'n', default_value_t = 5)]
        count: usize,
        /// The job's prune schedule instead of its backup schedule.
        #[arg(long)]
        prune: bool,
        /// The config.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run a job now, in this process, and record it in the catalog.
    Run {
        /// The job.
        job: String,
        /// Run the job's prune instead of its backup.
        #[arg(long)]
        prune: bool,
        /// The config.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// The runs recorded in the catalog, newest first.
    History {
        /// Only this job's runs.
        job: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The config.
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// Loads and checks the config: `path`, else `./coffer.toml`. Problems are usage errors
/// naming the file and line.
pub fn load_config(path: Option<&Path>) -> Result<Config> {
    let path = path.unwrap_or(Path::new("coffer.toml"));
    Config::load(path).map_err(|e| UsageError(format!("{e:#}")).into())
}

/// The default catalog: `catalog.db` under the user's data directory.
fn default_catalog() -> Result<PathBuf> {
    let data = dirs::data_dir().ok_or_else(|| {
        anyhow!("cannot find the user's data directory: set `catalog` in the config")
    })?;
    Ok(data.join("coffer").join("catalog.db"))
}

/// Opens the config's catalog (the default SQLite file when it names none); returns it with
/// its location for messages.
pub async fn open_catalog(config: &Config) -> Result<(Arc<dyn Catalog>, String)> {
    let location = match &config.catalog {
        Some(l) => l.clone(),
        None => CatalogLocation::Sqlite(default_catalog()?),
    };
    let c = catalog::open(&location)
        .await
        .with_context(|| format!("cannot open the catalog {}", location.display()))?;
    Ok((c, location.display()))
}

/// `2025-06-01 02:00:00 CEST`.
pub fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// A daemon event as one line on stderr.
pub fn print_event(e: &Event) {
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    let line = match e {
        Event::Started {
            job,
            kind,
            scheduled_at,
            trigger,
        } => format!(
            "{job} ({kind}): started, {trigger} run for {}",
            scheduled_at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        Event::Retrying {
            job,
            kind,
            attempt,
            delay,
            error,
        } => format!(
            "{job} ({kind}): failed: {error}; try {attempt} in {}",
            coffer_server::duration::format(*delay)
        ),
        Event::Finished {
            job,
            kind,
            status,
            snapshot_id,
            error,
        } => {
            let mut s = format!("{job} ({kind}): {status}");
            if let Some(id) = snapshot_id {
                s.push_str(&format!(", snapshot {}", short(id)));
            }
            if let Some(e) = error {
                s.push_str(&format!(": {e:#}"));
            }
            s
        }
        Event::Skipped {
            job,
            kind,
            scheduled_at,
            reason,
        } => format!(
            "{job} ({kind}): not running {}: {reason}",
            scheduled_at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        Event::ShuttingDown { running } => {
            format!("shutting down; waiting for {running} running job(s)")
        }
    };
    eprintln!("coffer: [{now}] {line}");
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Runs `schedule`.
pub async fn run(ctx: &Ctx, c: ScheduleCommand) -> Result<u8> {
    match c {
        ScheduleCommand::List(a) => list(ctx, &a),
        ScheduleCommand::Next {
            job,
            count,
            prune,
            config,
        } => next(ctx, &config, &job, count, prune),
        ScheduleCommand::Run { job, prune, config } => run_now(ctx, &config, &job, prune).await,
        ScheduleCommand::History { job, limit, config } => {
            history(ctx, &config, job.as_deref(), limit).await
        }
    }
}

fn list(ctx: &Ctx, a: &ConfigArg) -> Result<u8> {
    let config = load_config(a.config.as_deref())?;
    let now = Utc::now();
    let rows: Vec<serde_json::Value> = tasks(&config)
        .iter()
        .map(|t| {
            let job = &config.jobs[t.job];
            let next = t.schedule.next_after(now, t.timezone);
            serde_json::json!({
                "job": job.name,
                "kind": t.kind,
                "schedule": t.schedule.written(),
                "expression": t.schedule.expression(),
                "timezone": t.timezone.name(),
                "repository": job.repository,
                "sources": job.sources,
                "type": job.backup_type.map(|b| b.name()),
                "verify": job.verify.name(),
                "mirrors": job.mirrors,
                "next_run": next,
                "next_run_local": next.map(|n| local_time(n, t.timezone)),
            })
        })
        .collect();
    if ctx.global.json {
        output::print_json(&rows);
        return Ok(code::OK);
    }
    if rows.is_empty() {
        println!("no jobs in {}", config.path.display());
        return Ok(code::OK);
    }
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            [
                s("job"),
                s("kind"),
                s("schedule"),
                s("timezone"),
                s("repository"),
                s("next_run_local"),
            ]
        })
        .collect();
    print_table(
        [
            "JOB",
            "TASK",
            "SCHEDULE",
            "TIMEZONE",
            "REPOSITORY",
            "NEXT RUN",
        ],
        &table,
    );
    Ok(code::OK)
}

/// Prints rows under a header, columns padded to their widest cell.
pub fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut width = header.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn next(ctx: &Ctx, a: &ConfigArg, name: &str, count: usize, prune: bool) -> Result<u8> {
    let config = load_config(a.config.as_deref())?;
    let job = config.job(name).map_err(|e| UsageError(format!("{e:#}")))?;
    let kind = if prune {
        TaskKind::Prune
    } else {
        TaskKind::Backup
    };
    let spec = tasks(&config)
        .into_iter()
        .find(|t| config.jobs[t.job].name == name && t.kind == kind)
        .ok_or_else(|| UsageError(format!("job {name:?} has no prune schedule")))?;
    let times = spec.schedule.upcoming(Utc::now(), spec.timezone, count);
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "job": job.name,
            "kind": kind,
            "schedule": spec.schedule.written(),
            "timezone": spec.timezone.name(),
            "times": times.iter().map(|t| serde_json::json!({
                "utc": t, "local": local_time(*t, spec.timezone),
            })).collect::<Vec<_>>(),
        }));
    } else {
        for t in &times {
            println!("{}", local_time(*t, spec.timezone));
        }
    }
    Ok(code::OK)
}

async fn run_now(ctx: &Ctx, a: &ConfigArg, name: &str, prune: bool) -> Result<u8> {
    let config = Arc::new(load_config(a.config.as_deref())?);
    config.job(name).map_err(|e| UsageError(format!("{e:#}")))?;
    let (catalog, _) = open_catalog(&config).await?;
    let runner = Arc::new(ops_runner(ctx)?);
    let quiet = ctx.global.quiet;
    let s = Scheduler::new(
        config,
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
    let kind = if prune {
        TaskKind::Prune
    } else {
        TaskKind::Backup
    };
    let r = s.run_now(name, kind).await?;
    if ctx.global.json {
        output::print_json(&r);
    }
    Ok(if r.status.is_success() {
        code::OK
    } else {
        code::FAILURE
    })
}

/// A run's duration, such as `1min 12s`, or `-` while it runs.
pub fn run_duration(r: &RunRecord) -> String {
    r.finished_at
        .map(|f| output::duration((f - r.started_at).num_milliseconds().max(0) as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

async fn history(ctx: &Ctx, a: &ConfigArg, job: Option<&str>, limit: usize) -> Result<u8> {
    let config = load_config(a.config.as_deref())?;
    let (catalog, _) = open_catalog(&config).await?;
    let runs = catalog.history(job, limit).await?;
    if ctx.global.json {
        output::print_json(&runs);
        return Ok(code::OK);
    }
    if runs.is_empty() {
        println!("no runs recorded");
        return Ok(code::OK);
    }
    let tz = config.timezone;
    let rows: Vec<[String; 9]> = runs
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                r.job.clone(),
                r.kind.to_string(),
                local_time(r.scheduled_at, tz),
                local_time(r.started_at, tz),
                run_duration(r),
                r.status.to_string(),
                r.snapshot_id
                    .as_deref()
                    .map(short)
                    .unwrap_or("-")
                    .to_string(),
                describe(r),
            ]
        })
        .collect();
    print_table(
        [
            "ID",
            "JOB",
            "TASK",
            "SCHEDULED",
            "STARTED",
            "TOOK",
            "STATUS",
            "SNAPSHOT",
            "DETAILS",
        ],
        &rows,
    );
    Ok(code::OK)
}

/// Bytes added, tries, error and notes, on one line.
pub fn describe(r: &RunRecord) -> String {
    let mut parts = Vec::new();
    if let Some(b) = r.bytes_added {
        parts.push(format!("{} added", output::size(b)));
    }
    if r.attempts > 1 {
        parts.push(format!("{} tries", r.attempts));
    }
    if r.status != RunStatus::Success {
        if let Some(e) = &r.error {
            parts.push(e.clone());
        }
    }
    parts.extend(r.notes.iter().cloned());
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}
