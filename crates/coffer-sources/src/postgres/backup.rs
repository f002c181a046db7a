//! The PostgreSQL backup: one exported snapshot per database, shared by a control connection
//! (locks, catalog, sequences, large objects), `pg_dump --schema-only --snapshot` (the schema
//! archive) and `jobs` workers that COPY each table into its own stream, counting its rows.
//!
//! Streams of database `D` (`component` escapes names): `db/D/schema.pgdump`,
//! `db/D/tables/SCHEMA/TABLE` (COPY text format), `db/D/sequences.sql`,
//! `db/D/large_objects/OID`; for a whole server also `globals.sql` (`pg_dumpall --globals-only`).

use super::catalog::{self, PgDatabase, PgDetails, PgTable};
use super::connect::{literal, qualified, query_error, PgConn};
use super::tools::{self, major_of_num, Tool};
use crate::database::{
    component, source_error, BackupContext, DatabaseInfo, DbManifest, StreamSink, TableInfo,
};
use bytes::{Bytes, BytesMut};
use coffer_core::{Error, ErrorKind, Result};
use futures::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// Bytes gathered from COPY before they go to the stream.
const COPY_BUF: usize = 256 * 1024;
/// Bytes read from a large object per `lo_get`.
const LO_PIECE: i32 = 1 << 20;
/// How long `pg_dump` waits for a table lock before failing.
const LOCK_WAIT: &str = "--lock-wait-timeout=60000";

/// Path prefix of a database's streams.
pub fn db_prefix(name: &str) -> String {
    format!("db/{}", component(name))
}

/// One `setval` line of the sequences stream.
pub fn setval_line(schema: &str, name: &str, value: i64, is_called: bool) -> String {
    format!(
        "SELECT pg_catalog.setval({}, {value}, {is_called});\n",
        literal(&qualified(schema, name))
    )
}

/// Backs up the database (or whole server) `ctx.url` names.
pub async fn backup(ctx: &BackupContext) -> Result<DbManifest> {
    let conn = PgConn::new(&ctx.url)?;
    let whole = ctx.all_databases || ctx.url.database.is_none();
    let first = conn.connect().await?;
    let row = first
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int4",
            &[],
        )
        .await
        .map_err(|e| {
            query_error(
                format!("reading the server version of {}", conn.server()),
                e,
            )
        })?;
    let version: String = row.get(0);
    let num = row.get::<_, i32>(1) as u32;
    let major = major_of_num(num);
    let pg_dump = tools::find("pg_dump", major, major)?;
    let mut details = PgDetails {
        format: 1,
        pg_dump_version: pg_dump.version.clone(),
        server_version_num: num,
        ..Default::default()
    };
    let mut manifest = DbManifest {
        server_version: format!("PostgreSQL {version}"),
        whole_server: whole,
        ..Default::default()
    };
    let names: Vec<String> = if whole {
        first
            .query(
                "SELECT datname::text FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
                &[],
            )
            .await
            .map_err(|e| query_error("listing the databases", e))?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        vec![conn.database.clone()]
    };
    drop(first);
    if whole {
        let dumpall = tools::find("pg_dumpall", major, major)?;
        let path = "globals.sql".to_string();
        let (sink, c, p) = (ctx.sink.clone(), conn.clone(), path.clone());
        tokio::task::spawn_blocking(move || dump_globals(&sink, &dumpall, &c, &p))
            .await
            .map_err(|e| source_error(format!("pg_dumpall panicked: {e}")))??;
        details.globals = Some(path);
    }
    for name in names {
        let db_conn = conn.with_database(&name);
        let (info, db) = backup_database(ctx, &db_conn, &pg_dump)
            .await
            .map_err(|e| e.context(format!("backing up database {name}")))?;
        manifest.databases.push(info);
        details.databases.insert(name, db);
    }
    manifest.details = serde_json::to_value(&details)
        .map_err(|e| Error::new(ErrorKind::Source, format!("encoding the manifest: {e}")))?;
    Ok(manifest)
}

fn dump_globals(sink: &StreamSink, tool: &Tool, conn: &PgConn, path: &str) -> Result<()> {
    let mut cmd = tool.command(Some(conn));
    cmd.args(["--globals-only", "-l"]).arg(&conn.database);
    let mut run = tool.spawn(cmd, "pg_dumpall --globals-only (roles and grants)", false)?;
    let stdout = run.child.stdout.take().expect("piped");
    let stored = sink.add_reader(path, stdout);
    run.wait()?;
    stored.map(|_| ())
}

fn dump_schema(
    sink: &StreamSink,
    tool: &Tool,
    conn: &PgConn,
    snapshot: &str,
    path: &str,
) -> Result<()> {
    let mut cmd = tool.command(Some(conn));
    cmd.args([
        "--schema-only",
        "--format=custom",
        "-Z0",
        LOCK_WAIT,
        "--snapshot",
    ])
    .arg(snapshot);
    let what = format!("pg_dump of the schema of database {}", conn.database);
    let mut run = tool.spawn(cmd, &what, false)?;
    let stdout = run.child.stdout.take().expect("piped");
    let stored = sink.add_reader(path, stdout);
    run.wait()?;
    stored.map(|_| ())
}

async fn backup_database(
    ctx: &BackupContext,
    conn: &PgConn,
    pg_dump: &Tool,
) -> Result<(DatabaseInfo, PgDatabase)> {
    let prefix = db_prefix(&conn.database);
    let ctl = conn.connect().await?;
    ctl.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| query_error("starting the backup transaction", e))?;
    let mut db = catalog::load(&ctl).await?;
    lock_tables(&ctl, &db.tables).await?;
    let snapshot: String = ctl
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(|e| query_error("exporting the snapshot", e))?
        .get(0);
    let size: i64 = ctl
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .map_err(|e| query_error("reading the database size", e))?
        .get(0);
    let schema_version = catalog::schema_version(&ctl, &db).await;
    for t in db.tables.iter_mut().filter(|t| t.kind == "table") {
        t.stream = Some(format!(
            "{prefix}/tables/{}/{}",
            component(&t.schema),
            component(&t.name)
        ));
    }
    db.schema_stream = format!("{prefix}/schema.pgdump");
    db.sequences_stream = format!("{prefix}/sequences.sql");
    // Every table is locked and the snapshot exported: a DROP TABLE now must wait.
    crate::database::pause::at("postgres-tables-locked").await;

    let schema_task = {
        let (sink, tool, c) = (ctx.sink.clone(), pg_dump.clone(), conn.clone());
        let (snap, path) = (snapshot.clone(), db.schema_stream.clone());
        tokio::task::spawn_blocking(move || dump_schema(&sink, &tool, &c, &snap, &path))
    };

    let mut order: Vec<usize> = (0..db.tables.len())
        .filter(|&i| db.tables[i].kind == "table")
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse(db.tables[i].pages));
    let jobs = ctx.jobs.max(1).min(order.len().max(1));
    let queue = Arc::new(Mutex::new(VecDeque::from(order)));
    let tables = Arc::new(db.tables.clone());
    let workers = (0..jobs).map(|_| {
        copy_worker(
            conn.clone(),
            snapshot.clone(),
            queue.clone(),
            tables.clone(),
            ctx.sink.clone(),
        )
    });
    let control = async {
        dump_sequences(&ctl, &db, &ctx.sink).await?;
        dump_large_objects(&ctl, &db, &ctx.sink, &prefix).await
    };
    let (counts, los) = futures::try_join!(futures::future::try_join_all(workers), control)?;
    schema_task
        .await
        .map_err(|e| source_error(format!("pg_dump panicked: {e}")))??;
    ctl.batch_execute("COMMIT")
        .await
        .map_err(|e| query_error("ending the backup transaction", e))?;
    db.large_objects = los;

    let rows: HashMap<usize, u64> = counts.into_iter().flatten().collect();
    for (i, r) in &rows {
        db.tables[*i].rows = *r;
    }
    let leaves_rows = partition_rows(&db.tables);
    for t in db.tables.iter_mut().filter(|t| t.kind == "partitioned") {
        t.rows = leaves_rows.get(&t.oid).copied().unwrap_or(0);
    }
    let info = DatabaseInfo {
        name: conn.database.clone(),
        size_bytes: size.max(0) as u64,
        tables: db
            .tables
            .iter()
            .map(|t| TableInfo {
                schema: Some(t.schema.clone()),
                name: t.name.clone(),
                rows: t.rows,
                stream: t.stream.clone(),
            })
            .collect(),
        schema_version,
        ..Default::default()
    };
    Ok((info, db))
}

/// Rows of each partitioned table: the sum over its leaf partitions, at any depth.
fn partition_rows(tables: &[PgTable]) -> HashMap<u32, u64> {
    let parent: HashMap<u32, u32> = tables
        .iter()
        .filter_map(|t| t.parent.map(|p| (t.oid, p)))
        .collect();
    let mut sums: HashMap<u32, u64> = HashMap::new();
    for t in tables.iter().filter(|t| t.kind == "table") {
        let mut cur = t.oid;
        while let Some(&p) = parent.get(&cur) {
            *sums.entry(p).or_default() += t.rows;
            cur = p;
        }
    }
    sums
}

async fn lock_tables(ctl: &Client, tables: &[PgTable]) -> Result<()> {
    for chunk in tables.chunks(500) {
        let names: Vec<String> = chunk.iter().map(PgTable::sql_name).collect();
        let sql = format!("LOCK TABLE {} IN ACCESS SHARE MODE", names.join(", "));
        if let Err(e) = ctl.batch_execute(&sql).await {
            if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
                let msg = e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_default();
                return Err(source_error(format!(
                    "a table was dropped while the backup started ({msg}); run the backup again"
                )));
            }
            return Err(query_error(
                "locking the tables (LOCK TABLE ... IN ACCESS SHARE MODE)",
                e,
            ));
        }
    }
    Ok(())
}

async fn copy_worker(
    conn: PgConn,
    snapshot: String,
    queue: Arc<Mutex<VecDeque<usize>>>,
    tables: Arc<Vec<PgTable>>,
    sink: Arc<StreamSink>,
) -> Result<Vec<(usize, u64)>> {
    let client = conn.connect().await?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            literal(&snapshot)
        ))
        .await
        .map_err(|e| query_error("joining the backup's snapshot", e))?;
    let mut done = Vec::new();
    loop {
        let next = queue.lock().unwrap().pop_front();
        let Some(i) = next else { break };
        if sink.session().is_cancelled() {
            return Err(Error::new(
                ErrorKind::Interrupted,
                "the backup was interrupted",
            ));
        }
        let t = &tables[i];
        let rows = copy_table(&client, t, &sink)
            .await
            .map_err(|e| e.context(format!("table {}", t.display())))?;
        done.push((i, rows));
    }
    let _ = client.batch_execute("COMMIT").await;
    Ok(done)
}

async fn copy_table(client: &Client, t: &PgTable, sink: &Arc<StreamSink>) -> Result<u64> {
    // The control connection holds ACCESS SHARE on every table; if another session now waits
    // for an exclusive lock, a plain COPY would queue behind it forever.
    if let Err(e) = client
        .batch_execute(&format!(
            "LOCK TABLE {} IN ACCESS SHARE MODE NOWAIT",
            t.sql_name()
        ))
        .await
    {
        if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
            return Err(source_error(
                "another session is waiting for an exclusive lock on it (ALTER, DROP, TRUNCATE?); \
                 the backup stopped rather than deadlock: run it again when that is done",
            ));
        }
        return Err(query_error("locking it", e));
    }
    let sql = format!("COPY {}{} TO STDOUT", t.sql_name(), t.column_list());
    let copy = client
        .copy_out(sql.as_str())
        .await
        .map_err(|e| query_error("COPY TO", e))?;
    let path = t.stream.as_deref().expect("tables have streams");
    let mut out = sink.add_async(path)?;
    futures::pin_mut!(copy);
    let mut buf = BytesMut::with_capacity(COPY_BUF);
    let mut rows = 0u64;
    while let Some(chunk) = copy.next().await {
        let chunk = chunk.map_err(|e| query_error("COPY TO", e))?;
        // Text COPY ends every row with one newline; newlines in values are escaped.
        rows += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        buf.extend_from_slice(&chunk);
        if buf.len() >= COPY_BUF {
            out.write(buf.split().freeze()).await?;
        }
    }
    if !buf.is_empty() {
        out.write(buf.split().freeze()).await?;
    }
    out.finish().await?;
    Ok(rows)
}

async fn dump_sequences(ctl: &Client, db: &PgDatabase, sink: &Arc<StreamSink>) -> Result<()> {
    let mut sql = String::new();
    for s in &db.sequences {
        let name = qualified(&s.schema, &s.name);
        let row = ctl
            .query_one(&format!("SELECT last_value, is_called FROM {name}"), &[])
            .await
            .map_err(|e| query_error(format!("reading sequence {}.{}", s.schema, s.name), e))?;
        sql.push_str(&setval_line(&s.schema, &s.name, row.get(0), row.get(1)));
    }
    let mut out = sink.add_async(&db.sequences_stream)?;
    out.write(Bytes::from(sql)).await?;
    out.finish().await?;
    Ok(())
}

async fn dump_large_objects(
    ctl: &Client,
    db: &PgDatabase,
    sink: &Arc<StreamSink>,
    prefix: &str,
) -> Result<Vec<catalog::PgLargeObject>> {
    let mut out_list = Vec::with_capacity(db.large_objects.len());
    for lo in &db.large_objects {
        let mut lo = lo.clone();
        lo.stream = format!("{prefix}/large_objects/{}", lo.oid);
        let mut out = sink.add_async(&lo.stream)?;
        let mut off: i64 = 0;
        loop {
            let piece: Vec<u8> = ctl
                .query_one("SELECT lo_get($1, $2, $3)", &[&lo.oid, &off, &LO_PIECE])
                .await
                .map_err(|e| query_error(format!("reading large object {}", lo.oid), e))?
                .get(0);
            let n = piece.len();
            off += n as i64;
            out.write(Bytes::from(piece)).await?;
            if n < LO_PIECE as usize {
                break;
            }
        }
        out.finish().await?;
        lo.size = off as u64;
        out_list.push(lo);
    }
    Ok(out_list)
}
