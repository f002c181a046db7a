//! `coffer dump` of a PostgreSQL snapshot: one plain SQL script for `psql`, needing no server
//! to write: roles (whole server), then per database the schema before the data
//! (`pg_restore -f -` of the archive), `COPY ... FROM stdin` blocks, sequence values, large
//! objects, and the schema after the data (indexes, constraints, triggers).

use super::catalog::PgDatabase;
use super::connect::{ident, qualified};
use super::restore::{chosen, details, find_pg_restore, pick, plan};
use super::stage::Stage;
use super::tools::{run_capture, Tool};
use crate::database::capture::MAX_OUTPUT;
use crate::database::{DatabaseInfo, DbManifest, DumpRequest, StreamSource};
use coffer_core::{Error, Result};
use futures::StreamExt;
use std::io::Write;

/// Bytes of a large object per `lo_put` line.
const LO_LINE: usize = 256 * 1024;

fn w(out: &mut (dyn Write + Send), data: &[u8]) -> Result<()> {
    out.write_all(data)
        .map_err(|e| Error::io("writing the dump", e))
}

/// Writes the plain SQL dump of the snapshot to `out`.
pub async fn dump(
    src: &StreamSource,
    m: &DbManifest,
    req: &DumpRequest,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    if req.schema_only && req.data_only {
        return Err(Error::invalid(
            "--schema-only and --data-only exclude each other",
        ));
    }
    let d = details(m)?;
    let plan = plan(m, req.database.as_deref(), None)?;
    let whole = m.whole_server && req.database.is_none();
    let pg_restore = find_pg_restore(&d.pg_dump_version, None)?;
    w(
        out,
        format!(
            "-- PostgreSQL dump written by coffer (source: {}, pg_dump {})\n\
             -- Load it with: psql -v ON_ERROR_STOP=1 -f FILE\n\n",
            m.server_version, d.pg_dump_version
        )
        .as_bytes(),
    )?;
    if whole && !req.data_only && req.tables.is_empty() {
        if let Some(g) = &d.globals {
            w(out, b"-- Roles and grants\n\n")?;
            let text = src.read_all(g).await?;
            w(out, &text)?;
            w(out, b"\n")?;
        }
    }
    for (info, name) in plan {
        let db = d.databases.get(&info.name).ok_or_else(|| {
            Error::corrupt(format!(
                "the snapshot's details miss database {}",
                info.name
            ))
        })?;
        if whole {
            w(out, format!("\n-- Database {name}\n\n").as_bytes())?;
            if !req.data_only && name != "postgres" && name != "template1" {
                w(
                    out,
                    format!(
                        "CREATE DATABASE {} WITH TEMPLATE = template0 ENCODING = '{}';\n",
                        ident(&name),
                        db.encoding
                    )
                    .as_bytes(),
                )?;
            }
            w(out, format!("\\connect {}\n\n", ident(&name)).as_bytes())?;
        }
        dump_database(src, db, info, req, &pg_restore, out).await?;
    }
    Ok(())
}

async fn dump_database(
    src: &StreamSource,
    db: &PgDatabase,
    info: &DatabaseInfo,
    req: &DumpRequest,
    pg_restore: &Tool,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let full = req.tables.is_empty();
    let tables = chosen(db, info, &req.tables)?;
    let stage = Stage::new()?;
    let archive = stage.write("schema.pgdump", &src.read_all(&db.schema_stream).await?)?;
    let list = if full {
        None
    } else {
        let entries = super::toc::list(pg_restore, &archive)?;
        let (mut picker, skipped) = pick(db, &tables, &|_| false, &|_| false);
        for e in entries.iter().filter(|e| e.support().is_some()) {
            picker.add_entry(e);
        }
        if !skipped.is_empty() {
            w(
                out,
                format!(
                    "-- Foreign keys to tables not in this dump are left out: {}\n",
                    skipped.join(", ")
                )
                .as_bytes(),
            )?;
        }
        Some(stage.write("dump.list", picker.list(&entries).as_bytes())?)
    };
    if !req.data_only {
        let sql = section(pg_restore, list.as_deref(), &archive, "pre-data").await?;
        w(out, &sql)?;
    }
    if !req.schema_only {
        w(out, b"\n-- Data\n\n")?;
        for t in tables.iter().filter(|t| t.stream.is_some()) {
            w(
                out,
                format!("COPY {}{} FROM stdin;\n", t.sql_name(), t.column_list()).as_bytes(),
            )?;
            let mut chunks = Box::pin(src.chunks(t.stream.as_deref().unwrap_or_default())?);
            while let Some(c) = chunks.next().await {
                w(out, &c?)?;
            }
            w(out, b"\\.\n\n")?;
        }
        let seqs = String::from_utf8(src.read_all(&db.sequences_stream).await?)
            .map_err(|_| Error::corrupt("the sequences stream is not UTF-8"))?;
        let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
        for line in seqs.lines() {
            let keep = full
                || db.sequences.iter().any(|s| {
                    s.owned_by.is_some_and(|o| oids.contains(&o))
                        && line.contains(&super::connect::literal(&qualified(&s.schema, &s.name)))
                });
            if keep {
                w(out, line.as_bytes())?;
                w(out, b"\n")?;
            }
        }
        if full {
            for lo in &db.large_objects {
                w(
                    out,
                    format!("SELECT pg_catalog.lo_create({});\n", lo.oid).as_bytes(),
                )?;
                let mut off = 0usize;
                let mut chunks = Box::pin(src.chunks(&lo.stream)?);
                while let Some(c) = chunks.next().await {
                    let c = c?;
                    for piece in c.chunks(LO_LINE) {
                        w(
                            out,
                            format!(
                                "SELECT pg_catalog.lo_put({}, {off}, '\\x{}');\n",
                                lo.oid,
                                hex::encode(piece)
                            )
                            .as_bytes(),
                        )?;
                        off += piece.len();
                    }
                }
                w(
                    out,
                    format!(
                        "ALTER LARGE OBJECT {} OWNER TO {};\n",
                        lo.oid,
                        ident(&lo.owner)
                    )
                    .as_bytes(),
                )?;
            }
        }
    }
    if !req.data_only {
        let sql = section(pg_restore, list.as_deref(), &archive, "post-data").await?;
        w(out, b"\n")?;
        w(out, &sql)?;
        if full && !req.schema_only {
            for v in db.matviews.iter().filter(|v| v.populated) {
                w(
                    out,
                    format!(
                        "REFRESH MATERIALIZED VIEW {};\n",
                        qualified(&v.schema, &v.name)
                    )
                    .as_bytes(),
                )?;
            }
        }
    }
    out.flush().map_err(|e| Error::io("writing the dump", e))
}

/// `pg_restore --section=NAME -f -` of the staged archive, on a blocking thread.
async fn section(
    pg_restore: &Tool,
    list: Option<&std::path::Path>,
    archive: &std::path::Path,
    name: &str,
) -> Result<Vec<u8>> {
    let mut cmd = pg_restore.command(None);
    cmd.arg(format!("--section={name}")).args(["-f", "-"]);
    if let Some(l) = list {
        cmd.arg("-L").arg(l);
    }
    cmd.arg(archive);
    let (tool, what) = (
        pg_restore.clone(),
        format!("pg_restore --section={name} -f -"),
    );
    tokio::task::spawn_blocking(move || run_capture(&tool, cmd, &what, MAX_OUTPUT))
        .await
        .map_err(|e| crate::database::source_error(format!("pg_restore panicked: {e}")))?
}
