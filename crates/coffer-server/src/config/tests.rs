//! Loading configs: the issue's example, defaults, the common plan, and every kind of error
//! reported with its file and line.

use super::*;
use crate::error::ErrorKind;

const EXAMPLE: &str = r#"catalog = "sqlite:///var/lib/coffer/catalog.db"   # the default lives under the data directory

[repository.offsite]
url = "s3://acme-backups/prod"
password_file = "/etc/coffer/offsite.pass"
retention = { keep_daily = 7, keep_weekly = 4, keep_monthly = 12, min_keep = 3 }

[[job]]
name = "app-db"
source = "postgres://backup@db:5432/app"
repository = "offsite"
schedule = "0 2 * * *"
type = "full"
timezone = "Europe/Berlin"
tags = ["nightly"]
verify = "metadata"
"#;

fn parse(text: &str) -> Result<Config> {
    Config::parse(text, Path::new("/etc/coffer/coffer.toml"))
}

/// The problems of a config that must not load, as `line: reason`.
fn problems(text: &str) -> Vec<(usize, String)> {
    let e = parse(text).expect_err("the config loaded");
    assert_eq!(e.kind(), ErrorKind::Config);
    e.issues()
        .iter()
        .map(|i| {
            assert_eq!(i.file, "/etc/coffer/coffer.toml");
            (i.line, i.reason.clone())
        })
        .collect()
}

#[track_caller]
fn assert_problem(text: &str, line: usize, needle: &str) {
    let p = problems(text);
    assert!(
        p.iter().any(|(l, r)| *l == line && r.contains(needle)),
        "no problem on line {line} containing {needle:?}: {p:#?}"
    );
}

#[test]
fn the_issue_example_loads() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(
        c.catalog,
        Some(CatalogLocation::Sqlite("/var/lib/coffer/catalog.db".into()))
    );
    let r = c.repository("offsite");
    assert_eq!(r.url, "s3://acme-backups/prod");
    assert_eq!(
        r.password_file.as_deref(),
        Some(Path::new("/etc/coffer/offsite.pass"))
    );
    let j = c.job("app-db").unwrap();
    assert_eq!(j.sources, ["postgres://backup@db:5432/app"]);
    assert_eq!(j.schedule.expression(), "0 2 * * *");
    assert_eq!(j.timezone.name(), "Europe/Berlin");
    assert_eq!(j.backup_type, Some(BackupType::Full));
    assert_eq!(j.tags, ["nightly"]);
    assert_eq!(j.verify, Verify::Metadata);
    // The job inherits the repository's retention.
    let p = j.retention.as_ref().unwrap().policy().unwrap();
    assert_eq!(
        (p.keep_daily, p.keep_weekly, p.min_keep),
        (Some(7), Some(4), Some(3))
    );
    assert!(matches!(j.prune, Prune::Never));
    assert_eq!(c.settings, Settings::default());
    assert_eq!(c.job("nope").unwrap_err().kind(), ErrorKind::UnknownJob);
}

#[test]
fn the_common_plan_and_every_setting() {
    let c = parse(
        r#"
catalog = "state/catalog.db"
timezone = "Europe/Berlin"
max_concurrent_jobs = 3
catch_up_window = "6h"
shutdown_timeout = "10min"
job_timeout = "12h"
overdue_margin = "2h"
retry = { attempts = 5, delay = "30s", max_delay = "1h" }

[repository.main]
url = "repo"
password_file = "main.pass"
options = { "s3.endpoint" = "http://minio:9000" }

[repository.mirror]
url = "sftp://backup@nas/coffer"
password_command = "pass show coffer"

[[job]]
name = "files-weekly-full"
source = ["/srv/www", "data"]
repository = "main"
type = "full"
frequency = "weekly"
day_of_week = "sunday"
hour = 3
retention = { keep_weekly = 8 }
prune = "0 5 * * SUN"
mirrors = ["mirror"]
verify = "sample"
verify_sample = "5%"

[[job]]
name = "files-daily-diff"
source = ["/srv/www", "data"]
repository = "main"
type = "differential"
frequency = "daily"
hour = 1
minute = 30
exclude = ["*.tmp"]
retention = { keep_daily = 14 }
prune = true

[[job]]
name = "files-hourly-incr"
source = ["/srv/www", "data"]
repository = "main"
type = "incremental"
frequency = "hourly"
minute = 15
timezone = "UTC"
overdue_margin = "20min"
"#,
    )
    .unwrap();
    assert_eq!(
        c.catalog,
        Some(CatalogLocation::Sqlite(
            "/etc/coffer/state/catalog.db".into()
        ))
    );
    assert_eq!(
        c.settings,
        Settings {
            max_concurrent_jobs: 3,
            catch_up_window: Duration::from_secs(6 * 3600),
            retry: RetryPolicy {
                attempts: 5,
                delay: Duration::from_secs(30),
                max_delay: Duration::from_secs(3600),
            },
            shutdown_timeout: Duration::from_secs(600),
            job_timeout: Duration::from_secs(12 * 3600),
            overdue_margin: Duration::from_secs(7200),
        }
    );
    let main = c.repository("main");
    assert_eq!(
        main.url, "/etc/coffer/repo",
        "relative to the config's folder"
    );
    assert_eq!(
        main.password_file.as_deref(),
        Some(Path::new("/etc/coffer/main.pass"))
    );
    assert_eq!(main.options["s3.endpoint"], "http://minio:9000");
    assert_eq!(
        c.repository("mirror").password_command.as_deref(),
        Some("pass show coffer")
    );
    let [full, diff, incr] = &c.jobs[..] else {
        panic!("three jobs")
    };
    assert_eq!(full.schedule.expression(), "0 3 * * SUN");
    assert_eq!(
        full.timezone.name(),
        "Europe/Berlin",
        "the config's default"
    );
    assert_eq!(full.sources, ["/srv/www", "/etc/coffer/data"]);
    assert_eq!(full.mirrors, ["mirror"]);
    assert_eq!(full.verify, Verify::Sample("5%".into()));
    assert!(matches!(&full.prune, Prune::Schedule(s) if s.expression() == "0 5 * * SUN"));
    assert_eq!(diff.schedule.expression(), "30 1 * * *");
    assert_eq!(diff.backup_type, Some(BackupType::Differential));
    assert_eq!(diff.excludes, ["*.tmp"]);
    assert!(matches!(diff.prune, Prune::AfterForget));
    assert_eq!(diff.overdue_margin, Duration::from_secs(7200));
    assert_eq!(incr.schedule.expression(), "15 * * * *");
    assert_eq!(incr.timezone, Tz::UTC);
    assert_eq!(incr.overdue_margin, Duration::from_secs(1200));
    assert!(incr.retention.is_none());
}

#[test]
fn a_config_that_does_not_parse_names_the_line() {
    assert_problem("catalog = \"x\"\n\n[[job]\nname = 1\n", 3, "");
    assert_problem(
        "timezone = \"UTC\"\nbogus = 1\n",
        2,
        "unknown field `bogus`",
    );
    assert_problem(
        "[repository.r]\nurl = \"/r\"\nretention = { keep_daily = \"seven\" }\n",
        3,
        "",
    );
    assert_problem(
        "[repository.r]\nurl = \"/r\"\nretention = { keep_dayly = 7 }\n",
        3,
        "keep_dayly",
    );
}

fn job(extra: &str) -> String {
    format!(
        "[repository.r]\nurl = \"/r\"\n\n[[job]]\nname = \"j\"\nsource = \"/s\"\n\
         repository = \"r\"\n{extra}"
    )
}

#[test]
fn bad_values_are_reported_with_file_and_line() {
    // Line 8 is the first line of `extra`.
    assert_problem(
        &job("schedule = \"0 2 * *\"\n"),
        8,
        "invalid cron expression",
    );
    assert_problem(
        &job("schedule = \"61 * * * *\"\n"),
        8,
        "invalid cron expression",
    );
    assert_problem(
        &job("schedule = \"@daily\"\ntimezone = \"Mars/Olympus\"\n"),
        9,
        "invalid timezone \"Mars/Olympus\"",
    );
    assert_problem(
        &job("schedule = \"@daily\"\ntype = \"weekly\"\n"),
        9,
        "type \"weekly\"",
    );
    assert_problem(
        &job("schedule = \"@daily\"\nverify = \"all\"\n"),
        9,
        "verify \"all\"",
    );
    assert_problem(
        &job("schedule = \"@daily\"\nverify = \"sample\"\nverify_sample = \"200%\"\n"),
        10,
        "verify_sample",
    );
    assert_problem(
        &job("schedule = \"@daily\"\nmirrors = [\"nas\"]\n"),
        9,
        "unknown mirror",
    );
    assert_problem(
        &job("schedule = \"@daily\"\nprune = true\n"),
        9,
        "no retention",
    );
    assert_problem(
        &job("schedule = \"@daily\"\nprune = \"nope\"\n"),
        9,
        "prune",
    );
    assert_problem(
        &job("schedule = \"@daily\"\nretention = { max_keep = 0 }\n"),
        9,
        "max_keep",
    );
    assert_problem(&job("frequency = \"daily\"\nhour = 25\n"), 8, "hour is 25");
    assert_problem(&job("frequency = \"fortnightly\"\n"), 8, "fortnightly");
    assert_problem(
        &job("schedule = \"@daily\"\nfrequency = \"daily\"\n"),
        8,
        "not both",
    );
    assert_problem(&job(""), 4, "has no schedule");
    assert_problem(&job("schedule = \"@daily\"\novedue = 1\n"), 9, "ovedue");
    assert_problem(
        "max_concurrent_jobs = 0\ncatch_up_window = \"soon\"\n",
        1,
        "max_concurrent_jobs is 0",
    );
    assert_problem(
        "max_concurrent_jobs = 0\ncatch_up_window = \"soon\"\n",
        2,
        "catch_up_window",
    );
    assert_problem("catalog = \"mysql://x\"\n", 1, "neither sqlite");
    assert_problem(
        &job("schedule = \"@daily\"\nretention = \"repo\"\n"),
        9,
        "not a policy",
    );
}

#[test]
fn a_bare_m_is_refused_with_the_unit_to_write_and_its_line() {
    assert_problem(
        "timezone = \"UTC\"\nshutdown_timeout = \"10m\"\n",
        2,
        "shutdown_timeout: \"10m\" is ambiguous: write 10min for minutes",
    );
    assert_problem(
        "\nretry = { attempts = 2, delay = \"1h30m\" }\n",
        2,
        "retry.delay: \"1h30m\" is ambiguous: write 1h30min for minutes",
    );
    assert_problem(
        &job("schedule = \"@daily\"\noverdue_margin = \"5m\"\n"),
        9,
        "write 5min for minutes",
    );
    assert_problem(
        &job("schedule = \"@daily\"\nretention = { keep_within = \"2m\" }\n"),
        9,
        "\"2m\" is ambiguous: write 2mo for months",
    );
    // The words and the new units load.
    let c = parse(&job(
        "schedule = \"@daily\"\noverdue_margin = \"1 hour 30 minutes\"\n\
         retention = { keep_within = \"1y2mo\" }\n",
    ))
    .unwrap();
    assert_eq!(c.jobs[0].overdue_margin, Duration::from_secs(5400));
}

#[test]
fn retention_can_name_the_policy_stored_in_the_repository() {
    let c = parse(&job(
        "schedule = \"@daily\"\nretention = \"repository\"\nprune = true\n",
    ))
    .unwrap();
    let j = c.job("j").unwrap();
    assert_eq!(j.retention, Some(super::Retention::Repository));
    assert!(matches!(j.prune, Prune::AfterForget));
    // Set on the repository, every job of it inherits it.
    let c = parse(
        "[repository.r]\nurl = \"/r\"\nretention = \"repository\"\n\n[[job]]\nname = \"j\"\n\
         source = \"/s\"\nrepository = \"r\"\nschedule = \"@daily\"\n",
    )
    .unwrap();
    assert_eq!(
        c.job("j").unwrap().retention,
        Some(super::Retention::Repository)
    );
}

#[test]
fn unknown_repositories_and_duplicate_names_are_reported_all_at_once() {
    let text = "[repository.r]\nurl = \"/r\"\n\n\
                [[job]]\nname = \"a\"\nsource = \"/s\"\nrepository = \"offsite\"\nschedule = \"@daily\"\n\n\
                [[job]]\nname = \"b\"\nsource = \"/s\"\nrepository = \"r\"\nschedule = \"@daily\"\n\n\
                [[job]]\nname = \"b\"\nsource = \"/t\"\nrepository = \"r\"\nschedule = \"@hourly\"\n";
    let p = problems(text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(p[0].0, 7);
    assert!(
        p[0].1.contains("unknown repository \"offsite\""),
        "{}",
        p[0].1
    );
    assert_eq!(p[1].0, 17);
    assert!(p[1].1.contains("duplicate job name \"b\""), "{}", p[1].1);
    let e = parse(text).unwrap_err().to_string();
    assert!(
        e.starts_with("/etc/coffer/coffer.toml:7: job \"a\": unknown repository"),
        "{e}"
    );
}

#[test]
fn a_missing_file_is_a_config_error() {
    let e = Config::load(Path::new("/nonexistent/coffer.toml")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/coffer.toml: cannot read the config"),
        "{e}"
    );
}

#[test]
fn catalog_locations() {
    let base = Path::new("/etc/coffer");
    assert_eq!(
        CatalogLocation::parse("sqlite:///var/c.db", base),
        Ok(CatalogLocation::Sqlite("/var/c.db".into()))
    );
    assert_eq!(
        CatalogLocation::parse("c.db", base),
        Ok(CatalogLocation::Sqlite("/etc/coffer/c.db".into()))
    );
    let pg = CatalogLocation::parse("postgres://u:secret@db:5432/coffer", base).unwrap();
    assert_eq!(pg.display(), "postgres://u:***@db:5432/coffer");
    assert!(CatalogLocation::parse("sqlite://", base).is_err());
}
