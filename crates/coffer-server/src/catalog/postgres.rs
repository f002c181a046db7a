//! The shared catalog: a PostgreSQL database that several daemons use at once. A claim runs in
//! a transaction holding a transaction-level advisory lock on the job (so two daemons never
//! check-then-insert the same job at once), and the insert itself is `ON CONFLICT DO NOTHING` on
//! `(job, kind, scheduled_at)`: whichever daemon gets there first runs that time, the others
//! skip it.

use super::{
    join_notes, millis, split_notes, Catalog, Claim, Finish, NewRun, RunRecord, RunStatus,
    TaskKind, Trigger,
};
use crate::config::redact_url;
use crate::error::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Row};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS coffer_runs (
    id BIGSERIAL PRIMARY KEY,
    job TEXT NOT NULL,
    kind TEXT NOT NULL,
    scheduled_at TIMESTAMPTZ NOT NULL,
    trigger TEXT NOT NULL,
    owner TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    snapshot_id TEXT,
    bytes_added BIGINT,
    error TEXT,
    notes TEXT,
    UNIQUE (job, kind, scheduled_at)
);
CREATE INDEX IF NOT EXISTS coffer_runs_by_job ON coffer_runs (job, kind, started_at);
CREATE INDEX IF NOT EXISTS coffer_runs_by_status ON coffer_runs (status);
CREATE TABLE IF NOT EXISTS coffer_jobs (
    name TEXT PRIMARY KEY,
    first_seen TIMESTAMPTZ NOT NULL
);
";

const COLUMNS: &str = "id, job, kind, scheduled_at, trigger, owner, started_at, finished_at, \
                       status, attempts, snapshot_id, bytes_added, error, notes";

/// An advisory-lock key space of our own (`'coffer'` as a number), paired with the job's hash.
const LOCK_SPACE: i32 = 0x636f_6666;

/// A PostgreSQL catalog (tables `coffer_runs` and `coffer_jobs`, created when missing).
pub struct PostgresCatalog {
    client: Mutex<Client>,
}

fn record(r: &Row) -> Result<RunRecord> {
    Ok(RunRecord {
        id: r.try_get(0)?,
        job: r.try_get(1)?,
        kind: TaskKind::parse(r.try_get(2)?)?,
        scheduled_at: r.try_get(3)?,
        trigger: Trigger::parse(r.try_get(4)?)?,
        owner: r.try_get(5)?,
        started_at: r.try_get(6)?,
        finished_at: r.try_get(7)?,
        status: RunStatus::parse(r.try_get(8)?)?,
        attempts: r.try_get::<_, i32>(9)?.max(0) as u32,
        snapshot_id: r.try_get(10)?,
        bytes_added: r.try_get::<_, Option<i64>>(11)?.map(|b| b.max(0) as u64),
        error: r.try_get(12)?,
        notes: split_notes(r.try_get(13)?),
    })
}

impl PostgresCatalog {
    /// Connects (without TLS) and creates the tables when missing.
    pub async fn connect(url: &str) -> Result<PostgresCatalog> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(|e| {
            Error::catalog(format!(
                "cannot connect to the catalog {}: {e}",
                redact_url(url)
            ))
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("catalog connection ended: {e}");
            }
        });
        // Several daemons may start at once: serialise the schema creation. The lock is held
        // until the creating transaction commits (a session lock released inside the
        // transaction would let the next daemon miss the uncommitted tables and collide on the
        // catalog's unique type names).
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({LOCK_SPACE}, 0); {SCHEMA} COMMIT;"
            ))
            .await?;
        Ok(PostgresCatalog {
            client: Mutex::new(client),
        })
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<RunRecord>> {
        let c = self.client.lock().await;
        let rows = c.query(sql, params).await?;
        rows.iter().map(record).collect()
    }
}

#[async_trait]
impl Catalog for PostgresCatalog {
    async fn claim(&self, run: &NewRun, busy_since: DateTime<Utc>) -> Result<Claim> {
        let mut c = self.client.lock().await;
        let tx = c.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_SPACE, &run.job],
        )
        .await?;
        let kind = run.kind.as_str();
        let scheduled = millis(run.scheduled_at);
        let taken: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM coffer_runs WHERE job = $1 AND kind = $2 \
                 AND scheduled_at = $3)",
                &[&run.job, &kind, &scheduled],
            )
            .await?
            .get(0);
        if taken {
            return Ok(Claim::AlreadyClaimed);
        }
        let busy: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM coffer_runs WHERE job = $1 AND kind = $2 \
                 AND status = 'running' AND started_at > $3)",
                &[&run.job, &kind, &busy_since],
            )
            .await?
            .get(0);
        if busy {
            return Ok(Claim::Busy);
        }
        let row = tx
            .query_opt(
                "INSERT INTO coffer_runs (job, kind, scheduled_at, trigger, owner, started_at, \
                 status) VALUES ($1, $2, $3, $4, $5, $6, 'running') \
                 ON CONFLICT (job, kind, scheduled_at) DO NOTHING RETURNING id",
                &[
                    &run.job,
                    &kind,
                    &scheduled,
                    &run.trigger.as_str(),
                    &run.owner,
                    &millis(run.started_at),
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(match row {
            Some(r) => Claim::Claimed(r.get(0)),
            None => Claim::AlreadyClaimed,
        })
    }

    async fn retrying(&self, id: i64, attempt: u32, error: &str) -> Result<()> {
        let c = self.client.lock().await;
        c.execute(
            "UPDATE coffer_runs SET attempts = $2, error = $3 WHERE id = $1",
            &[&id, &(attempt.min(i32::MAX as u32) as i32), &error],
        )
        .await?;
        Ok(())
    }

    async fn finish(&self, id: i64, f: &Finish) -> Result<()> {
        let c = self.client.lock().await;
        c.execute(
            "UPDATE coffer_runs SET status = $2, finished_at = $3, snapshot_id = $4, \
             bytes_added = $5, error = $6, notes = $7 WHERE id = $1",
            &[
                &id,
                &f.status.as_str(),
                &millis(f.finished_at),
                &f.snapshot_id,
                &f.bytes_added.map(|b| b.min(i64::MAX as u64) as i64),
                &f.error,
                &join_notes(&f.notes),
            ],
        )
        .await?;
        Ok(())
    }

    async fn history(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        let limit = limit.min(i64::MAX as usize) as i64;
        match job {
            Some(j) => {
                self.query(
                    &format!(
                        "SELECT {COLUMNS} FROM coffer_runs WHERE job = $1 \
                         ORDER BY started_at DESC, id DESC LIMIT $2"
                    ),
                    &[&j, &limit],
                )
                .await
            }
            None => {
                self.query(
                    &format!(
                        "SELECT {COLUMNS} FROM coffer_runs \
                         ORDER BY started_at DESC, id DESC LIMIT $1"
                    ),
                    &[&limit],
                )
                .await
            }
        }
    }

    async fn last_runs(
        &self,
        job: &str,
        kind: TaskKind,
    ) -> Result<(Option<RunRecord>, Option<RunRecord>)> {
        let kind = kind.as_str();
        let last = self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM coffer_runs WHERE job = $1 AND kind = $2 \
                     ORDER BY started_at DESC, id DESC LIMIT 1"
                ),
                &[&job, &kind],
            )
            .await?
            .pop();
        let ok = self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM coffer_runs WHERE job = $1 AND kind = $2 \
                     AND status IN ('success', 'partial') \
                     ORDER BY started_at DESC, id DESC LIMIT 1"
                ),
                &[&job, &kind],
            )
            .await?
            .pop();
        Ok((last, ok))
    }

    async fn has_run(
        &self,
        job: &str,
        kind: TaskKind,
        scheduled_at: DateTime<Utc>,
    ) -> Result<bool> {
        let c = self.client.lock().await;
        Ok(c.query_one(
            "SELECT EXISTS (SELECT 1 FROM coffer_runs WHERE job = $1 AND kind = $2 \
             AND scheduled_at = $3)",
            &[&job, &kind.as_str(), &millis(scheduled_at)],
        )
        .await?
        .get(0))
    }

    async fn running(&self) -> Result<Vec<RunRecord>> {
        self.query(
            &format!("SELECT {COLUMNS} FROM coffer_runs WHERE status = 'running' ORDER BY id"),
            &[],
        )
        .await
    }

    async fn register_jobs(&self, jobs: &[String], now: DateTime<Utc>) -> Result<()> {
        let c = self.client.lock().await;
        for j in jobs {
            c.execute(
                "INSERT INTO coffer_jobs (name, first_seen) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
                &[j, &millis(now)],
            )
            .await?;
        }
        Ok(())
    }

    async fn first_seen(&self, job: &str) -> Result<Option<DateTime<Utc>>> {
        let c = self.client.lock().await;
        Ok(c.query_opt(
            "SELECT first_seen FROM coffer_jobs WHERE name = $1",
            &[&job],
        )
        .await?
        .map(|r| r.get(0)))
    }
}

#[cfg(test)]
mod tests;
