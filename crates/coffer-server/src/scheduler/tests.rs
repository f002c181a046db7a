//! Scheduler tests under tokio's paused time: [`TokioClock`] jumps ahead whenever every task
//! waits, so days of schedule run in milliseconds and in a fixed order.

use super::*;
use crate::catalog::SqliteCatalog;
use crate::clock::TokioClock;
use crate::config::Job;
use chrono::TimeZone;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// One call of the fake runner.
#[derive(Debug, Clone)]
struct Call {
    job: String,
    kind: TaskKind,
    start: DateTime<Utc>,
}

/// A runner that takes a set time per job, fails a set number of times, and measures
/// concurrency.
struct Fake {
    clock: Arc<TokioClock>,
    calls: Mutex<Vec<Call>>,
    took: HashMap<String, Duration>,
    failures: Mutex<HashMap<String, u32>>,
    per_job: Mutex<HashMap<String, usize>>,
    max_per_job: AtomicUsize,
    total: AtomicUsize,
    max_total: AtomicUsize,
}

/// Counts a run as going until dropped (also when the run is stopped).
struct Going<'a>(&'a Fake, String);

impl Drop for Going<'_> {
    fn drop(&mut self) {
        self.0.total.fetch_sub(1, Ordering::SeqCst);
        *self.0.per_job.lock().unwrap().get_mut(&self.1).unwrap() -= 1;
    }
}

impl Fake {
    fn new(clock: &Arc<TokioClock>) -> Fake {
        Fake {
            clock: Arc::clone(clock),
            calls: Mutex::default(),
            took: HashMap::new(),
            failures: Mutex::default(),
            per_job: Mutex::default(),
            max_per_job: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            max_total: AtomicUsize::new(0),
        }
    }

    fn taking(mut self, job: &str, d: Duration) -> Fake {
        self.took.insert(job.into(), d);
        self
    }

    fn failing(self, job: &str, times: u32) -> Fake {
        self.failures.lock().unwrap().insert(job.into(), times);
        self
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn starts(&self, job: &str) -> Vec<DateTime<Utc>> {
        self.calls()
            .into_iter()
            .filter(|c| c.job == job)
            .map(|c| c.start)
            .collect()
    }
}

#[async_trait::async_trait]
impl JobRunner for Fake {
    async fn run(
        &self,
        _config: &Config,
        job: &Job,
        kind: TaskKind,
    ) -> std::result::Result<RunOutcome, RunError> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(Call {
                job: job.name.clone(),
                kind,
                start: self.clock.now(),
            });
            calls.len()
        };
        {
            let mut per = self.per_job.lock().unwrap();
            let c = per.entry(job.name.clone()).or_default();
            *c += 1;
            self.max_per_job.fetch_max(*c, Ordering::SeqCst);
        }
        let t = self.total.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_total.fetch_max(t, Ordering::SeqCst);
        let _going = Going(self, job.name.clone());
        let d = self
            .took
            .get(&job.name)
            .copied()
            .unwrap_or(Duration::from_secs(60));
        tokio::time::sleep(d).await;
        let fail = {
            let mut f = self.failures.lock().unwrap();
            match f.get_mut(&job.name) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    true
                }
                _ => false,
            }
        };
        if fail {
            return Err(RunError::retryable(format!("{} is unreachable", job.name)));
        }
        Ok(RunOutcome {
            snapshot_id: Some(format!("snap-{n}")),
            bytes_added: Some(n as u64 * 100),
            partial: false,
            notes: vec![],
        })
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn config(settings: &str, jobs: &[(&str, &str)]) -> Arc<Config> {
    let mut text = format!("{settings}\n[repository.r]\nurl = \"/srv/r\"\n");
    for (name, schedule) in jobs {
        text.push_str(&format!(
            "[[job]]\nname = \"{name}\"\nsource = \"/data/{name}\"\nrepository = \"r\"\n\
             schedule = \"{schedule}\"\ntimezone = \"UTC\"\n"
        ));
    }
    Arc::new(Config::parse(&text, Path::new("/test/coffer.toml")).unwrap())
}

struct Rig {
    clock: Arc<TokioClock>,
    catalog: Arc<SqliteCatalog>,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Rig {
    fn new(start: DateTime<Utc>) -> Rig {
        Rig {
            clock: Arc::new(TokioClock::starting_at(start)),
            catalog: Arc::new(SqliteCatalog::in_memory().unwrap()),
            events: Arc::default(),
        }
    }

    /// Runs a scheduler until `end` (then its graceful shutdown); returns its summary.
    async fn run(&self, config: &Arc<Config>, runner: &Arc<Fake>, end: DateTime<Utc>) -> Summary {
        let events = Arc::clone(&self.events);
        let s = Scheduler::new(
            Arc::clone(config),
            self.catalog.clone(),
            runner.clone(),
            self.clock.clone(),
            "test/1".into(),
        )
        .with_observer(Arc::new(move |e: &Event| {
            events.lock().unwrap().push(e.clone())
        }));
        let clock = Arc::clone(&self.clock);
        s.run_until(async move { clock.sleep_until(end).await })
            .await
            .unwrap()
    }

    async fn history(&self, job: &str) -> Vec<RunRecord> {
        let mut h = self.catalog.history(Some(job), 1000).await.unwrap();
        h.reverse();
        h
    }

    fn skipped(&self) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::Skipped { .. }))
            .count()
    }
}

#[tokio::test(start_paused = true)]
async fn runs_at_cron_times_across_a_dst_change() {
    let start = utc(2025, 3, 28, 12, 0);
    let rig = Rig::new(start);
    let text = "[repository.r]\nurl = \"/srv/r\"\n[[job]]\nname = \"db\"\nsource = \"/d\"\n\
                repository = \"r\"\nschedule = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\n";
    let cfg = Arc::new(Config::parse(text, Path::new("/t/coffer.toml")).unwrap());
    let fake = Arc::new(Fake::new(&rig.clock));
    let summary = rig.run(&cfg, &fake, utc(2025, 4, 1, 12, 0)).await;
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let local: Vec<String> = fake
        .starts("db")
        .iter()
        .map(|t| {
            t.with_timezone(&berlin)
                .format("%m-%d %H:%M %Z")
                .to_string()
        })
        .collect();
    // 02:30 does not exist on March 30: that run happens right after the gap, once.
    assert_eq!(
        local,
        [
            "03-29 02:30 CET",
            "03-30 03:00 CEST",
            "03-31 02:30 CEST",
            "04-01 02:30 CEST"
        ]
    );
    assert_eq!(summary.succeeded, 4);
    let h = rig.history("db").await;
    assert!(h
        .iter()
        .all(|r| r.status == RunStatus::Success && r.trigger == Trigger::Schedule));
    assert_eq!(h[1].snapshot_id.as_deref(), Some("snap-2"));
    assert_eq!(h[1].bytes_added, Some(200));
    assert_eq!(
        h[1].finished_at,
        Some(h[1].started_at + TimeDelta::minutes(1))
    );
}

#[tokio::test(start_paused = true)]
async fn a_missed_run_is_caught_up_once_within_the_window() {
    let rig = Rig::new(utc(2025, 6, 3, 10, 0));
    // The job has been known since June 1st; no daemon ran on the 2nd and the 3rd.
    rig.catalog
        .register_jobs(&["nightly".into()], utc(2025, 6, 1, 0, 0))
        .await
        .unwrap();
    let cfg = config("catch_up_window = \"12h\"", &[("nightly", "0 2 * * *")]);
    let fake = Arc::new(Fake::new(&rig.clock));
    rig.run(&cfg, &fake, utc(2025, 6, 3, 11, 0)).await;
    assert_eq!(fake.starts("nightly"), [utc(2025, 6, 3, 10, 0)]);
    let h = rig.history("nightly").await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].trigger, Trigger::CatchUp);
    assert_eq!(
        h[0].scheduled_at,
        utc(2025, 6, 3, 2, 0),
        "only the last missed time"
    );

    // A restart does not run it again...
    rig.run(&cfg, &fake, utc(2025, 6, 3, 12, 0)).await;
    assert_eq!(fake.calls().len(), 1);
    // ...and a time older than the window is not caught up.
    let late = Rig::new(utc(2025, 6, 3, 15, 0));
    late.catalog
        .register_jobs(&["nightly".into()], utc(2025, 6, 1, 0, 0))
        .await
        .unwrap();
    let fake2 = Arc::new(Fake::new(&late.clock));
    late.run(&cfg, &fake2, utc(2025, 6, 3, 16, 0)).await;
    assert!(fake2.calls().is_empty(), "{:?}", fake2.calls());
    // Nor is a time before the job was first seen (a new job does not run at once).
    let fresh = Rig::new(utc(2025, 6, 3, 10, 0));
    let fake3 = Arc::new(Fake::new(&fresh.clock));
    fresh.run(&cfg, &fake3, utc(2025, 6, 3, 11, 0)).await;
    assert!(fake3.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_job_never_runs_twice_at_once() {
    let rig = Rig::new(utc(2025, 6, 1, 0, 30));
    let cfg = config("max_concurrent_jobs = 4", &[("slow", "@hourly")]);
    // Each run takes 90 minutes: every other hour comes while the last run is still going.
    // Each run takes 130 minutes: the next hour comes while it is still going.
    let fake = Arc::new(Fake::new(&rig.clock).taking("slow", Duration::from_secs(130 * 60)));
    rig.run(&cfg, &fake, utc(2025, 6, 1, 5, 30)).await;
    assert_eq!(fake.max_per_job.load(Ordering::SeqCst), 1);
    let starts: Vec<String> = fake
        .starts("slow")
        .iter()
        .map(|t| t.format("%H:%M").to_string())
        .collect();
    // 01:00 runs to 03:10. 02:00 waits for it and runs 03:10-05:20; 03:00 comes while 02:00
    // is waiting and is skipped. 04:00 waits, runs from 05:20; 05:00 is skipped.
    assert_eq!(starts, ["01:00", "03:10", "05:20"]);
    assert_eq!(rig.skipped(), 2, "03:00 and 05:00 were skipped");
    let h = rig.history("slow").await;
    let scheduled: Vec<String> = h
        .iter()
        .map(|r| r.scheduled_at.format("%H:%M").to_string())
        .collect();
    assert_eq!(scheduled, ["01:00", "02:00", "04:00"]);
    // The last one was interrupted by the shutdown timeout (5 minutes by default).
    assert_eq!(h[2].status, RunStatus::Interrupted);
}

#[tokio::test(start_paused = true)]
async fn a_prune_schedule_runs_as_its_own_task() {
    let rig = Rig::new(utc(2025, 6, 1, 0, 30));
    let text = "[repository.r]\nurl = \"/r\"\n[[job]]\nname = \"j\"\nsource = \"/s\"\n\
                repository = \"r\"\nschedule = \"0 1 * * *\"\nprune = \"0 3 * * *\"\n\
                timezone = \"UTC\"\n";
    let cfg = Arc::new(Config::parse(text, Path::new("/t/coffer.toml")).unwrap());
    let fake = Arc::new(Fake::new(&rig.clock));
    rig.run(&cfg, &fake, utc(2025, 6, 1, 4, 0)).await;
    let calls: Vec<(TaskKind, String)> = fake
        .calls()
        .iter()
        .map(|c| (c.kind, c.start.format("%H:%M").to_string()))
        .collect();
    assert_eq!(
        calls,
        [
            (TaskKind::Backup, "01:00".into()),
            (TaskKind::Prune, "03:00".into())
        ]
    );
    let kinds: Vec<TaskKind> = rig.history("j").await.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [TaskKind::Backup, TaskKind::Prune]);
}

#[tokio::test(start_paused = true)]
async fn failed_runs_are_retried_with_backoff() {
    let rig = Rig::new(utc(2025, 6, 1, 0, 59));
    let cfg = config(
        "retry = { attempts = 4, delay = \"1min\", max_delay = \"3min\" }",
        &[("flaky", "0 1 * * *"), ("down", "0 1 * * *")],
    );
    let fake = Arc::new(
        Fake::new(&rig.clock)
            .taking("flaky", Duration::ZERO)
            .taking("down", Duration::ZERO)
            .failing("flaky", 3)
            .failing("down", u32::MAX),
    );
    rig.run(&cfg, &fake, utc(2025, 6, 1, 2, 0)).await;
    let mins = |job| -> Vec<String> {
        fake.starts(job)
            .iter()
            .map(|t| t.format("%H:%M").to_string())
            .collect()
    };
    // Waits of 1, 2, then 3 minutes (capped).
    assert_eq!(mins("flaky"), ["01:00", "01:01", "01:03", "01:06"]);
    assert_eq!(mins("down"), ["01:00", "01:01", "01:03", "01:06"]);
    let flaky = rig.history("flaky").await;
    assert_eq!(flaky.len(), 1, "retries are one run");
    assert_eq!(
        (flaky[0].status, flaky[0].attempts),
        (RunStatus::Success, 4)
    );
    let down = rig.history("down").await;
    assert_eq!((down[0].status, down[0].attempts), (RunStatus::Failed, 4));
    assert_eq!(
        down[0].error.as_deref(),
        Some("down is unreachable (after 4 tries)")
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_job_fails_only_its_own_run() {
    let rig = Rig::new(utc(2025, 6, 1, 0, 59));
    let cfg = config(
        "retry = { attempts = 1 }",
        &[("broken", "0 1 * * *"), ("fine", "0 1 * * *")],
    );
    let fake = Arc::new(Fake::new(&rig.clock).failing("broken", u32::MAX));
    let summary = rig.run(&cfg, &fake, utc(2025, 6, 1, 2, 0)).await;
    assert_eq!((summary.succeeded, summary.failed), (1, 1));
    assert_eq!(rig.history("fine").await[0].status, RunStatus::Success);
    assert_eq!(rig.history("broken").await[0].status, RunStatus::Failed);
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_limit_holds() {
    let rig = Rig::new(utc(2025, 6, 1, 0, 59));
    let jobs = [
        ("a", "0 1 * * *"),
        ("b", "0 1 * * *"),
        ("c", "0 1 * * *"),
        ("d", "0 1 * * *"),
    ];
    let cfg = config("max_concurrent_jobs = 2", &jobs);
    let ten = Duration::from_secs(600);
    let fake = Arc::new(
        Fake::new(&rig.clock)
            .taking("a", ten)
            .taking("b", ten)
            .taking("c", ten)
            .taking("d", ten),
    );
    let summary = rig.run(&cfg, &fake, utc(2025, 6, 1, 2, 0)).await;
    assert_eq!(summary.succeeded, 4);
    assert_eq!(fake.max_total.load(Ordering::SeqCst), 2);
    let mut starts: Vec<String> = fake
        .calls()
        .iter()
        .map(|c| c.start.format("%H:%M").to_string())
        .collect();
    starts.sort();
    assert_eq!(starts, ["01:00", "01:00", "01:10", "01:10"]);
    // Waiting for a slot does not change which time a run is for.
    for (job, _) in jobs {
        assert_eq!(
            rig.history(job).await[0].scheduled_at,
            utc(2025, 6, 1, 1, 0)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_running_jobs_up_to_the_timeout() {
    // The run takes 10 minutes; shutdown comes 1 minute in, with 30 minutes to spare.
    let rig = Rig::new(utc(2025, 6, 1, 0, 59));
    let cfg = config("shutdown_timeout = \"30min\"", &[("job", "0 1 * * *")]);
    let fake = Arc::new(Fake::new(&rig.clock).taking("job", Duration::from_secs(600)));
    let summary = rig.run(&cfg, &fake, utc(2025, 6, 1, 1, 1)).await;
    assert_eq!(summary.succeeded, 1);
    assert_eq!(
        rig.clock.now(),
        utc(2025, 6, 1, 1, 10),
        "returned when the run ended"
    );
    assert_eq!(rig.history("job").await[0].status, RunStatus::Success);

    // The run takes an hour; the shutdown timeout is 2 minutes: it is stopped.
    let rig = Rig::new(utc(2025, 6, 1, 0, 59));
    let cfg = config("shutdown_timeout = \"2min\"", &[("job", "0 1 * * *")]);
    let fake = Arc::new(Fake::new(&rig.clock).taking("job", Duration::from_secs(3600)));
    let summary = rig.run(&cfg, &fake, utc(2025, 6, 1, 1, 1)).await;
    assert_eq!(summary.interrupted, 1);
    assert_eq!(rig.clock.now(), utc(2025, 6, 1, 1, 3));
    assert_eq!(fake.total.load(Ordering::SeqCst), 0, "the run was dropped");
    let h = rig.history("job").await;
    assert_eq!(h[0].status, RunStatus::Interrupted);
    assert!(h[0]
        .error
        .as_deref()
        .unwrap()
        .contains("did not end within 2min"));
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_a_backoff_wait() {
    let rig = Rig::new(utc(2025, 6, 1, 0, 59));
    let cfg = config(
        "retry = { attempts = 3, delay = \"1h\" }",
        &[("job", "0 1 * * *")],
    );
    let fake = Arc::new(
        Fake::new(&rig.clock)
            .taking("job", Duration::ZERO)
            .failing("job", u32::MAX),
    );
    rig.run(&cfg, &fake, utc(2025, 6, 1, 1, 5)).await;
    assert_eq!(
        rig.clock.now(),
        utc(2025, 6, 1, 1, 5),
        "did not wait for the retry"
    );
    let h = rig.history("job").await;
    assert_eq!(h[0].status, RunStatus::Failed);
    assert!(h[0].error.as_deref().unwrap().contains("shutting down"));
}

#[tokio::test(start_paused = true)]
async fn a_job_longer_than_the_job_timeout_is_stopped() {
    let rig = Rig::new(utc(2025, 6, 1, 0, 59));
    let cfg = config(
        "job_timeout = \"30min\"\nretry = { attempts = 1 }",
        &[("job", "0 1 * * *")],
    );
    let fake = Arc::new(Fake::new(&rig.clock).taking("job", Duration::from_secs(7200)));
    rig.run(&cfg, &fake, utc(2025, 6, 1, 2, 0)).await;
    let h = rig.history("job").await;
    assert_eq!(h[0].status, RunStatus::Interrupted);
    assert_eq!(h[0].finished_at, Some(utc(2025, 6, 1, 1, 30)));
}

#[tokio::test(start_paused = true)]
async fn run_now_records_a_manual_run_and_refuses_a_busy_job() {
    let rig = Rig::new(utc(2025, 6, 1, 12, 0));
    let cfg = config("", &[("job", "0 1 * * *")]);
    let fake = Arc::new(Fake::new(&rig.clock).taking("job", Duration::ZERO));
    let s = Scheduler::new(
        Arc::clone(&cfg),
        rig.catalog.clone(),
        fake.clone(),
        rig.clock.clone(),
        "test/1".into(),
    );
    let r = s.run_now("job", TaskKind::Backup).await.unwrap();
    assert_eq!((r.status, r.trigger), (RunStatus::Success, Trigger::Manual));
    assert_eq!(r.snapshot_id.as_deref(), Some("snap-1"));
    // Another process is running the job.
    rig.catalog
        .claim(
            &NewRun {
                job: "job".into(),
                kind: TaskKind::Backup,
                scheduled_at: utc(2025, 6, 1, 1, 0),
                trigger: Trigger::Schedule,
                owner: "other/1".into(),
                started_at: rig.clock.now(),
            },
            rig.clock.now(),
        )
        .await
        .unwrap();
    let e = s.run_now("job", TaskKind::Backup).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    let e = s.run_now("nope", TaskKind::Backup).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownJob);
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn orphaned_runs_of_dead_local_processes_are_marked_interrupted() {
    let rig = Rig::new(utc(2025, 6, 1, 12, 0));
    // A pid that is not running: pid_max is at most 2^22.
    let dead = format!("{}/{}", host_name(), (1u32 << 22) + 7);
    for (owner, hour) in [(dead.as_str(), 1), ("elsewhere/1", 2)] {
        rig.catalog
            .claim(
                &NewRun {
                    job: format!("j{hour}"),
                    kind: TaskKind::Backup,
                    scheduled_at: utc(2025, 6, 1, hour, 0),
                    trigger: Trigger::Schedule,
                    owner: owner.into(),
                    started_at: utc(2025, 6, 1, hour, 0),
                },
                utc(2025, 6, 1, 0, 0),
            )
            .await
            .unwrap();
    }
    let cfg = config("", &[]);
    let fake = Arc::new(Fake::new(&rig.clock));
    rig.run(&cfg, &fake, utc(2025, 6, 1, 12, 1)).await;
    assert_eq!(rig.history("j1").await[0].status, RunStatus::Interrupted);
    assert_eq!(
        rig.history("j2").await[0].status,
        RunStatus::Running,
        "another host's run is left alone"
    );
}
