//! The scheduler daemon from the outside: a real `coffer serve` whose job runs every two
//! seconds produces snapshots and stops gracefully on SIGTERM; `schedule list/next/run/history`
//! and `status` read the same config and catalog; broken configs are refused with file and line.
//! (The scheduler's timing rules are tested with an injected clock in coffer-server.)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use coffer_testkit::cli::{collect_child, send_signal, str_field, CofferEnv, SIGTERM};
use serde_json::Value;

use crate::{env_with_repo, s, write_files};

/// Writes `coffer.toml` in the environment's folder: one repository (the environment's) and the
/// given jobs.
fn write_config(env: &CofferEnv, settings: &str, jobs: &str) -> PathBuf {
    let path = env.path("coffer.toml");
    let text = format!(
        "timezone = \"UTC\"\n{settings}\n\n[repository.main]\nurl = \"{}\"\npassword_file = \"{}\"\n\n{jobs}",
        s(env.repo()),
        s(env.password_file()),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn history(env: &CofferEnv, config: &Path, job: Option<&str>) -> Vec<Value> {
    let mut args = vec!["--json", "schedule", "history", "--config", s(config)];
    args.extend(job);
    match env.run(args).assert_ok().json() {
        Value::Array(a) => a,
        other => panic!("history is not an array: {other}"),
    }
}

#[test]
fn a_real_daemon_runs_its_job_and_stops_gracefully_on_sigterm() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"alpha"), ("dir/b.txt", b"bravo")]);
    // A schedule with a seconds field (the testing aid): every 2 seconds.
    let config = write_config(
        &env,
        "shutdown_timeout = \"60s\"",
        &format!(
            "[[job]]\nname = \"files\"\nsource = \"{}\"\nrepository = \"main\"\n\
             schedule = \"*/2 * * * * *\"\ntags = [\"daemon\"]\nverify = \"metadata\"\n",
            s(&src)
        ),
    );
    let mut child = env
        .cmd(["serve", "--config", s(&config)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coffer serve");

    // Wait for a successful run in the catalog.
    let start = Instant::now();
    let runs = loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = collect_child(child, "coffer serve", Duration::from_secs(5));
            panic!("the daemon ended on its own ({status})\n{out}");
        }
        let runs = history(&env, &config, Some("files"));
        if runs.iter().any(|r| r["status"] == "success") {
            break runs;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no successful run after 90 s: {runs:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    send_signal(child.id(), SIGTERM);
    let out = collect_child(child, "coffer serve", Duration::from_secs(90));
    assert_eq!(out.status_code(), Some(0), "{out}");
    assert!(out.stderr.contains("daemon started"), "{out}");
    assert!(
        out.stderr.contains("files (backup): success, snapshot"),
        "{out}"
    );
    assert!(out.stderr.contains("daemon stopped"), "{out}");

    // Every run the daemon finished made a snapshot that is in the repository, tagged.
    let snapshots = env.snapshots(None::<&str>);
    let final_runs = history(&env, &config, None);
    assert!(final_runs.len() >= runs.len());
    let ok: Vec<&Value> = final_runs
        .iter()
        .filter(|r| r["status"] == "success")
        .collect();
    assert!(!ok.is_empty());
    for r in &ok {
        let id = str_field(r, "snapshot_id");
        let snap = snapshots
            .iter()
            .find(|m| str_field(m, "id") == id)
            .unwrap_or_else(|| panic!("run {r} names a snapshot the repository lacks"));
        assert_eq!(snap["tags"], serde_json::json!(["daemon"]));
        assert_eq!(r["trigger"], "schedule");
        assert_eq!(r["kind"], "backup");
        // Scheduled on an even second, started at or after it.
        let sched =
            chrono::DateTime::parse_from_rfc3339(r["scheduled_at"].as_str().unwrap()).unwrap();
        let started =
            chrono::DateTime::parse_from_rfc3339(r["started_at"].as_str().unwrap()).unwrap();
        assert_eq!(chrono::Timelike::second(&sched) % 2, 0, "{r}");
        assert!(started >= sched, "{r}");
    }
    // The first backup stored the files' bytes.
    let first = ok.last().unwrap();
    assert!(first["bytes_added"].as_u64().unwrap() > 0, "{first}");
    // No run is left "running" after a graceful stop.
    assert!(
        final_runs.iter().all(|r| r["status"] != "running"),
        "{final_runs:#?}"
    );
    // Each scheduled time ran once.
    let mut times: Vec<&str> = final_runs
        .iter()
        .map(|r| r["scheduled_at"].as_str().unwrap())
        .collect();
    let n = times.len();
    times.dedup();
    assert_eq!(times.len(), n, "a time ran twice: {final_runs:#?}");

    // status: healthy, exit 0, and it knows the last run.
    let st = env
        .run(["--json", "status", "--config", s(&config)])
        .assert_ok()
        .json();
    assert_eq!(st["ok"], true, "{st:#}");
    let job = &st["jobs"][0];
    assert_eq!(job["job"], "files");
    assert_eq!(job["state"], "ok", "{st:#}");
    assert_eq!(job["last_success"]["id"], final_runs[0]["id"]);
    // The text form too.
    let text = env.run(["status", "--config", s(&config)]).assert_ok();
    assert!(
        text.stdout.contains("files") && text.stdout.contains(" ok"),
        "{text}"
    );
    let text = env
        .run(["schedule", "history", "files", "--config", s(&config)])
        .assert_ok();
    let short = &str_field(first, "snapshot_id")[..8];
    assert!(text.stdout.contains(short), "{text}");
}

#[test]
fn schedule_run_records_runs_and_status_reports_a_failing_job() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"alpha")]);
    let config = write_config(
        &env,
        "retry = { attempts = 1 }",
        &format!(
            "[[job]]\nname = \"good\"\nsource = \"{}\"\nrepository = \"main\"\n\
             schedule = \"0 2 * * *\"\ntype = \"full\"\nverify = \"sample\"\nverify_sample = \"50%\"\n\
             retention = {{ keep_last = 1 }}\n\n\
             [[job]]\nname = \"gone\"\nsource = \"{}\"\nrepository = \"main\"\n\
             frequency = \"daily\"\nhour = 3\n",
            s(&src),
            s(&env.path("no-such-folder")),
        ),
    );
    let c = s(&config);
    // Two manual runs of the good job: the retention keeps one snapshot.
    for _ in 0..2 {
        let r = env
            .run(["--json", "schedule", "run", "good", "--config", c])
            .assert_ok()
            .json();
        assert_eq!(
            (r["status"].as_str(), r["trigger"].as_str()),
            (Some("success"), Some("manual"))
        );
    }
    let ids = env.snapshot_ids();
    assert_eq!(ids.len(), 1, "keep_last = 1 was applied");
    let good = history(&env, &config, Some("good"));
    assert_eq!(good.len(), 2);
    assert_eq!(str_field(&good[0], "snapshot_id"), ids[0]);

    // The job whose source is missing fails its own run only.
    let out = env
        .run(["schedule", "run", "gone", "--config", c])
        .assert_code(1);
    assert!(out.stderr.contains("gone (backup): failed"), "{out}");
    let gone = history(&env, &config, Some("gone"));
    assert_eq!(gone[0]["status"], "failed");
    assert!(
        gone[0]["error"].as_str().unwrap().contains("backup failed"),
        "{gone:#?}"
    );

    let out = env.run(["--json", "status", "--config", c]).assert_code(1);
    let st = out.json();
    assert_eq!(st["ok"], false);
    let states: Vec<(&str, &str)> = st["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["job"].as_str().unwrap(), j["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("good", "ok"), ("gone", "failing")]);
    env.run(["status", "--config", c])
        .assert_code(1)
        .assert_mentions("overdue or failing");

    // An unknown job is a usage error.
    env.run(["schedule", "run", "nope", "--config", c])
        .assert_code(2)
        .assert_mentions("no job named \"nope\"");
}

#[test]
fn list_and_next_show_run_times_in_the_jobs_time_zone() {
    let env = crate::env();
    let config = env.path("coffer.toml");
    std::fs::write(
        &config,
        "[repository.r]\nurl = \"/srv/repo\"\n\n\
         [[job]]\nname = \"weekly-full\"\nsource = \"/srv\"\nrepository = \"r\"\ntype = \"full\"\n\
         frequency = \"weekly\"\nday_of_week = \"sunday\"\nhour = 2\ntimezone = \"Europe/Berlin\"\n\
         prune = \"0 4 1 * *\"\n\n\
         [[job]]\nname = \"hourly-incr\"\nsource = \"/srv\"\nrepository = \"r\"\n\
         schedule = \"@hourly\"\ntimezone = \"UTC\"\n",
    )
    .unwrap();
    let c = s(&config);
    let list = env
        .run(["--json", "schedule", "list", "--config", c])
        .assert_ok()
        .json();
    let rows: Vec<(&str, &str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["job"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["expression"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("weekly-full", "backup", "0 2 * * SUN"),
            ("weekly-full", "prune", "0 4 1 * *"),
            ("hourly-incr", "backup", "@hourly"),
        ]
    );
    let next = env
        .run([
            "--json",
            "schedule",
            "next",
            "weekly-full",
            "--count",
            "4",
            "--config",
            c,
        ])
        .assert_ok()
        .json();
    let times = next["times"].as_array().unwrap();
    assert_eq!(times.len(), 4);
    let mut previous: Option<chrono::DateTime<chrono::FixedOffset>> = None;
    for t in times {
        let local = t["local"].as_str().unwrap();
        // 02:00 Berlin time on a Sunday, summer or winter.
        assert!(
            local.ends_with(" 02:00:00 CET") || local.ends_with(" 02:00:00 CEST"),
            "{local}"
        );
        let utc = chrono::DateTime::parse_from_rfc3339(t["utc"].as_str().unwrap()).unwrap();
        assert_eq!(chrono::Datelike::weekday(&utc), chrono::Weekday::Sun);
        if let Some(p) = previous {
            assert_eq!((utc - p).num_days(), 7);
        }
        previous = Some(utc);
    }
    let text = env.run(["schedule", "list", "--config", c]).assert_ok();
    assert!(text.stdout.contains("weekly on sunday at 02:00"), "{text}");
    env.run(["schedule", "next", "hourly-incr", "--prune", "--config", c])
        .assert_code(2)
        .assert_mentions("no prune schedule");
}

#[test]
fn a_broken_config_is_refused_with_file_and_line() {
    let env = crate::env();
    let config = env.path("coffer.toml");
    std::fs::write(
        &config,
        "[repository.r]\nurl = \"/srv/repo\"\n\n\
         [[job]]\nname = \"a\"\nsource = \"/srv\"\nrepository = \"offsite\"\nschedule = \"0 2 * *\"\n\
         timezone = \"Mars/Base\"\n",
    )
    .unwrap();
    let c = s(&config);
    for cmd in [
        vec!["schedule", "list", "--config", c],
        vec!["serve", "--config", c],
        vec!["status", "--config", c],
    ] {
        let out = env.run(&cmd).assert_code(2);
        for (line, what) in [
            (7, "unknown repository \"offsite\""),
            (8, "invalid cron expression \"0 2 * *\""),
            (9, "invalid timezone \"Mars/Base\""),
        ] {
            let needle = format!("{c}:{line}: job \"a\": {what}");
            assert!(
                out.stderr.contains(&needle),
                "{cmd:?}: no {needle:?}\n{out}"
            );
        }
        assert!(!out.stderr.contains("daemon started"), "{out}");
    }
    // A file that does not parse: the line of the syntax error.
    std::fs::write(&config, "timezone = \"UTC\"\n[[job]\n").unwrap();
    env.run(["schedule", "list", "--config", c])
        .assert_code(2)
        .assert_mentions(&format!("{c}:2:"));
    // COFFER_CONFIG names the file too; a missing one is reported.
    let mut cmd = env.cmd(["schedule", "list"]);
    cmd.env("COFFER_CONFIG", env.path("missing.toml"));
    env.run_cmd(cmd)
        .assert_code(2)
        .assert_mentions("missing.toml: cannot read the config");
}

#[test]
fn a_job_can_apply_the_retention_policy_stored_in_the_repository() {
    let env = env_with_repo();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"alpha")]);
    env.run(["config", "set-retention", "--keep-last", "2"])
        .assert_ok();
    let config = write_config(
        &env,
        "",
        &format!(
            "[[job]]\nname = \"nightly\"\nsource = \"{}\"\nrepository = \"main\"\n\
             schedule = \"0 2 * * *\"\nretention = \"repository\"\nprune = true\n",
            s(&src),
        ),
    );
    for n in 0..3 {
        std::fs::write(src.join("a.txt"), format!("version {n}")).unwrap();
        env.run(["schedule", "run", "nightly", "--config", s(&config)])
            .assert_ok();
    }
    assert_eq!(
        env.snapshot_ids().len(),
        2,
        "the stored keep-last 2 applied"
    );
    // Changing the stored policy changes what the next run keeps, with no config change.
    env.run(["config", "set-retention", "--keep-last", "1"])
        .assert_ok();
    env.run(["schedule", "run", "nightly", "--config", s(&config)])
        .assert_ok();
    assert_eq!(env.snapshot_ids().len(), 1);
    env.run(["check"]).assert_ok();
}
