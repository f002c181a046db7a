//! The MySQL/MariaDB backup: the schema of each database from `mariadb-dump --no-data`, then
//! every table's rows read inside one consistent snapshot (`START TRANSACTION WITH CONSISTENT
//! SNAPSHOT`, REPEATABLE READ; with `--jobs N`, N connections whose snapshots are opened under
//! `FLUSH TABLES WITH READ LOCK`, as mydumper does) and written as INSERT statements, one
//! stream per table, rows counted exactly while they stream.
//!
//! The schema is dumped just before the data snapshot opens. A table created or dropped in
//! between fails the backup with a message saying so; a column change in that instant is not
//! detected (as with `mysqldump --single-transaction`, DDL during a backup is not isolated).
//! Tables of non-transactional engines (MyISAM, Aria) are read like the others but are not
//! isolated by the snapshot; the manifest's details list them.

use super::conn::{
    check_tool_not_older, dump_tool, query_error, run_all, server_code, tool_version, Server,
};
use super::sql::{ident, lit, push_value, render_for, row_hash, Sections, DATA_HEADER};
use super::{layout, users};
use crate::database::capture::{read_capped, read_messages, MAX_OUTPUT};
use crate::database::{
    source_error, BackupContext, DatabaseInfo, DbManifest, StreamSink, TableInfo,
};
use bytes::Bytes;
use coffer_core::{Error, ErrorKind, Result};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// Databases that belong to the server, never backed up as user data.
pub const SYSTEM_DATABASES: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

/// An INSERT statement ends after a row whose hash says so once it holds this many bytes...
const MIN_STATEMENT: usize = 256 * 1024;
/// ...and always once it holds this many.
const MAX_STATEMENT: usize = 4 * 1024 * 1024;
/// Bytes gathered before they are handed to the stream.
const FLUSH_AT: usize = 256 * 1024;

/// Tables the application keeps its schema version in, and how to read it.
const SCHEMA_VERSION_TABLES: &[(&str, &str)] = &[
    ("schema_migrations", "SELECT MAX(`version`) FROM `schema_migrations`"),
    ("alembic_version", "SELECT MAX(`version_num`) FROM `alembic_version`"),
    (
        "flyway_schema_history",
        "SELECT `version` FROM `flyway_schema_history` WHERE `success` AND `version` IS NOT NULL ORDER BY `installed_rank` DESC LIMIT 1",
    ),
    ("doctrine_migration_versions", "SELECT MAX(`version`) FROM `doctrine_migration_versions`"),
    ("migrations", "SELECT MAX(`migration`) FROM `migrations`"),
];

/// One table to dump.
struct TableJob {
    db_index: usize,
    db: String,
    table: String,
    columns: Vec<String>,
    path: String,
    size: u64,
}

/// Backs up the database `ctx.url` names (or every database, with users and grants).
pub async fn backup(ctx: &BackupContext) -> Result<DbManifest> {
    let server = Server::new(&ctx.url);
    let whole = ctx.all_databases || ctx.url.database.is_none();
    let first_db = if whole {
        None
    } else {
        ctx.url.database.as_deref()
    };
    let mut control = server.connect(first_db).await?;
    let version: String = control
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| query_error("reading the server version", e))?
        .unwrap_or_default();
    let databases: Vec<String> = if whole {
        let all: Vec<String> = control
            .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
            .await
            .map_err(|e| query_error("listing the databases", e))?;
        all.into_iter()
            .filter(|d| !SYSTEM_DATABASES.contains(&d.as_str()))
            .collect()
    } else {
        vec![ctx.url.database.clone().unwrap_or_default()]
    };
    // Events per database, read now: no connection is held open, idle, while the dump tool
    // runs (a proxy or load balancer may cut an idle connection; a backup must not fail on it).
    let event_counts: Vec<(String, u64)> = control
        .query("SELECT EVENT_SCHEMA, COUNT(*) FROM information_schema.EVENTS GROUP BY EVENT_SCHEMA")
        .await
        .map_err(|e| query_error("counting events", e))?;
    let _ = control.disconnect().await;

    // The schema of each database, before the data snapshot.
    let tool = dump_tool()?;
    check_tool_not_older(&tool, &tool_version(&tool), &version)?;
    let mut schemas = Vec::with_capacity(databases.len());
    for db in &databases {
        let text = run_dump(
            &server,
            &tool,
            &["--no-data", "--skip-triggers", "--routines"],
            db,
        )
        .await?;
        let path = layout::schema(db);
        add_bytes(&ctx.sink, &path, text.clone().into_bytes()).await?;
        let events = event_counts
            .iter()
            .find(|(schema, _)| schema == db)
            .map_or(0, |(_, n)| *n);
        if events > 0 {
            let ev = run_dump(
                &server,
                &tool,
                &[
                    "--no-data",
                    "--no-create-info",
                    "--skip-triggers",
                    "--events",
                    "--skip-routines",
                ],
                db,
            )
            .await?;
            add_bytes(&ctx.sink, &layout::events(db), ev.into_bytes()).await?;
        }
        schemas.push((text, events));
    }

    // Tests drop a table here: between the schema dump and the data snapshot.
    crate::database::pause::at("mysql-schema-dumped").await;

    // The snapshot every table's data is read in (on a new control connection: see above).
    let mut control = server.connect(first_db).await?;
    let table_count: u64 = control
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_TYPE IN ('BASE TABLE','SYSTEM VERSIONED') AND TABLE_SCHEMA IN ({})",
            in_list(&databases)
        ))
        .await
        .map_err(|e| query_error("counting tables", e))?
        .unwrap_or(0);
    let want = ctx.jobs.max(1).min(table_count.max(1) as usize);
    let (mut workers, method) = open_snapshots(&server, &mut control, want).await?;

    // What the snapshot holds: tables, columns, triggers, sizes, schema versions.
    let mut infos = Vec::with_capacity(databases.len());
    let mut db_details = serde_json::Map::new();
    let mut jobs = Vec::new();
    for (i, db) in databases.iter().enumerate() {
        let conn = &mut workers[0];
        let (info, details, mut tables) =
            describe_database(conn, &ctx.sink, db, i, &schemas[i].0).await?;
        let mut details = details;
        details.insert("events".into(), json!(schemas[i].1));
        db_details.insert(db.clone(), serde_json::Value::Object(details));
        infos.push(info);
        jobs.append(&mut tables);
    }

    // Users and grants.
    let mut users_detail = serde_json::Value::Null;
    if whole {
        let u = users::read(&mut control).await?;
        add_bytes(&ctx.sink, layout::USERS, u.sql.into_bytes()).await?;
        users_detail = json!({ "accounts": u.accounts, "skipped": u.skipped });
    }

    // Tests drop a table here: listed in the snapshot, its rows not read yet.
    crate::database::pause::at("mysql-tables-listed").await;

    // The data, largest tables first, spread over the workers.
    jobs.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
    let queue = Arc::new(Mutex::new(jobs.into_iter().collect::<VecDeque<_>>()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let tasks = workers.iter_mut().map(|conn| {
        let queue = queue.clone();
        let results = results.clone();
        let sink = ctx.sink.clone();
        async move {
            loop {
                let job = queue.lock().unwrap().pop_front();
                let Some(job) = job else {
                    return Ok::<(), Error>(());
                };
                let rows = dump_table(conn, &sink, &job).await?;
                results.lock().unwrap().push((job, rows));
            }
        }
    });
    futures::future::try_join_all(tasks).await?;
    for conn in workers {
        let _ = conn.disconnect().await;
    }
    let _ = control.disconnect().await;

    let mut done = std::mem::take(&mut *results.lock().unwrap());
    done.sort_by(|a, b| (a.0.db_index, &a.0.table).cmp(&(b.0.db_index, &b.0.table)));
    for (job, rows) in done {
        infos[job.db_index].tables.push(TableInfo {
            schema: None,
            name: job.table,
            rows,
            stream: Some(job.path),
        });
    }
    Ok(DbManifest {
        engine: String::new(),
        server_version: version,
        whole_server: whole,
        databases: infos,
        streams: Vec::new(),
        details: json!({
            "dump_tool": tool_version(&tool),
            "snapshot": method,
            "databases": db_details,
            "users": users_detail,
        }),
    })
}

/// `'a','b'` for an `IN (...)` list (`NULL` when empty).
fn in_list(items: &[String]) -> String {
    if items.is_empty() {
        return "NULL".to_string();
    }
    items.iter().map(|s| lit(s)).collect::<Vec<_>>().join(",")
}

async fn add_bytes(sink: &Arc<StreamSink>, path: &str, data: Vec<u8>) -> Result<()> {
    let sink = sink.clone();
    let path = path.to_string();
    tokio::task::spawn_blocking(move || sink.add_bytes(&path, &data))
        .await
        .map_err(|e| Error::new(ErrorKind::Storage, format!("a stream writer panicked: {e}")))??;
    Ok(())
}

/// Runs `mariadb-dump` for `db` with `args` (no data) and returns its output.
async fn run_dump(server: &Server, tool: &Path, args: &[&str], db: &str) -> Result<String> {
    let creds = server.credentials()?;
    let mut cmd = server.command(tool, &creds);
    cmd.args([
        "--single-transaction",
        "--skip-dump-date",
        "--default-character-set=utf8mb4",
        "--no-tablespaces",
    ]);
    cmd.args(args);
    cmd.arg("--").arg(db);
    let name = tool
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let what = format!("{name} (the schema of database {db:?})");
    let run = {
        let (name, what) = (name.clone(), what.clone());
        move || -> Result<(std::process::ExitStatus, Vec<u8>, String)> {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .map_err(|e| source_error(format!("cannot run {name}: {e}")))?;
            let err = child.stderr.take().expect("piped stderr");
            let messages = std::thread::spawn(move || read_messages(err));
            let out = read_capped(
                child.stdout.take().expect("piped stdout"),
                MAX_OUTPUT,
                &what,
            );
            if out.is_err() {
                let _ = child.kill();
            }
            let status = child.wait();
            drop(creds);
            let messages = messages.join().unwrap_or_default();
            let status = status.map_err(|e| Error::io(format!("{what}: waiting for it"), e))?;
            Ok((status, out?, messages))
        }
    };
    let (status, stdout, stderr) = tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| source_error(format!("{name} panicked: {e}")))??;
    if !status.success() {
        return Err(source_error(format!(
            "{name} failed to dump the schema of database {db:?} ({status}): {}",
            stderr.trim()
        )));
    }
    String::from_utf8(stdout)
        .map_err(|_| source_error(format!("{name} wrote a schema of {db:?} that is not UTF-8")))
}

/// Opens `n` connections inside one consistent snapshot. With more than one, their snapshots
/// start under `FLUSH TABLES WITH READ LOCK` (held for milliseconds), so all see the same
/// point in time; without the RELOAD privilege it falls back to one connection.
async fn open_snapshots(
    server: &Server,
    control: &mut Conn,
    n: usize,
) -> Result<(Vec<Conn>, String)> {
    let single = || async {
        let mut c = server.connect(None).await?;
        start_snapshot(&mut c).await?;
        Ok::<_, Error>(vec![c])
    };
    if n <= 1 {
        return Ok((
            single().await?,
            "one connection, START TRANSACTION WITH CONSISTENT SNAPSHOT".into(),
        ));
    }
    let _ = control.query_drop("SET SESSION lock_wait_timeout=60").await;
    if let Err(e) = control.query_drop("FLUSH TABLES WITH READ LOCK").await {
        tracing::warn!(
            "FLUSH TABLES WITH READ LOCK failed ({}); dumping with one connection",
            super::conn::describe(&e)
        );
        return Ok((
            single().await?,
            "one connection (FLUSH TABLES WITH READ LOCK was refused)".into(),
        ));
    }
    let mut conns = Vec::with_capacity(n);
    let mut failure = None;
    for _ in 0..n {
        match server.connect(None).await {
            Ok(mut c) => match start_snapshot(&mut c).await {
                Ok(()) => conns.push(c),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            },
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let unlocked = control.query_drop("UNLOCK TABLES").await;
    if let Some(e) = failure {
        return Err(e);
    }
    unlocked.map_err(|e| query_error("UNLOCK TABLES", e))?;
    Ok((
        conns,
        format!("{n} connections, snapshots opened under FLUSH TABLES WITH READ LOCK"),
    ))
}

async fn start_snapshot(conn: &mut Conn) -> Result<()> {
    run_all(
        conn,
        "starting the snapshot transaction",
        &[
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ".to_string(),
            "START TRANSACTION WITH CONSISTENT SNAPSHOT".to_string(),
        ],
    )
    .await
}

type DbDescription = (
    DatabaseInfo,
    serde_json::Map<String, serde_json::Value>,
    Vec<TableJob>,
);

/// Lists `db`'s tables and columns, writes its triggers, reads its size and schema version.
async fn describe_database(
    conn: &mut Conn,
    sink: &Arc<StreamSink>,
    db: &str,
    db_index: usize,
    schema: &str,
) -> Result<DbDescription> {
    let what = format!("reading the tables of database {db:?}");
    let tables: Vec<(String, String, Option<String>, Option<u64>)> = conn
        .query(format!(
            "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA={} ORDER BY TABLE_NAME",
            lit(db)
        ))
        .await
        .map_err(|e| query_error(&what, e))?;
    let columns: Vec<(String, String, String)> = conn
        .query(format!(
            "SELECT TABLE_NAME, COLUMN_NAME, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA={} ORDER BY TABLE_NAME, ORDINAL_POSITION",
            lit(db)
        ))
        .await
        .map_err(|e| query_error(&what, e))?;
    let mut cols: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (t, c, extra) in columns {
        if !extra.to_ascii_uppercase().contains("GENERATED") {
            cols.entry(t).or_default().push(c);
        }
    }
    let sections = Sections::parse(schema);
    let mut jobs = Vec::new();
    let mut size = 0u64;
    let mut views = 0;
    let mut non_transactional = Vec::new();
    let mut names = Vec::new();
    for (name, kind, engine, bytes) in tables {
        size += bytes.unwrap_or(0);
        match kind.as_str() {
            "BASE TABLE" | "SYSTEM VERSIONED" => {}
            "VIEW" => {
                views += 1;
                continue;
            }
            _ => continue, // sequences live in the schema
        }
        if sections.table(&name).is_none() {
            return Err(source_error(format!(
                "table {db}.{name} was created while the backup ran (it is not in the schema dump): run the backup again"
            )));
        }
        if let Some(e) = &engine {
            if !e.eq_ignore_ascii_case("InnoDB") {
                non_transactional.push(format!("{name} ({e})"));
            }
        }
        names.push(name.clone());
        jobs.push(TableJob {
            db_index,
            db: db.to_string(),
            columns: cols.remove(&name).unwrap_or_default(),
            path: layout::data(db, &name),
            table: name,
            size: bytes.unwrap_or(0),
        });
    }
    for (title, _) in &sections.sections {
        if let Some(rest) = title.strip_prefix("Table structure for table ") {
            if !names.iter().any(|n| ident(&n.replace('\n', " ")) == rest) {
                let name = rest
                    .strip_prefix('`')
                    .and_then(|r| r.strip_suffix('`'))
                    .map(|r| r.replace("``", "`"))
                    .unwrap_or_else(|| rest.to_string());
                return Err(source_error(format!(
                    "table {db}.{name} was dropped while the backup ran (it is in the schema dump, not in the data snapshot): run the backup again"
                )));
            }
        }
    }

    let triggers = write_triggers(conn, sink, db).await?;

    let mut schema_version = None;
    for (table, query) in SCHEMA_VERSION_TABLES {
        if names.iter().any(|n| n == table) {
            conn.query_drop(format!("USE {}", ident(db)))
                .await
                .map_err(|e| query_error(&what, e))?;
            if let Ok(Some(Some(v))) = conn.query_first::<Option<String>, _>(*query).await {
                schema_version = Some(format!("{table}: {v}"));
                break;
            }
        }
    }
    let charset: Option<(String, String)> = conn
        .query_first(format!(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME={}",
            lit(db)
        ))
        .await
        .map_err(|e| query_error(&what, e))?;
    let (charset, collation) = charset.unwrap_or_default();
    let mut details = serde_json::Map::new();
    details.insert("charset".into(), json!(charset));
    details.insert("collation".into(), json!(collation));
    details.insert("views".into(), json!(views));
    details.insert("triggers".into(), json!(triggers));
    if !non_transactional.is_empty() {
        details.insert("non_transactional_tables".into(), json!(non_transactional));
    }
    let info = DatabaseInfo {
        name: db.to_string(),
        size_bytes: size,
        tables: Vec::new(),
        schema_version,
        ..Default::default()
    };
    Ok((info, details, jobs))
}

/// Writes each table's triggers (`SHOW CREATE TRIGGER`, in their firing order) as a script the
/// `mariadb` client loads. Returns how many there are.
async fn write_triggers(conn: &mut Conn, sink: &Arc<StreamSink>, db: &str) -> Result<usize> {
    let what = format!("reading the triggers of database {db:?}");
    let list: Vec<(String, String)> = conn
        .query(format!(
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA={} ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER",
            lit(db)
        ))
        .await
        .map_err(|e| query_error(&what, e))?;
    let mut by_table: BTreeMap<String, String> = BTreeMap::new();
    for (name, table) in &list {
        let row: Option<mysql_async::Row> = conn
            .query_first(format!("SHOW CREATE TRIGGER {}.{}", ident(db), ident(name)))
            .await
            .map_err(|e| query_error(&what, e))?;
        let Some(row) = row else { continue };
        let get = |i: usize| -> String {
            match row.as_ref(i) {
                Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            }
        };
        let (mode, statement, cs, coll) = (get(1), get(2), get(3), get(4));
        let script = by_table.entry(table.clone()).or_insert_with(|| {
            "/*!50003 SET @saved_sql_mode = @@sql_mode */;\n\
             /*!50003 SET @saved_cs_client = @@character_set_client */;\n\
             /*!50003 SET @saved_col_connection = @@collation_connection */;\n"
                .to_string()
        });
        script.push_str(&format!(
            "DROP TRIGGER IF EXISTS {};\nSET sql_mode = {};\nSET character_set_client = {};\nSET collation_connection = {};\nDELIMITER ;;\n{} ;;\nDELIMITER ;\n",
            ident(name),
            lit(&mode),
            if cs.is_empty() { "utf8mb4".into() } else { cs },
            if coll.is_empty() { "utf8mb4_general_ci".into() } else { coll },
            statement
        ));
    }
    for (table, mut script) in by_table {
        script.push_str(
            "/*!50003 SET sql_mode = @saved_sql_mode */;\n\
             /*!50003 SET character_set_client = @saved_cs_client */;\n\
             /*!50003 SET collation_connection = @saved_col_connection */;\n",
        );
        add_bytes(sink, &layout::triggers(db, &table), script.into_bytes()).await?;
    }
    Ok(list.len())
}

/// Streams one table's rows as INSERT statements; returns how many rows there were.
async fn dump_table(conn: &mut Conn, sink: &Arc<StreamSink>, job: &TableJob) -> Result<u64> {
    let col_list = job
        .columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(",");
    let mut stream = sink.add_async(&job.path)?;
    stream
        .write(Bytes::from_static(DATA_HEADER.as_bytes()))
        .await?;
    if job.columns.is_empty() {
        stream.finish().await?;
        return Ok(0);
    }
    let query = format!(
        "SELECT {col_list} FROM {}.{}",
        ident(&job.db),
        ident(&job.table)
    );
    let table_error = |e: mysql_async::Error| -> Error {
        match server_code(&e) {
            Some(1146) | Some(1412) => source_error(format!(
                "table {}.{} was dropped or altered while the backup ran ({}): run the backup again",
                job.db,
                job.table,
                super::conn::describe(&e)
            )),
            _ => query_error(&format!("reading table {}.{}", job.db, job.table), e),
        }
    };
    let mut result = conn.query_iter(query).await.map_err(table_error)?;
    let renders: Vec<_> = result.columns_ref().iter().map(render_for).collect();
    let prefix = format!("INSERT INTO {} ({col_list}) VALUES ", ident(&job.table));
    let mut buf: Vec<u8> = Vec::with_capacity(FLUSH_AT * 2);
    let mut open = false;
    let mut statement = 0usize;
    let mut rows = 0u64;
    while let Some(row) = result.next().await.map_err(table_error)? {
        let before = buf.len();
        if open {
            buf.push(b',');
        } else {
            buf.extend_from_slice(prefix.as_bytes());
            open = true;
        }
        let row_start = buf.len();
        buf.push(b'(');
        for (i, v) in row.unwrap().iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            push_value(
                &mut buf,
                v,
                renders
                    .get(i)
                    .copied()
                    .unwrap_or(super::sql::Render::Quoted),
            );
        }
        buf.push(b')');
        rows += 1;
        statement += buf.len() - before;
        let boundary = row_hash(&buf[row_start..]).is_multiple_of(16);
        if statement >= MAX_STATEMENT || (statement >= MIN_STATEMENT && boundary) {
            buf.extend_from_slice(b";\n");
            open = false;
            statement = 0;
        }
        if buf.len() >= FLUSH_AT {
            stream.write(Bytes::from(std::mem::take(&mut buf))).await?;
            buf.reserve(FLUSH_AT * 2);
        }
    }
    drop(result);
    if open {
        buf.extend_from_slice(b";\n");
    }
    stream.write(Bytes::from(buf)).await?;
    stream.finish().await?;
    Ok(rows)
}
