//! Restoring a MySQL/MariaDB snapshot: which database goes where, what the target holds, and
//! the restore itself: the database created when missing, the schema (whole, or only the
//! `--table`s' definitions), every table's data loaded in parallel (`--jobs`), then triggers,
//! events and (whole server) users and grants, and finally the row counts compared.

use super::client::{self, Input};
use super::conn::{client_tool, query_error, Server};
use super::layout;
use super::sql::{ident, lit, Sections};
use crate::database::{
    select_tables, source_error, CountCheck, DatabaseInfo, DbManifest, RestoreReport,
    RestoreRequest, StreamSource, TableInfo, TargetState,
};
use coffer_core::{Error, ErrorKind, Result};
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// One database of the snapshot and the database it goes to.
#[derive(Debug)]
pub struct Step<'a> {
    /// The snapshot's database.
    pub source: &'a DatabaseInfo,
    /// Its name on the target.
    pub target: String,
}

/// The databases a request restores (or dumps): `--database` picks one of a whole-server
/// snapshot; a target URL naming a database takes exactly one.
pub fn plan<'a>(
    m: &'a DbManifest,
    database: Option<&str>,
    target_db: Option<&str>,
    tables: &[String],
) -> Result<Vec<Step<'a>>> {
    let names = || {
        m.databases
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen: Vec<&DatabaseInfo> = match database {
        Some(name) => vec![m.databases.iter().find(|d| d.name == name).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "the snapshot has no database {name:?} (it holds: {})",
                    names()
                ),
            )
        })?],
        None => m.databases.iter().collect(),
    };
    if target_db.is_some() && chosen.len() != 1 {
        return Err(Error::invalid(format!(
            "the snapshot holds {} databases ({}): pick one with --database NAME, or give a target URL without a database to restore each under its own name",
            chosen.len(),
            names()
        )));
    }
    if !tables.is_empty() && chosen.len() != 1 {
        return Err(Error::invalid(format!(
            "--table needs one database: the snapshot holds {} ({}); pick one with --database NAME",
            chosen.len(),
            names()
        )));
    }
    Ok(chosen
        .into_iter()
        .map(|source| Step {
            source,
            target: target_db.unwrap_or(&source.name).to_string(),
        })
        .collect())
}

/// Whether the request restores the server's users and grants.
fn restores_users(m: &DbManifest, req: &RestoreRequest, target_db: Option<&str>) -> bool {
    m.whole_server
        && target_db.is_none()
        && req.database.is_none()
        && req.tables.is_empty()
        && !req.data_only
        && !req.schema_only
}

/// The tables (and views) of `db` on the target, or `None` when it does not exist.
async fn existing_tables(conn: &mut Conn, db: &str) -> Result<Option<Vec<String>>> {
    let exists: Option<String> = conn
        .query_first(format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME={}",
            lit(db)
        ))
        .await
        .map_err(|e| query_error("looking at the target", e))?;
    if exists.is_none() {
        return Ok(None);
    }
    let tables: Vec<String> = conn
        .query(format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA={} ORDER BY TABLE_NAME",
            lit(db)
        ))
        .await
        .map_err(|e| query_error("looking at the target", e))?;
    Ok(Some(tables))
}

/// Looks at the target: which databases exist, how many tables they hold, which tables the
/// restore would replace.
pub async fn probe_target(m: &DbManifest, req: &RestoreRequest) -> Result<TargetState> {
    let target = req.target()?;
    let steps = plan(
        m,
        req.database.as_deref(),
        target.database.as_deref(),
        &req.tables,
    )?;
    let server = Server::new(target);
    let mut conn = server.connect(None).await?;
    let mut state = TargetState {
        exists: false,
        empty: true,
        summary: String::new(),
        conflicts: Vec::new(),
    };
    let mut parts = Vec::new();
    for step in &steps {
        let selected = select_tables(step.source, &req.tables)?;
        match existing_tables(&mut conn, &step.target).await? {
            None => parts.push(format!("database {} does not exist", step.target)),
            Some(tables) => {
                state.exists = true;
                if !tables.is_empty() {
                    state.empty = false;
                }
                let size: Option<Option<String>> = conn
                    .query_first(format!(
                        "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA={}",
                        lit(&step.target)
                    ))
                    .await
                    .map_err(|e| query_error("looking at the target", e))?;
                let size: u64 = size.flatten().and_then(|s| s.parse().ok()).unwrap_or(0);
                parts.push(format!(
                    "database {}: {} table(s), {}",
                    step.target,
                    tables.len(),
                    human(size)
                ));
                for t in selected {
                    if tables.contains(&t.name) {
                        state.conflicts.push(if steps.len() > 1 {
                            format!("{}.{}", step.target, t.name)
                        } else {
                            t.name.clone()
                        });
                    }
                }
            }
        }
    }
    let _ = conn.disconnect().await;
    state.summary = format!("{} on {}", parts.join("; "), server.address());
    Ok(state)
}

fn human(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// The schema of only `tables`: the dump's session settings, then each table's section.
pub fn tables_schema(schema: &str, tables: &[&TableInfo], db: &str) -> Result<String> {
    let sections = Sections::parse(schema);
    let mut out = sections.preamble.to_string();
    for t in tables {
        let s = sections.table(&t.name).ok_or_else(|| {
            Error::corrupt(format!(
                "the schema of database {db} in the snapshot has no definition of table {}",
                t.name
            ))
        })?;
        out.push_str(s);
    }
    out.push_str(
        "/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;\n\
         /*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n",
    );
    Ok(out)
}

/// The database's character set and collation from the manifest's details.
pub fn charset_clause(m: &DbManifest, db: &str) -> String {
    let d = &m.details["databases"][db];
    let mut out = String::new();
    if let Some(cs) = d["charset"].as_str().filter(|s| !s.is_empty()) {
        out.push_str(&format!(" CHARACTER SET {cs}"));
    }
    if let Some(c) = d["collation"].as_str().filter(|s| !s.is_empty()) {
        out.push_str(&format!(" COLLATE {c}"));
    }
    out
}

/// Restores the snapshot into the target and compares row counts.
pub async fn restore(
    src: &StreamSource,
    m: &DbManifest,
    req: &RestoreRequest,
) -> Result<RestoreReport> {
    let target = req.target()?;
    let steps = plan(
        m,
        req.database.as_deref(),
        target.database.as_deref(),
        &req.tables,
    )?;
    let server = Server::new(target);
    let client = client_tool()?;
    let creds = server.credentials()?;
    let mut conn = server.connect(None).await?;
    let mut report = RestoreReport {
        target: target.redacted(),
        ..Default::default()
    };
    let jobs = req.jobs.max(1);
    for step in &steps {
        let db = step.target.as_str();
        let source = step.source;
        let selected = select_tables(source, &req.tables)?;
        let full = req.tables.is_empty();

        // The database.
        let existing = existing_tables(&mut conn, db).await?;
        let existing = match existing {
            Some(t) => t,
            None if req.data_only => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "database {db} does not exist on {}: a --data-only restore needs the schema in place",
                        server.address()
                    ),
                ))
            }
            None => {
                conn.query_drop(format!(
                    "CREATE DATABASE IF NOT EXISTS {}{}",
                    ident(db),
                    charset_clause(m, &source.name)
                ))
                .await
                .map_err(|e| query_error(&format!("creating database {db}"), e))?;
                Vec::new()
            }
        };
        let conflicts: Vec<&str> = selected
            .iter()
            .filter(|t| existing.contains(&t.name))
            .map(|t| t.name.as_str())
            .collect();
        if !req.clean && !req.data_only && !conflicts.is_empty() {
            return Err(Error::invalid(format!(
                "database {db} already has table(s) {}: add --clean to replace them",
                conflicts.join(", ")
            )));
        }

        // The schema (or, for --data-only --clean, emptied tables).
        if !req.data_only {
            let what = format!(
                "restoring the schema of database {db} (nothing of its data was loaded yet)"
            );
            let input = if full {
                Input::Stream(src.reader(&layout::schema(&source.name))?)
            } else {
                let schema = src.read_all(&layout::schema(&source.name)).await?;
                let schema = String::from_utf8_lossy(&schema);
                Input::Bytes(tables_schema(&schema, &selected, &source.name)?.into_bytes())
            };
            let cmd = client::command(&server, &client, &creds, Some(db), false);
            client::load(cmd, input, what).await?;
        } else if req.clean {
            conn.query_drop(format!("USE {}", ident(db)))
                .await
                .map_err(|e| query_error(&format!("using database {db}"), e))?;
            conn.query_drop("SET FOREIGN_KEY_CHECKS=0")
                .await
                .map_err(|e| query_error("SET FOREIGN_KEY_CHECKS=0", e))?;
            for t in &selected {
                conn.query_drop(format!("TRUNCATE TABLE {}", ident(&t.name)))
                    .await
                    .map_err(|e| query_error(&format!("emptying table {db}.{}", t.name), e))?;
            }
            conn.query_drop("SET FOREIGN_KEY_CHECKS=1")
                .await
                .map_err(|e| query_error("SET FOREIGN_KEY_CHECKS=1", e))?;
        }

        // The data, `jobs` tables at once.
        if !req.schema_only {
            let mut loads = Vec::with_capacity(selected.len());
            for t in &selected {
                let path = t
                    .stream
                    .clone()
                    .unwrap_or_else(|| layout::data(&source.name, &t.name));
                let cmd = client::command(&server, &client, &creds, Some(db), false);
                let what = format!(
                    "loading the data of table {db}.{} (the schema is in place; tables loaded so far keep their rows)",
                    t.name
                );
                // The stream is opened when its turn comes, so only `jobs` read ahead.
                loads.push(async move {
                    let input = Input::Stream(src.reader(&path)?);
                    client::load(cmd, input, what).await
                });
            }
            let mut results = futures::stream::iter(loads).buffer_unordered(jobs);
            while let Some(r) = results.next().await {
                r?;
            }
        }

        // Triggers, then events, once the data is in.
        if !req.data_only {
            let mut post = Vec::new();
            for t in &selected {
                let path = layout::triggers(&source.name, &t.name);
                if src.contains(&path) {
                    post.push((
                        path,
                        format!(
                            "creating the triggers of table {db}.{} (its data is loaded)",
                            t.name
                        ),
                    ));
                }
            }
            if full && src.contains(&layout::events(&source.name)) {
                post.push((
                    layout::events(&source.name),
                    format!("creating the events of database {db} (tables and data are restored)"),
                ));
            }
            for (path, what) in post {
                let cmd = client::command(&server, &client, &creds, Some(db), false);
                client::load(cmd, Input::Stream(src.reader(&path)?), what).await?;
            }
        }

        // Row counts.
        for t in &selected {
            report.restored.push(format!("{db}.{}", t.name));
            if req.schema_only {
                continue;
            }
            let actual: Option<u64> = conn
                .query_first(format!(
                    "SELECT COUNT(*) FROM {}.{}",
                    ident(db),
                    ident(&t.name)
                ))
                .await
                .map_err(|e| query_error(&format!("counting the rows of {db}.{}", t.name), e))?;
            report.counts.push(CountCheck {
                object: format!("{db}.{}", t.name),
                expected: t.rows,
                actual: actual.unwrap_or(0),
            });
        }
    }

    if restores_users(m, req, target.database.as_deref()) && src.contains(layout::USERS) {
        let cmd = client::command(&server, &client, &creds, None, true);
        let loaded = client::load(
            cmd,
            Input::Stream(src.reader(layout::USERS)?),
            "restoring users and grants (every database is restored)".to_string(),
        )
        .await?;
        for line in loaded.stderr.lines().filter(|l| !l.trim().is_empty()) {
            report.warnings.push(format!("users and grants: {line}"));
        }
        report.restored.push("users and grants".to_string());
    }
    let _ = conn.disconnect().await;
    if report.restored.is_empty() && steps.is_empty() {
        return Err(source_error("the snapshot holds no database to restore"));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dbs: &[&str]) -> DbManifest {
        DbManifest {
            engine: "mysql".into(),
            whole_server: dbs.len() > 1,
            databases: dbs
                .iter()
                .map(|d| DatabaseInfo {
                    name: d.to_string(),
                    tables: vec![TableInfo {
                        name: "t".into(),
                        rows: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn plans() {
        let one = manifest(&["app"]);
        let p = plan(&one, None, Some("copy"), &[]).unwrap();
        assert_eq!(
            (p[0].source.name.as_str(), p[0].target.as_str()),
            ("app", "copy")
        );
        let p = plan(&one, None, None, &[]).unwrap();
        assert_eq!(p[0].target, "app");

        let two = manifest(&["a", "b"]);
        assert_eq!(plan(&two, None, None, &[]).unwrap().len(), 2);
        let e = plan(&two, None, Some("x"), &[]).unwrap_err();
        assert!(e.to_string().contains("--database"), "{e}");
        let e = plan(&two, None, None, &["t".into()]).unwrap_err();
        assert!(e.to_string().contains("--database"), "{e}");
        let p = plan(&two, Some("b"), Some("x"), &[]).unwrap();
        assert_eq!(
            (p[0].source.name.as_str(), p[0].target.as_str()),
            ("b", "x")
        );
        assert_eq!(
            plan(&two, Some("zz"), None, &[]).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(human(12), "12 B");
        assert_eq!(human(3 * 1024 * 1024 + 100), "3.0 MiB");
    }
}
