//! Checks the TOML shapes ([`super::raw`]) and builds a [`Config`], collecting every problem
//! with its line.

use super::raw::{DayOfWeek, OneOrMany, RawConfig, RawJob, RawPrune, RawRepository, RawRetention};
use super::{
    BackupType, CatalogLocation, Config, Job, Prune, Repository, Retention, Settings, Verify,
};
use crate::error::{ConfigIssue, Error, Result};
use crate::schedule::{Friendly, Schedule};
use chrono_tz::Tz;
use coffer_core::duration;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Collects problems for one file.
struct Issues<'a> {
    file: String,
    text: &'a str,
    list: Vec<ConfigIssue>,
}

impl Issues<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn at(&mut self, span: Range<usize>, reason: impl Into<String>) {
        let line = self.line_of(span.start);
        self.list.push(ConfigIssue {
            file: self.file.clone(),
            line,
            reason: reason.into(),
        });
    }

    fn file(&mut self, reason: impl Into<String>) {
        self.list.push(ConfigIssue {
            file: self.file.clone(),
            line: 0,
            reason: reason.into(),
        });
    }
}

/// A path from the config: relative ones are taken from the config's folder.
fn resolve_path(base: &Path, p: &str) -> PathBuf {
    base.join(p)
}

/// A repository location or source: URLs stay, relative paths are taken from `base`.
fn resolve_location(base: &Path, s: &str) -> String {
    if s.contains("://") {
        s.to_string()
    } else {
        base.join(s).to_string_lossy().into_owned()
    }
}

fn duration_of(
    issues: &mut Issues<'_>,
    v: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
) -> Duration {
    match v {
        None => default,
        Some(s) => match duration::parse(s.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                issues.at(s.span(), format!("{key}: {e:#}"));
                default
            }
        },
    }
}

fn timezone_of(issues: &mut Issues<'_>, v: &Spanned<String>, what: &str) -> Option<Tz> {
    match v.get_ref().parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            issues.at(
                v.span(),
                format!(
                    "{what}invalid timezone {:?}: use an IANA name such as Europe/Berlin or UTC",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

/// Builds the config from `text` (read from `path`).
pub(super) fn build(text: &str, path: &Path) -> Result<Config> {
    let mut issues = Issues {
        file: path.display().to_string(),
        text,
        list: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let reason = e.message().trim().to_string();
            match e.span() {
                Some(span) => issues.at(span, reason),
                None => issues.file(reason),
            }
            return Err(Error::config(issues.list));
        }
    };
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();

    let catalog = raw.catalog.as_ref().and_then(|c| {
        CatalogLocation::parse(c.get_ref(), &base)
            .map_err(|e| issues.at(c.span(), e))
            .ok()
    });
    let timezone = match &raw.timezone {
        Some(t) => timezone_of(&mut issues, t, "").unwrap_or(Tz::UTC),
        None => super::local_timezone(),
    };
    let settings = settings(&mut issues, &raw);

    let mut repositories = BTreeMap::new();
    for (name, r) in &raw.repository {
        if let Some(repo) = repository(&mut issues, &base, name, r) {
            repositories.insert(name.clone(), repo);
        }
    }

    let mut jobs = Vec::new();
    let mut names = HashSet::new();
    for j in &raw.job {
        let name = j.get_ref().name.get_ref();
        if !names.insert(name.clone()) {
            issues.at(
                j.get_ref().name.span(),
                format!("duplicate job name {name:?}: job names must be unique"),
            );
            continue;
        }
        if let Some(job) = job(
            &mut issues,
            &base,
            j,
            &raw.repository,
            timezone,
            settings.overdue_margin,
        ) {
            jobs.push(job);
        }
    }

    if !issues.list.is_empty() {
        return Err(Error::config(issues.list));
    }
    Ok(Config {
        path: path.to_path_buf(),
        catalog,
        timezone,
        settings,
        repositories,
        jobs,
    })
}

fn settings(issues: &mut Issues<'_>, raw: &RawConfig) -> Settings {
    let d = Settings::default();
    let mut s = Settings {
        max_concurrent_jobs: d.max_concurrent_jobs,
        catch_up_window: duration_of(
            issues,
            &raw.catch_up_window,
            "catch_up_window",
            d.catch_up_window,
        ),
        retry: d.retry,
        shutdown_timeout: duration_of(
            issues,
            &raw.shutdown_timeout,
            "shutdown_timeout",
            d.shutdown_timeout,
        ),
        job_timeout: duration_of(issues, &raw.job_timeout, "job_timeout", d.job_timeout),
        overdue_margin: duration_of(
            issues,
            &raw.overdue_margin,
            "overdue_margin",
            d.overdue_margin,
        ),
    };
    if let Some(n) = &raw.max_concurrent_jobs {
        match usize::try_from(*n.get_ref()) {
            Ok(v) if v >= 1 => s.max_concurrent_jobs = v,
            _ => issues.at(
                n.span(),
                format!("max_concurrent_jobs is {}: use 1 or more", n.get_ref()),
            ),
        }
    }
    if s.job_timeout.is_zero() {
        if let Some(t) = &raw.job_timeout {
            issues.at(t.span(), "job_timeout is 0: give a duration such as 6h");
        }
    }
    if let Some(r) = &raw.retry {
        let span = r.span();
        let r = r.get_ref();
        if let Some(a) = r.attempts {
            match u32::try_from(a) {
                Ok(v) if v >= 1 => s.retry.attempts = v,
                _ => issues.at(
                    span.clone(),
                    format!("retry.attempts is {a}: use 1 (no retry) or more"),
                ),
            }
        }
        for (key, v, slot) in [
            ("retry.delay", &r.delay, &mut s.retry.delay),
            ("retry.max_delay", &r.max_delay, &mut s.retry.max_delay),
        ] {
            if let Some(v) = v {
                match duration::parse(v) {
                    Ok(d) => *slot = d,
                    Err(e) => issues.at(span.clone(), format!("{key}: {e:#}")),
                }
            }
        }
        if s.retry.max_delay < s.retry.delay {
            s.retry.max_delay = s.retry.delay;
        }
    }
    s
}

fn repository(
    issues: &mut Issues<'_>,
    base: &Path,
    name: &str,
    r: &Spanned<RawRepository>,
) -> Option<Repository> {
    let raw = r.get_ref();
    let before = issues.list.len();
    if raw.url.get_ref().trim().is_empty() {
        issues.at(raw.url.span(), format!("repository {name:?}: url is empty"));
    }
    if raw.password_file.is_some() && raw.password_command.is_some() {
        issues.at(
            r.span(),
            format!("repository {name:?}: give password_file or password_command, not both"),
        );
    }
    let retention = raw
        .retention
        .as_ref()
        .and_then(|p| policy_ok(issues, p, &format!("repository {name:?}: retention")));
    for key in raw.options.keys() {
        if !key.contains('.') {
            issues.at(
                r.span(),
                format!(
                    "repository {name:?}: option {key:?} is not a storage option such as \
                     s3.endpoint"
                ),
            );
        }
    }
    if issues.list.len() > before {
        return None;
    }
    Some(Repository {
        name: name.to_string(),
        url: resolve_location(base, raw.url.get_ref().trim()),
        password_file: raw
            .password_file
            .as_ref()
            .map(|p| resolve_path(base, p.get_ref())),
        password_command: raw.password_command.as_ref().map(|c| c.get_ref().clone()),
        retention,
        options: raw.options.clone(),
    })
}

fn policy_ok(issues: &mut Issues<'_>, p: &Spanned<RawRetention>, what: &str) -> Option<Retention> {
    let policy = match p.get_ref() {
        RawRetention::Policy(policy) => policy,
        RawRetention::Named(n) if n == "repository" => return Some(Retention::Repository),
        RawRetention::Named(n) => {
            issues.at(
                p.span(),
                format!(
                    "{what}: {n:?} is not a policy: give a table such as {{ keep_daily = 7 }}, or \
                     \"repository\" for the policy stored in the repository"
                ),
            );
            return None;
        }
    };
    if let Err(e) = policy.validate() {
        issues.at(p.span(), format!("{what}: {e:#}"));
        return None;
    }
    if policy.is_empty() {
        issues.at(
            p.span(),
            format!("{what} has no rule, so it would remove nothing: give keep_daily, ..."),
        );
        return None;
    }
    Some(Retention::Policy(Box::new(policy.clone())))
}

fn small_int(issues: &mut Issues<'_>, v: &Option<Spanned<i64>>, key: &str) -> Option<u32> {
    let v = v.as_ref()?;
    match u32::try_from(*v.get_ref()) {
        Ok(n) => Some(n),
        Err(_) => {
            issues.at(
                v.span(),
                format!("{key} is {}: it cannot be negative", v.get_ref()),
            );
            Some(u32::MAX)
        }
    }
}

fn job_schedule(issues: &mut Issues<'_>, j: &Spanned<RawJob>, who: &str) -> Option<Schedule> {
    let raw = j.get_ref();
    let friendly_keys = raw.frequency.is_some()
        || raw.day_of_week.is_some()
        || raw.day_of_month.is_some()
        || raw.hour.is_some()
        || raw.minute.is_some();
    match (&raw.schedule, &raw.frequency) {
        (Some(s), _) if friendly_keys => {
            issues.at(
                s.span(),
                format!(
                    "{who}: give either schedule or the friendly form (frequency, day_of_week, \
                     day_of_month, hour, minute), not both"
                ),
            );
            None
        }
        (Some(s), _) => match Schedule::cron(s.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => {
                issues.at(s.span(), format!("{who}: {e}"));
                None
            }
        },
        (None, Some(freq)) => {
            let f = Friendly {
                frequency: *freq.get_ref(),
                day_of_week: raw.day_of_week.as_ref().map(|d| match d.get_ref() {
                    DayOfWeek::Number(n) => n.to_string(),
                    DayOfWeek::Name(s) => s.clone(),
                }),
                day_of_month: small_int(issues, &raw.day_of_month, "day_of_month"),
                hour: small_int(issues, &raw.hour, "hour"),
                minute: small_int(issues, &raw.minute, "minute"),
            };
            match Schedule::friendly(&f) {
                Ok(s) => Some(s),
                Err(e) => {
                    issues.at(freq.span(), format!("{who}: {e}"));
                    None
                }
            }
        }
        (None, None) => {
            let span = if friendly_keys {
                raw.name.span()
            } else {
                j.span()
            };
            issues.at(
                span,
                format!(
                    "{who} has no schedule: give schedule = \"0 2 * * *\" (cron, @daily, ...) or \
                     frequency = \"daily\" with hour and minute"
                ),
            );
            None
        }
    }
}

fn job(
    issues: &mut Issues<'_>,
    base: &Path,
    j: &Spanned<RawJob>,
    repos: &BTreeMap<String, Spanned<RawRepository>>,
    default_tz: Tz,
    default_margin: Duration,
) -> Option<Job> {
    let raw = j.get_ref();
    let name = raw.name.get_ref().clone();
    let who = format!("job {name:?}");
    let before = issues.list.len();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        issues.at(
            raw.name.span(),
            format!("{who}: a job name uses letters, digits, '-', '_' and '.' only"),
        );
    }
    let sources = match raw.source.get_ref() {
        OneOrMany::One(s) => vec![s.clone()],
        OneOrMany::Many(v) => v.clone(),
    };
    if sources.is_empty() || sources.iter().any(|s| s.trim().is_empty()) {
        issues.at(raw.source.span(), format!("{who}: source is empty"));
    }
    let repository = raw.repository.get_ref().clone();
    if !repos.contains_key(&repository) {
        issues.at(
            raw.repository.span(),
            format!(
                "{who}: unknown repository {repository:?} (define it as [repository.{repository}])"
            ),
        );
    }
    let mut mirrors = Vec::new();
    for m in &raw.mirrors {
        let mname = m.get_ref();
        if !repos.contains_key(mname) {
            issues.at(
                m.span(),
                format!("{who}: unknown mirror repository {mname:?} (define it as [repository.{mname}])"),
            );
        } else if *mname == repository {
            issues.at(
                m.span(),
                format!("{who}: mirror {mname:?} is the job's own repository"),
            );
        } else {
            mirrors.push(mname.clone());
        }
    }
    let schedule = job_schedule(issues, j, &who);
    let timezone = match &raw.timezone {
        Some(t) => timezone_of(issues, t, &format!("{who}: ")),
        None => Some(default_tz),
    };
    let backup_type = match &raw.backup_type {
        None => None,
        Some(t) => match t.get_ref().as_str() {
            "full" => Some(BackupType::Full),
            "incremental" => Some(BackupType::Incremental),
            "differential" => Some(BackupType::Differential),
            other => {
                issues.at(
                    t.span(),
                    format!("{who}: type {other:?} is not full, incremental or differential"),
                );
                None
            }
        },
    };
    let verify = match &raw.verify {
        None => Verify::None,
        Some(v) => match v.get_ref().as_str() {
            "none" => Verify::None,
            "metadata" => Verify::Metadata,
            "full" => Verify::Full,
            "sample" => Verify::Sample(
                raw.verify_sample
                    .as_ref()
                    .map(|s| s.get_ref().clone())
                    .unwrap_or_else(|| "10%".into()),
            ),
            other => {
                issues.at(
                    v.span(),
                    format!("{who}: verify {other:?} is not none, metadata, sample or full"),
                );
                Verify::None
            }
        },
    };
    if let Some(s) = &raw.verify_sample {
        let ok = s
            .get_ref()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .is_some_and(|n| n > 0.0 && n <= 100.0);
        if !ok {
            issues.at(
                s.span(),
                format!(
                    "{who}: verify_sample {:?} is not a share such as 10%",
                    s.get_ref()
                ),
            );
        } else if !matches!(verify, Verify::Sample(_)) {
            issues.at(
                s.span(),
                format!("{who}: verify_sample needs verify = \"sample\""),
            );
        }
    }
    let retention = match &raw.retention {
        Some(p) => policy_ok(issues, p, &format!("{who}: retention")),
        None => repos
            .get(&repository)
            .and_then(|r| r.get_ref().retention.as_ref())
            // The repository's own problems are reported with the repository.
            .and_then(|p| match p.get_ref() {
                RawRetention::Policy(p) => Some(Retention::Policy(Box::new(p.clone()))),
                RawRetention::Named(n) if n == "repository" => Some(Retention::Repository),
                RawRetention::Named(_) => None,
            }),
    };
    let prune = match raw.prune.as_ref() {
        None => Prune::Never,
        Some(p) => match p.get_ref() {
            RawPrune::Flag(false) => Prune::Never,
            RawPrune::Flag(true) => {
                if retention.is_none() {
                    issues.at(
                        p.span(),
                        format!(
                            "{who}: prune = true prunes after forget, but the job has no \
                             retention (give the job or its repository a retention policy, or \
                             a prune schedule)"
                        ),
                    );
                }
                Prune::AfterForget
            }
            RawPrune::Schedule(s) => match Schedule::cron(s) {
                Ok(s) => Prune::Schedule(Box::new(s)),
                Err(e) => {
                    issues.at(p.span(), format!("{who}: prune: {e}"));
                    Prune::Never
                }
            },
        },
    };
    let overdue_margin = duration_of(
        issues,
        &raw.overdue_margin,
        "overdue_margin",
        default_margin,
    );
    if issues.list.len() > before {
        return None;
    }
    Some(Job {
        name,
        sources: sources
            .iter()
            .map(|s| resolve_location(base, s.trim()))
            .collect(),
        repository,
        schedule: schedule?,
        timezone: timezone?,
        backup_type,
        tags: raw.tags.clone(),
        excludes: raw.exclude.clone(),
        host: raw.host.clone(),
        retention,
        prune,
        verify,
        mirrors,
        overdue_margin,
    })
}
