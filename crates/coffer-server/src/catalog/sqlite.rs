//! The embedded catalog: one SQLite file (WAL mode, so `coffer status` reads while the daemon
//! writes). Claims run in `BEGIN IMMEDIATE` transactions, which serialise them between
//! processes sharing the file.

use super::{
    join_notes, millis, split_notes, Catalog, Claim, Finish, NewRun, RunRecord, RunStatus,
    TaskKind, Trigger,
};
use crate::error::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    kind TEXT NOT NULL,
    scheduled_at INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    owner TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    snapshot_id TEXT,
    bytes_added INTEGER,
    error TEXT,
    notes TEXT,
    UNIQUE (job, kind, scheduled_at)
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, kind, started_at);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL
);
";

const COLUMNS: &str = "id, job, kind, scheduled_at, trigger, owner, started_at, finished_at, \
                       status, attempts, snapshot_id, bytes_added, error, notes";

/// A SQLite catalog.
pub struct SqliteCatalog {
    conn: Mutex<Connection>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

fn record(r: &Row<'_>) -> rusqlite::Result<(RunRecord, [String; 3])> {
    let kind: String = r.get(2)?;
    let trigger: String = r.get(4)?;
    let status: String = r.get(8)?;
    Ok((
        RunRecord {
            id: r.get(0)?,
            job: r.get(1)?,
            kind: TaskKind::Backup,
            scheduled_at: time(r.get(3)?),
            trigger: Trigger::Schedule,
            owner: r.get(5)?,
            started_at: time(r.get(6)?),
            finished_at: r.get::<_, Option<i64>>(7)?.map(time),
            status: RunStatus::Running,
            attempts: r.get(9)?,
            snapshot_id: r.get(10)?,
            bytes_added: r.get::<_, Option<i64>>(11)?.map(|b| b.max(0) as u64),
            error: r.get(12)?,
            notes: split_notes(r.get(13)?),
        },
        [kind, trigger, status],
    ))
}

fn finish_record(
    (mut rec, [kind, trigger, status]): (RunRecord, [String; 3]),
) -> Result<RunRecord> {
    rec.kind = TaskKind::parse(&kind)?;
    rec.trigger = Trigger::parse(&trigger)?;
    rec.status = RunStatus::parse(&status)?;
    Ok(rec)
}

impl SqliteCatalog {
    /// Opens or creates the catalog file (and its folder).
    pub fn open(path: &Path) -> Result<SqliteCatalog> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    crate::Error::catalog(format!(
                        "cannot create the catalog's folder {}: {e}",
                        dir.display()
                    ))
                })?;
            }
        }
        let conn = Connection::open(path).map_err(|e| {
            crate::Error::catalog(format!("cannot open the catalog {}: {e}", path.display()))
        })?;
        Self::setup(conn)
    }

    /// A catalog in memory (tests).
    pub fn in_memory() -> Result<SqliteCatalog> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(conn: Connection) -> Result<SqliteCatalog> {
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteCatalog {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c)
    }

    fn query(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<RunRecord>> {
        self.with(|c| {
            let mut st = c.prepare_cached(sql)?;
            let rows = st.query_map(params, record)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(finish_record(r?)?);
            }
            Ok(out)
        })
    }
}

#[async_trait]
impl Catalog for SqliteCatalog {
    async fn claim(&self, run: &NewRun, busy_since: DateTime<Utc>) -> Result<Claim> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE job = ?1 AND kind = ?2 \
                 AND scheduled_at = ?3)",
                params![run.job, run.kind.as_str(), ms(run.scheduled_at)],
                |r| r.get(0),
            )?;
            if taken {
                return Ok(Claim::AlreadyClaimed);
            }
            let busy: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE job = ?1 AND kind = ?2 \
                 AND status = 'running' AND started_at > ?3)",
                params![run.job, run.kind.as_str(), ms(busy_since)],
                |r| r.get(0),
            )?;
            if busy {
                return Ok(Claim::Busy);
            }
            tx.execute(
                "INSERT INTO runs (job, kind, scheduled_at, trigger, owner, started_at, status) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running')",
                params![
                    run.job,
                    run.kind.as_str(),
                    ms(run.scheduled_at),
                    run.trigger.as_str(),
                    run.owner,
                    ms(millis(run.started_at)),
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(Claim::Claimed(id))
        })
    }

    async fn retrying(&self, id: i64, attempt: u32, error: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET attempts = ?2, error = ?3 WHERE id = ?1",
                params![id, attempt, error],
            )?;
            Ok(())
        })
    }

    async fn finish(&self, id: i64, f: &Finish) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, snapshot_id = ?4, \
                 bytes_added = ?5, error = ?6, notes = ?7 WHERE id = ?1",
                params![
                    id,
                    f.status.as_str(),
                    ms(f.finished_at),
                    f.snapshot_id,
                    f.bytes_added.map(|b| b as i64),
                    f.error,
                    join_notes(&f.notes),
                ],
            )?;
            Ok(())
        })
    }

    async fn history(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        let limit = limit.min(i64::MAX as usize) as i64;
        match job {
            Some(j) => self.query(
                &format!(
                    "SELECT {COLUMNS} FROM runs WHERE job = ?1 \
                     ORDER BY started_at DESC, id DESC LIMIT ?2"
                ),
                &[&j, &limit],
            ),
            None => self.query(
                &format!("SELECT {COLUMNS} FROM runs ORDER BY started_at DESC, id DESC LIMIT ?1"),
                &[&limit],
            ),
        }
    }

    async fn last_runs(
        &self,
        job: &str,
        kind: TaskKind,
    ) -> Result<(Option<RunRecord>, Option<RunRecord>)> {
        let last = self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM runs WHERE job = ?1 AND kind = ?2 \
                     ORDER BY started_at DESC, id DESC LIMIT 1"
                ),
                &[&job, &kind.as_str()],
            )?
            .pop();
        let ok = self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM runs WHERE job = ?1 AND kind = ?2 \
                     AND status IN ('success', 'partial') \
                     ORDER BY started_at DESC, id DESC LIMIT 1"
                ),
                &[&job, &kind.as_str()],
            )?
            .pop();
        Ok((last, ok))
    }

    async fn has_run(
        &self,
        job: &str,
        kind: TaskKind,
        scheduled_at: DateTime<Utc>,
    ) -> Result<bool> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE job = ?1 AND kind = ?2 \
                 AND scheduled_at = ?3)",
                params![job, kind.as_str(), ms(scheduled_at)],
                |r| r.get(0),
            )?)
        })
    }

    async fn running(&self) -> Result<Vec<RunRecord>> {
        self.query(
            &format!("SELECT {COLUMNS} FROM runs WHERE status = 'running' ORDER BY id"),
            &[],
        )
    }

    async fn register_jobs(&self, jobs: &[String], now: DateTime<Utc>) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            for j in jobs {
                tx.execute(
                    "INSERT INTO jobs (name, first_seen) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO NOTHING",
                    params![j, ms(now)],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    async fn first_seen(&self, job: &str) -> Result<Option<DateTime<Utc>>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT first_seen FROM jobs WHERE name = ?1",
                params![job],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(time))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_catalog_contract() {
        let c = SqliteCatalog::in_memory().unwrap();
        crate::catalog::tests::contract(&c).await;
    }

    #[tokio::test]
    async fn two_handles_on_one_file_claim_each_run_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("catalog.db");
        let a = SqliteCatalog::open(&path).unwrap();
        let b = SqliteCatalog::open(&path).unwrap();
        crate::catalog::tests::claims_once_between(&a, &b).await;
    }
}
