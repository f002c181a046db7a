//! `coffer dump` for MySQL/MariaDB: the snapshot as one plain SQL script a `mariadb` client
//! loads (schema, each table's data, triggers, events; for a whole server each database under
//! `CREATE DATABASE`/`USE`, then users and grants), needing no server.

use super::layout;
use super::restore::{charset_clause, plan, tables_schema};
use super::sql::ident;
use crate::database::{select_tables, DbManifest, DumpRequest, StreamSource};
use coffer_core::{Error, Result};
use futures::StreamExt;
use std::io::Write;

/// Writes the plain SQL dump to `out`.
pub async fn dump(
    src: &StreamSource,
    m: &DbManifest,
    req: &DumpRequest,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let steps = plan(m, req.database.as_deref(), None, &req.tables)?;
    let several = m.whole_server && req.database.is_none();
    for step in &steps {
        let db = &step.source.name;
        let selected = select_tables(step.source, &req.tables)?;
        let full = req.tables.is_empty();
        if several {
            write(
                out,
                format!(
                    "\n--\n-- Database {}\n--\n\nCREATE DATABASE IF NOT EXISTS {}{};\nUSE {};\n",
                    ident(db),
                    ident(db),
                    charset_clause(m, db),
                    ident(db)
                )
                .as_bytes(),
            )?;
        }
        if !req.data_only {
            if full {
                copy(src, &layout::schema(db), out).await?;
            } else {
                let schema = src.read_all(&layout::schema(db)).await?;
                let text = tables_schema(&String::from_utf8_lossy(&schema), &selected, db)?;
                write(out, text.as_bytes())?;
            }
        }
        if !req.schema_only {
            for t in &selected {
                let path = t
                    .stream
                    .clone()
                    .unwrap_or_else(|| layout::data(db, &t.name));
                write(
                    out,
                    format!("\n-- Data of table {}\n", ident(&t.name)).as_bytes(),
                )?;
                copy(src, &path, out).await?;
            }
        }
        if !req.data_only {
            for t in &selected {
                let path = layout::triggers(db, &t.name);
                if src.contains(&path) {
                    copy(src, &path, out).await?;
                }
            }
            if full && src.contains(&layout::events(db)) {
                copy(src, &layout::events(db), out).await?;
            }
        }
    }
    if several
        && req.tables.is_empty()
        && !req.data_only
        && !req.schema_only
        && src.contains(layout::USERS)
    {
        write(out, b"\n--\n-- Users and grants\n--\n\n")?;
        copy(src, layout::USERS, out).await?;
    }
    out.flush().map_err(|e| Error::io("writing the dump", e))?;
    Ok(())
}

fn write(out: &mut (dyn Write + Send), data: &[u8]) -> Result<()> {
    out.write_all(data)
        .map_err(|e| Error::io("writing the dump", e))
}

async fn copy(src: &StreamSource, path: &str, out: &mut (dyn Write + Send)) -> Result<()> {
    let mut chunks = Box::pin(src.chunks(path)?);
    while let Some(c) = chunks.next().await {
        write(out, &c?)?;
    }
    Ok(())
}
