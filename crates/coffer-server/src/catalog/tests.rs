//! The behaviour every catalog must have, run against each implementation.

use super::*;
use chrono::TimeZone;

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, h, m, 0).unwrap()
}

fn new_run(job: &str, scheduled: DateTime<Utc>, owner: &str) -> NewRun {
    NewRun {
        job: job.into(),
        kind: TaskKind::Backup,
        scheduled_at: scheduled,
        trigger: Trigger::Schedule,
        owner: owner.into(),
        started_at: scheduled + TimeDelta::milliseconds(1500),
    }
}

fn done(status: RunStatus, at: DateTime<Utc>) -> Finish {
    Finish {
        status,
        finished_at: at,
        snapshot_id: Some(format!("snap-{}", at.timestamp())),
        bytes_added: Some(4096),
        error: (status == RunStatus::Failed).then(|| "source unreachable".into()),
        notes: vec!["note one".into(), "note two".into()],
    }
}

/// Claims, retries, finishes and reads back.
pub(crate) async fn contract(c: &dyn Catalog) {
    let long_ago = t(0, 0) - TimeDelta::days(1);
    let first = new_run("db", t(2, 0), "host/1");
    let Claim::Claimed(id) = c.claim(&first, long_ago).await.unwrap() else {
        panic!("the first claim failed");
    };
    // The same scheduled time cannot be claimed again, by anyone.
    assert_eq!(
        c.claim(&new_run("db", t(2, 0), "host/2"), long_ago)
            .await
            .unwrap(),
        Claim::AlreadyClaimed
    );
    // Another time of the same job waits while the first is running...
    assert_eq!(
        c.claim(&new_run("db", t(3, 0), "host/2"), long_ago)
            .await
            .unwrap(),
        Claim::Busy
    );
    // ...unless the running one is older than the job timeout.
    let id_other = match c
        .claim(&new_run("db", t(3, 0), "host/2"), t(2, 30))
        .await
        .unwrap()
    {
        Claim::Claimed(id) => id,
        other => panic!("a stale run still blocks: {other:?}"),
    };
    // Another job is independent.
    assert!(matches!(
        c.claim(&new_run("files", t(2, 0), "host/1"), long_ago)
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));
    let running: Vec<i64> = c.running().await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(running.len(), 3);
    assert!(running.contains(&id) && running.contains(&id_other));

    c.retrying(id, 2, "first try failed").await.unwrap();
    c.finish(id, &done(RunStatus::Success, t(2, 10)))
        .await
        .unwrap();
    c.finish(id_other, &done(RunStatus::Failed, t(3, 5)))
        .await
        .unwrap();

    let hist = c.history(Some("db"), 10).await.unwrap();
    assert_eq!(hist.len(), 2, "{hist:#?}");
    assert_eq!(hist[0].id, id_other, "newest first");
    assert_eq!(hist[0].status, RunStatus::Failed);
    assert_eq!(hist[0].error.as_deref(), Some("source unreachable"));
    let ok = &hist[1];
    assert_eq!(ok.status, RunStatus::Success);
    assert_eq!(ok.attempts, 2);
    assert_eq!(ok.scheduled_at, t(2, 0));
    assert_eq!(ok.started_at, t(2, 0) + TimeDelta::milliseconds(1500));
    assert_eq!(ok.finished_at, Some(t(2, 10)));
    assert_eq!(
        ok.snapshot_id.as_deref(),
        Some(&*format!("snap-{}", t(2, 10).timestamp()))
    );
    assert_eq!(ok.bytes_added, Some(4096));
    assert_eq!(ok.owner, "host/1");
    assert_eq!(ok.trigger, Trigger::Schedule);
    assert_eq!(ok.notes, ["note one", "note two"]);
    assert_eq!(c.history(None, 10).await.unwrap().len(), 3);
    assert_eq!(c.history(None, 1).await.unwrap().len(), 1);

    let (last, last_ok) = c.last_runs("db", TaskKind::Backup).await.unwrap();
    assert_eq!(last.map(|r| r.id), Some(id_other));
    assert_eq!(last_ok.map(|r| r.id), Some(id));
    let (none, none_ok) = c.last_runs("db", TaskKind::Prune).await.unwrap();
    assert!(none.is_none() && none_ok.is_none());

    assert!(c.has_run("db", TaskKind::Backup, t(2, 0)).await.unwrap());
    assert!(!c.has_run("db", TaskKind::Backup, t(4, 0)).await.unwrap());
    assert!(!c.has_run("db", TaskKind::Prune, t(2, 0)).await.unwrap());

    c.register_jobs(&["db".into()], t(1, 0)).await.unwrap();
    c.register_jobs(&["db".into(), "files".into()], t(5, 0))
        .await
        .unwrap();
    assert_eq!(c.first_seen("db").await.unwrap(), Some(t(1, 0)));
    assert_eq!(c.first_seen("files").await.unwrap(), Some(t(5, 0)));
    assert_eq!(c.first_seen("nope").await.unwrap(), None);
}

/// Two handles on one catalog racing for the same runs: each run is claimed exactly once.
pub(crate) async fn claims_once_between(a: &dyn Catalog, b: &dyn Catalog) {
    let long_ago = t(0, 0) - TimeDelta::days(1);
    let mut won = [0, 0];
    for i in 0..20 {
        let job = format!("job-{i}");
        let ra = new_run(&job, t(2, 0), "a/1");
        let rb = new_run(&job, t(2, 0), "b/1");
        let (x, y) = tokio::join!(a.claim(&ra, long_ago), b.claim(&rb, long_ago));
        let (x, y) = (x.unwrap(), y.unwrap());
        let claimed = [x, y]
            .iter()
            .filter(|c| matches!(c, Claim::Claimed(_)))
            .count();
        assert_eq!(claimed, 1, "{job}: {x:?} {y:?}");
        won[usize::from(matches!(y, Claim::Claimed(_)))] += 1;
    }
    assert_eq!(won[0] + won[1], 20);
    assert_eq!(a.history(None, 100).await.unwrap().len(), 20);
}
