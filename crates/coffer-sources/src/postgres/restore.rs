//! The PostgreSQL restore: create the database when missing, `pg_restore --section=pre-data`
//! of the schema archive (filtered for `--table`), COPY FROM STDIN per table in parallel,
//! sequences, large objects, `pg_restore --section=post-data` (indexes, constraints,
//! triggers), materialized view refreshes, then row counts compared with the manifest.
//! Each step's error says what the target holds at that point.

use super::catalog::{PgDatabase, PgDetails, PgTable};
use super::connect::{ident, literal, qualified, query_error, PgConn};
use super::stage::Stage;
use super::toc::{self, Picker};
use super::tools::{self, major_of_num, Major, Tool};
use crate::database::{
    select_tables, source_error, CountCheck, DatabaseInfo, DbManifest, RestoreReport,
    RestoreRequest, StreamSource, TargetState,
};
use bytes::Bytes;
use coffer_core::{Error, ErrorKind, Result};
use futures::{SinkExt, StreamExt};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use tokio_postgres::Client;

/// Reads the PostgreSQL details of a manifest.
pub fn details(m: &DbManifest) -> Result<PgDetails> {
    serde_json::from_value(m.details.clone()).map_err(|e| {
        Error::corrupt(format!(
            "the snapshot's PostgreSQL details are unreadable: {e}"
        ))
    })
}

/// Which databases of the snapshot go where: `(database in the snapshot, target name)`.
pub fn plan<'a>(
    m: &'a DbManifest,
    database: Option<&str>,
    target_db: Option<&str>,
) -> Result<Vec<(&'a DatabaseInfo, String)>> {
    let names = || {
        m.databases
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (database, target_db) {
        (Some(d), t) => {
            let info = m.database(Some(d)).ok_or_else(|| {
                Error::not_found(format!(
                    "the snapshot has no database {d:?} (it holds: {})",
                    names()
                ))
            })?;
            Ok(vec![(info, t.unwrap_or(d).to_string())])
        }
        (None, Some(t)) => match m.databases.as_slice() {
            [one] => Ok(vec![(one, t.to_string())]),
            _ => Err(Error::invalid(format!(
                "the snapshot holds {} databases ({}): choose one with --database NAME, or give a target URL without a database to restore them all",
                m.databases.len(),
                names()
            ))),
        },
        (None, None) => Ok(m.databases.iter().map(|d| (d, d.name.clone())).collect()),
    }
}

/// The tables a restore writes: the `--table` selection (all when empty) with the partitions
/// of selected partitioned tables.
pub fn chosen<'a>(
    db: &'a PgDatabase,
    info: &DatabaseInfo,
    args: &[String],
) -> Result<Vec<&'a PgTable>> {
    let picked = select_tables(info, args)?;
    let mut oids: BTreeSet<u32> = BTreeSet::new();
    for ti in picked {
        let schema = ti.schema.as_deref().unwrap_or("public");
        if let Some(t) = db
            .tables
            .iter()
            .find(|t| t.schema == schema && t.name == ti.name)
        {
            oids.insert(t.oid);
        }
    }
    // Partitions of chosen partitioned tables, at any depth.
    loop {
        let more: Vec<u32> = db
            .tables
            .iter()
            .filter(|t| t.parent.is_some_and(|p| oids.contains(&p)) && !oids.contains(&t.oid))
            .map(|t| t.oid)
            .collect();
        if more.is_empty() {
            break;
        }
        oids.extend(more);
    }
    Ok(db.tables.iter().filter(|t| oids.contains(&t.oid)).collect())
}

/// Restores the snapshot into `req.target`.
pub async fn restore(
    src: &StreamSource,
    m: &DbManifest,
    req: &RestoreRequest,
) -> Result<RestoreReport> {
    let target = req.target()?;
    if req.schema_only && req.data_only {
        return Err(Error::invalid(
            "--schema-only and --data-only exclude each other",
        ));
    }
    let d = details(m)?;
    let conn = PgConn::new(target)?;
    let mut report = RestoreReport {
        target: target.redacted(),
        ..Default::default()
    };
    let plan = plan(m, req.database.as_deref(), target.database.as_deref())?;
    let whole_target = target.database.is_none() && req.database.is_none();
    if whole_target && !req.data_only && req.tables.is_empty() {
        if let Some(g) = &d.globals {
            super::globals::restore(src, g, &conn, &mut report)
                .await
                .map_err(|e| {
                    e.context("restoring roles and grants (globals); no database was touched yet")
                })?;
        }
    }
    let many = plan.len() > 1;
    for (info, name) in plan {
        let db = d.databases.get(&info.name).ok_or_else(|| {
            Error::corrupt(format!(
                "the snapshot's details miss database {}",
                info.name
            ))
        })?;
        let c = conn.with_database(&name);
        let mut job = DbRestore {
            src,
            details: &d,
            db,
            info,
            conn: &c,
            req,
            report: &mut report,
            label: if many {
                format!("{name}:")
            } else {
                String::new()
            },
        };
        job.run().await?;
    }
    Ok(report)
}

/// Describes the target before a restore.
pub async fn probe_target(m: &DbManifest, req: &RestoreRequest) -> Result<TargetState> {
    let target = req.target()?;
    let d = details(m)?;
    let conn = PgConn::new(target)?;
    let plan = plan(m, req.database.as_deref(), target.database.as_deref())?;
    let mut state = TargetState {
        exists: false,
        empty: true,
        summary: String::new(),
        conflicts: Vec::new(),
    };
    let mut summaries = Vec::new();
    let maint = connect_maintenance(&conn).await?;
    for (info, name) in &plan {
        let exists = maint
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[name])
            .await
            .map_err(|e| query_error("looking for the target database", e))?
            .is_some();
        if !exists {
            summaries.push(format!(
                "database {name} on {} does not exist (it will be created)",
                conn.server()
            ));
            continue;
        }
        state.exists = true;
        let client = conn.with_database(name).connect().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                   WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'), \
                 (SELECT count(*) FROM pg_largeobject_metadata), pg_database_size(current_database())",
                &[],
            )
            .await
            .map_err(|e| query_error("describing the target database", e))?;
        let (tables, los, size): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        // A data-only restore writes into existing tables: only rows already there count.
        if !req.data_only && (tables > 0 || los > 0) {
            state.empty = false;
        }
        summaries.push(format!(
            "database {name} on {}: {tables} tables, {los} large objects, {} bytes",
            conn.server(),
            size
        ));
        let Some(db) = d.databases.get(&info.name) else {
            continue;
        };
        let existing = existing_tables(&client).await?;
        for t in chosen(db, info, &req.tables)? {
            if !existing.contains(&(t.schema.clone(), t.name.clone())) {
                continue;
            }
            if req.data_only {
                let has_rows: bool = client
                    .query_one(
                        &format!("SELECT EXISTS (SELECT 1 FROM {})", t.sql_name()),
                        &[],
                    )
                    .await
                    .map(|r| r.get(0))
                    .unwrap_or(true);
                if !has_rows {
                    continue;
                }
            }
            state.empty = false;
            let prefix = if plan.len() > 1 {
                format!("{name}:")
            } else {
                String::new()
            };
            state.conflicts.push(format!("{prefix}{}", t.display()));
        }
    }
    state.summary = summaries.join("; ");
    Ok(state)
}

/// Connects to the maintenance database (`postgres`, else `template1`) of `conn`'s server.
pub async fn connect_maintenance(conn: &PgConn) -> Result<Client> {
    match conn.with_database("postgres").connect().await {
        Ok(c) => Ok(c),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            conn.with_database("template1").connect().await
        }
        Err(e) => Err(e),
    }
}

async fn existing_tables(client: &Client) -> Result<HashSet<(String, String)>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')",
            &[],
        )
        .await
        .map_err(|e| query_error("listing the target's tables", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The `pg_restore` for an archive made by `pg_dump_version`, to run against `server`.
pub fn find_pg_restore(pg_dump_version: &str, server: Option<Major>) -> Result<Tool> {
    let archive = tools::parse_tool_version(pg_dump_version)
        .map(|v| v.0)
        .unwrap_or((0, 0));
    let min = server.map_or(archive, |s| s.max(archive));
    tools::find("pg_restore", min, server.unwrap_or(archive))
}

struct DbRestore<'a> {
    src: &'a StreamSource,
    details: &'a PgDetails,
    db: &'a PgDatabase,
    info: &'a DatabaseInfo,
    conn: &'a PgConn,
    req: &'a RestoreRequest,
    report: &'a mut RestoreReport,
    label: String,
}

impl DbRestore<'_> {
    async fn run(&mut self) -> Result<()> {
        let name = self.conn.database.clone();
        let created = self.ensure_database().await?;
        let created_note = if created {
            format!("database {name} was created and ")
        } else {
            format!("database {name} ")
        };
        let client = self.conn.connect().await?;
        let num: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .await
            .map_err(|e| query_error("reading the target's version", e))?
            .get(0);
        let pg_restore = find_pg_restore(
            &self.details.pg_dump_version,
            Some(major_of_num(num as u32)),
        )?;
        let full = self.req.tables.is_empty();
        let tables = chosen(self.db, self.info, &self.req.tables)?;
        let existing = existing_tables(&client).await?;

        // Owners missing on the target: restore without ownership rather than fail.
        let roles: HashSet<String> = client
            .query("SELECT rolname::text FROM pg_roles", &[])
            .await
            .map_err(|e| query_error("listing the target's roles", e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let missing: Vec<&String> = self
            .db
            .owners
            .iter()
            .filter(|o| !roles.contains(*o))
            .collect();
        let no_owner = !missing.is_empty();
        if no_owner && !self.req.data_only {
            self.report.warnings.push(format!(
                "{}roles {} do not exist on the target: objects are owned by the restoring user and grants are skipped",
                self.label,
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }

        let stage = Stage::new()?;
        let archive_bytes = self.src.read_all(&self.db.schema_stream).await?;
        let archive = stage.write("schema.pgdump", &archive_bytes)?;
        let list = if full {
            None
        } else {
            Some(
                self.table_list(&client, &pg_restore, &archive, &stage, &tables, &existing)
                    .await?,
            )
        };

        // 1. Schema: everything that comes before the data.
        if !self.req.data_only {
            if self.req.clean {
                self.clean(&client, &tables, &existing, full)
                    .await
                    .map_err(|e| {
                        e.context(format!("{created_note}was left unchanged: --clean failed"))
                            .untouched()
                    })?;
            }
            let mut cmd = pg_restore.command(Some(self.conn));
            cmd.args([
                "--section=pre-data",
                "--single-transaction",
                "--exit-on-error",
            ]);
            if self.req.clean && full {
                cmd.args(["--clean", "--if-exists"]);
            }
            self.common_args(&mut cmd, no_owner, list.as_deref(), &archive);
            let dropped = if self.req.clean {
                " (the dropped tables stay dropped)"
            } else {
                ""
            };
            run_tool(&pg_restore, cmd, "pg_restore --section=pre-data")
                .await
                .map_err(|e| {
                    e.context(format!(
                        "restoring the schema of {name} failed; {created_note}holds no restored objects{dropped}"
                    ))
                })?;
        } else if self.req.clean {
            let names: Vec<String> = tables
                .iter()
                .filter(|t| existing.contains(&(t.schema.clone(), t.name.clone())))
                .map(|t| t.sql_name())
                .collect();
            if full {
                self.unlink_large_objects(&client).await.map_err(|e| {
                    e.context(format!("--clean of {name} failed (nothing was changed)"))
                        .untouched()
                })?;
            }
            if !names.is_empty() {
                client
                    .batch_execute(&format!("TRUNCATE {}", names.join(", ")))
                    .await
                    .map_err(|e| {
                        query_error(
                            format!("--clean: emptying the tables of {name} (nothing was changed)"),
                            e,
                        )
                        .untouched()
                    })?;
            }
        }

        let schema_state = if self.req.data_only {
            format!("{created_note}kept its schema")
        } else {
            format!("{created_note}has its tables (without indexes, constraints and triggers)")
        };
        // 2. Data. `copied`: the rows each COPY inserted, by table oid.
        let mut copied = HashMap::new();
        if !self.req.schema_only {
            copied = self.load_data(&tables).await.map_err(|(e, loaded)| {
                e.context(format!(
                    "{schema_state}; tables loaded before the failure: {}",
                    if loaded.is_empty() {
                        "none".to_string()
                    } else {
                        loaded.join(", ")
                    }
                ))
            })?;
            self.sequences(&client, &tables, full).await.map_err(|e| {
                e.context(format!(
                    "{schema_state} and its data; setting sequences failed"
                ))
            })?;
            if full {
                self.large_objects(&client, no_owner).await.map_err(|e| {
                    e.context(format!(
                        "{schema_state} and its data; restoring large objects failed"
                    ))
                })?;
            }
        }

        // 3. Indexes, constraints, triggers.
        if !self.req.data_only {
            let mut cmd = pg_restore.command(Some(self.conn));
            cmd.args(["--section=post-data", "--exit-on-error"]);
            // Index builds in parallel (pg_restore -j reads the staged archive file), or in
            // one transaction when there is one job.
            let jobs = self.req.jobs.max(1);
            let created = if jobs > 1 {
                cmd.arg(format!("--jobs={jobs}"));
                "some may have been created"
            } else {
                cmd.arg("--single-transaction");
                "none were created"
            };
            self.common_args(&mut cmd, no_owner, list.as_deref(), &archive);
            run_tool(&pg_restore, cmd, "pg_restore --section=post-data")
                .await
                .map_err(|e| {
                    e.context(format!(
                        "{schema_state} and its data; creating indexes, constraints and triggers failed ({created})"
                    ))
                })?;
        }
        if full && !self.req.schema_only {
            self.refresh_matviews(&client).await;
        }

        // 4. Row counts.
        for t in &tables {
            self.report
                .restored
                .push(format!("{}{}", self.label, t.display()));
            if self.req.schema_only {
                continue;
            }
            // A table this restore created and loaded holds exactly the rows its COPY
            // inserted (the server's own count, no second scan of the data); a data-only
            // restore into existing tables counts them.
            let n: i64 = match copied.get(&t.oid) {
                Some(&rows) if !self.req.data_only => rows as i64,
                _ => {
                    let only = if t.kind == "table" { "ONLY " } else { "" };
                    client
                        .query_one(&format!("SELECT count(*) FROM {only}{}", t.sql_name()), &[])
                        .await
                        .map_err(|e| {
                            query_error(format!("counting the rows of {}", t.display()), e)
                        })?
                        .get(0)
                }
            };
            self.report.counts.push(CountCheck {
                object: format!("{}{}", self.label, t.display()),
                expected: t.rows,
                actual: n.max(0) as u64,
            });
        }
        if full && !self.req.schema_only && !self.db.large_objects.is_empty() {
            let oids: Vec<u32> = self.db.large_objects.iter().map(|l| l.oid).collect();
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_largeobject_metadata WHERE oid = ANY($1)",
                    &[&oids],
                )
                .await
                .map_err(|e| query_error("counting large objects", e))?
                .get(0);
            self.report.counts.push(CountCheck {
                object: format!("{}large objects", self.label),
                expected: oids.len() as u64,
                actual: n.max(0) as u64,
            });
        }
        Ok(())
    }

    fn common_args(
        &self,
        cmd: &mut std::process::Command,
        no_owner: bool,
        list: Option<&std::path::Path>,
        archive: &std::path::Path,
    ) {
        if no_owner {
            cmd.args(["--no-owner", "--no-privileges"]);
        }
        if let Some(l) = list {
            cmd.arg("-L").arg(l);
        }
        cmd.arg("-d").arg(self.conn.tool_dbname()).arg(archive);
    }

    /// Creates the target database when it does not exist; returns whether it did.
    async fn ensure_database(&self) -> Result<bool> {
        let maint = connect_maintenance(self.conn).await?;
        let name = &self.conn.database;
        let exists = maint
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[name])
            .await
            .map_err(|e| query_error("looking for the target database", e))?
            .is_some();
        if exists {
            return Ok(false);
        }
        let owner_known = !self.db.owner.is_empty()
            && maint
                .query_opt(
                    "SELECT 1 FROM pg_roles WHERE rolname = $1",
                    &[&self.db.owner],
                )
                .await
                .map_err(|e| query_error("looking for the database's owner", e))?
                .is_some();
        let owner = if owner_known {
            format!(" OWNER {}", ident(&self.db.owner))
        } else {
            String::new()
        };
        let base = format!("CREATE DATABASE {}{owner} TEMPLATE template0", ident(name));
        let attempts = [
            format!(
                "{base} ENCODING {} LC_COLLATE {} LC_CTYPE {}",
                literal(&self.db.encoding),
                literal(&self.db.collate),
                literal(&self.db.ctype)
            ),
            format!("{base} ENCODING {}", literal(&self.db.encoding)),
            base.clone(),
        ];
        let mut last = None;
        for sql in &attempts {
            match maint.batch_execute(sql).await {
                Ok(()) => return Ok(true),
                Err(e) => last = Some(e),
            }
        }
        Err(query_error(
            format!("creating database {name} on {}", self.conn.server()),
            last.expect("tried"),
        ))
    }

    /// The `-L` list for a per-table restore.
    async fn table_list(
        &mut self,
        client: &Client,
        pg_restore: &Tool,
        archive: &std::path::Path,
        stage: &Stage,
        tables: &[&PgTable],
        existing: &HashSet<(String, String)>,
    ) -> Result<std::path::PathBuf> {
        let entries = toc::list(pg_restore, archive)?;
        let by_oid: HashMap<u32, &PgTable> = self.db.tables.iter().map(|t| (t.oid, t)).collect();
        let exists = |oid: u32| {
            by_oid
                .get(&oid)
                .is_some_and(|t| existing.contains(&(t.schema.clone(), t.name.clone())))
        };
        let present: HashSet<&str> = existing.iter().map(|(s, _)| s.as_str()).collect();
        let (mut picker, skipped_fk) = pick(self.db, tables, &exists, &|s| present.contains(s));
        for e in &entries {
            if let Some((kind, schema, tag)) = e.support() {
                if !support_exists(client, kind, schema, tag).await? {
                    picker.add_entry(e);
                }
            }
        }
        if !skipped_fk.is_empty() {
            self.report.warnings.push(format!(
                "{}foreign keys to tables that are neither restored nor on the target were skipped: {}",
                self.label,
                skipped_fk.join(", ")
            ));
        }
        stage.write("restore.list", picker.list(&entries).as_bytes())
    }

    /// `--clean`: drops the tables the restore recreates (and, for a full restore, everything
    /// depending on them and the snapshot's large objects); `pg_restore --clean` drops the rest.
    /// One transaction: when it fails, nothing was dropped.
    async fn clean(
        &self,
        client: &Client,
        tables: &[&PgTable],
        existing: &HashSet<(String, String)>,
        full: bool,
    ) -> Result<()> {
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| query_error("starting the --clean transaction", e))?;
        match self.drop_replaced(client, tables, existing, full).await {
            Ok(()) => client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| query_error("committing --clean", e)),
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }

    /// The statements of [`DbRestore::clean`], inside its transaction.
    async fn drop_replaced(
        &self,
        client: &Client,
        tables: &[&PgTable],
        existing: &HashSet<(String, String)>,
        full: bool,
    ) -> Result<()> {
        let present: Vec<String> = tables
            .iter()
            .filter(|t| existing.contains(&(t.schema.clone(), t.name.clone())))
            .map(|t| t.sql_name())
            .collect();
        if !present.is_empty() {
            let cascade = if full { " CASCADE" } else { "" };
            client
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {}{cascade}",
                    present.join(", ")
                ))
                .await
                .map_err(|e| query_error("dropping the tables to replace", e))?;
        }
        if full {
            self.unlink_large_objects(client).await?;
        }
        Ok(())
    }

    /// Removes the target's large objects that the snapshot holds too.
    async fn unlink_large_objects(&self, client: &Client) -> Result<()> {
        if self.db.large_objects.is_empty() {
            return Ok(());
        }
        let oids: Vec<u32> = self.db.large_objects.iter().map(|l| l.oid).collect();
        client
            .query(
                "SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid = ANY($1)",
                &[&oids],
            )
            .await
            .map_err(|e| query_error("removing large objects to replace", e))?;
        Ok(())
    }

    async fn load_data(
        &self,
        tables: &[&PgTable],
    ) -> std::result::Result<HashMap<u32, u64>, (Error, Vec<String>)> {
        let mut order: Vec<&PgTable> = tables
            .iter()
            .copied()
            .filter(|t| t.stream.is_some())
            .collect();
        order.sort_by_key(|t| std::cmp::Reverse(t.rows));
        let jobs = self.req.jobs.max(1).min(order.len().max(1));
        let queue = Mutex::new(VecDeque::from(order));
        let loaded = Mutex::new(Vec::new());
        let copied = Mutex::new(HashMap::new());
        let warned = Mutex::new(false);
        let worker = || async {
            let client = self.conn.connect().await?;
            if self.req.data_only {
                // Triggers and foreign keys of an existing schema would fire on every row;
                // only superusers may turn them off.
                if client
                    .batch_execute("SET session_replication_role = replica")
                    .await
                    .is_err()
                {
                    let mut w = warned.lock().unwrap();
                    if !*w {
                        *w = true;
                        tracing::warn!(
                            "not a superuser: triggers fire during the data-only restore"
                        );
                    }
                }
            }
            loop {
                let next = queue.lock().unwrap().pop_front();
                let Some(t) = next else { break };
                let rows = copy_in(&client, self.src, t)
                    .await
                    .map_err(|e| e.context(format!("table {} data failed", t.display())))?;
                loaded.lock().unwrap().push(t.display());
                copied.lock().unwrap().insert(t.oid, rows);
            }
            Ok::<(), Error>(())
        };
        let r = futures::future::try_join_all((0..jobs).map(|_| worker())).await;
        let loaded = loaded.into_inner().unwrap();
        r.map(|_| copied.into_inner().unwrap())
            .map_err(|e| (e, loaded))
    }

    async fn sequences(&self, client: &Client, tables: &[&PgTable], full: bool) -> Result<()> {
        let text = String::from_utf8(self.src.read_all(&self.db.sequences_stream).await?)
            .map_err(|_| Error::corrupt("the sequences stream is not UTF-8"))?;
        let wanted: Vec<String> = if full {
            Vec::new()
        } else {
            let oids: HashSet<u32> = tables.iter().map(|t| t.oid).collect();
            self.db
                .sequences
                .iter()
                .filter(|s| s.owned_by.is_some_and(|o| oids.contains(&o)))
                .map(|s| {
                    format!(
                        "SELECT pg_catalog.setval({}, ",
                        literal(&qualified(&s.schema, &s.name))
                    )
                })
                .collect()
        };
        let mut sql = String::new();
        for line in text.lines() {
            if full || wanted.iter().any(|w| line.starts_with(w.as_str())) {
                sql.push_str(line);
                sql.push('\n');
            }
        }
        if !sql.is_empty() {
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| query_error("setting sequence values", e))?;
        }
        Ok(())
    }

    async fn large_objects(&self, client: &Client, no_owner: bool) -> Result<()> {
        for lo in &self.db.large_objects {
            let what = format!("large object {}", lo.oid);
            client
                .query_one("SELECT lo_create($1)", &[&lo.oid])
                .await
                .map_err(|e| query_error(format!("creating {what}"), e))?;
            let mut off: i64 = 0;
            let mut chunks = Box::pin(self.src.chunks(&lo.stream)?);
            while let Some(c) = chunks.next().await {
                let c = c?;
                let data: &[u8] = &c;
                client
                    .execute("SELECT lo_put($1, $2, $3)", &[&lo.oid, &off, &data])
                    .await
                    .map_err(|e| query_error(format!("writing {what}"), e))?;
                off += c.len() as i64;
            }
            if !no_owner {
                client
                    .batch_execute(&format!(
                        "ALTER LARGE OBJECT {} OWNER TO {}",
                        lo.oid,
                        ident(&lo.owner)
                    ))
                    .await
                    .map_err(|e| query_error(format!("setting the owner of {what}"), e))?;
            }
        }
        Ok(())
    }

    /// Refreshes the materialized views that held data, retrying those that depend on others.
    async fn refresh_matviews(&mut self, client: &Client) {
        let mut todo: Vec<String> = self
            .db
            .matviews
            .iter()
            .filter(|v| v.populated)
            .map(|v| qualified(&v.schema, &v.name))
            .collect();
        while !todo.is_empty() {
            let mut failed = Vec::new();
            let mut last = String::new();
            for v in &todo {
                if let Err(e) = client
                    .batch_execute(&format!("REFRESH MATERIALIZED VIEW {v}"))
                    .await
                {
                    last = format!("{:#}", query_error(format!("refreshing {v}"), e));
                    failed.push(v.clone());
                }
            }
            if failed.len() == todo.len() {
                self.report.warnings.push(format!("{}{last}", self.label));
                return;
            }
            todo = failed;
        }
    }
}

/// COPY FROM STDIN of one table's stream; returns the rows the server inserted.
async fn copy_in(client: &Client, src: &StreamSource, t: &PgTable) -> Result<u64> {
    let path = t.stream.as_deref().expect("tables with data have streams");
    let sql = format!("COPY {}{} FROM STDIN", t.sql_name(), t.column_list());
    let sink = client
        .copy_in::<_, Bytes>(sql.as_str())
        .await
        .map_err(|e| query_error("COPY FROM", e))?;
    futures::pin_mut!(sink);
    let mut chunks = Box::pin(src.chunks(path)?);
    while let Some(c) = chunks.next().await {
        let c = c?; // a checksum mismatch drops the sink: the COPY is aborted
        sink.send(c)
            .await
            .map_err(|e| query_error("COPY FROM", e))?;
    }
    sink.finish().await.map_err(|e| query_error("COPY FROM", e))
}

/// Picks the archive entries of `tables` (with their indexes, constraints, triggers, owned
/// sequences, and the parents of partitions when `exists` says they are missing). Foreign keys
/// to tables neither chosen nor existing are left out and returned, as are schemas that
/// `schema_exists`.
pub fn pick(
    db: &PgDatabase,
    tables: &[&PgTable],
    exists: &dyn Fn(u32) -> bool,
    schema_exists: &dyn Fn(&str) -> bool,
) -> (Picker, Vec<String>) {
    let chosen: HashSet<u32> = tables.iter().map(|t| t.oid).collect();
    let by_oid: HashMap<u32, &PgTable> = db.tables.iter().map(|t| (t.oid, t)).collect();
    let keep = |r: u32| chosen.contains(&r) || exists(r);
    let mut picker = Picker::default();
    let mut skipped_fk = Vec::new();
    for t in tables {
        for o in t.objects.iter().filter(|o| o.kind == "fk") {
            if !o.references.is_some_and(keep) {
                skipped_fk.push(format!("{} on {}", o.name, t.display()));
            }
        }
        picker.add_table(db, t, true, &keep);
        // A partition needs its parents; create the missing ones (without their data).
        let mut cur = t.parent;
        while let Some(p) = cur {
            let Some(pt) = by_oid.get(&p) else { break };
            if !chosen.contains(&p) && !exists(p) {
                picker.add_table(db, pt, true, &keep);
            }
            cur = pt.parent;
        }
    }
    let schemas: HashSet<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    for s in &db.schemas {
        if schemas.contains(s.name.as_str()) && !schema_exists(&s.name) && s.name != "public" {
            picker.add_schema(s.oid);
        }
    }
    (picker, skipped_fk)
}

/// Whether the target already has a supporting object of the schema archive.
async fn support_exists(client: &Client, kind: &str, schema: &str, tag: &str) -> Result<bool> {
    let (sql, arg) = match kind {
        "SCHEMA" => (
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            tag.to_string(),
        ),
        "EXTENSION" => (
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1)",
            tag.to_string(),
        ),
        "FUNCTION" | "PROCEDURE" | "AGGREGATE" => {
            let (name, args) = tag.split_once('(').unwrap_or((tag, ")"));
            (
                "SELECT to_regprocedure($1) IS NOT NULL",
                format!("{}.{}({args}", ident(schema), ident(name)),
            )
        }
        "COLLATION" => (
            "SELECT to_regcollation($1) IS NOT NULL",
            qualified(schema, tag),
        ),
        _ => ("SELECT to_regtype($1) IS NOT NULL", qualified(schema, tag)),
    };
    match client.query_one(sql, &[&arg]).await {
        Ok(row) => Ok(row.get(0)),
        // A name the target cannot even parse does not exist there.
        Err(e) if e.as_db_error().is_some() => Ok(false),
        Err(e) => Err(query_error(
            format!("looking for {kind} {schema}.{tag} on the target"),
            e,
        )),
    }
}

/// Runs a tool to completion on a blocking thread.
async fn run_tool(tool: &Tool, cmd: std::process::Command, what: &str) -> Result<()> {
    let (tool, what) = (tool.clone(), what.to_string());
    tokio::task::spawn_blocking(move || tools::run_to_end(&tool, cmd, &what))
        .await
        .map_err(|e| source_error(format!("the restore tool panicked: {e}")))?
}
