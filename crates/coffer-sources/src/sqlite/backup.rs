//! `coffer backup sqlite:///PATH`: an online copy, checked and counted, stored as one stream.

use super::copy::{check_source_file, online_copy, TempFile};
use super::inspect::{inspect, open_copy};
use super::{file_of, joined};
use crate::database::{component, BackupContext, DatabaseInfo, DbManifest};
use coffer_core::{Error, Result};
use serde_json::json;

/// Backs up the database file `ctx.url` names into `ctx.sink`: see the module docs.
pub async fn backup(ctx: &BackupContext) -> Result<DbManifest> {
    let file = file_of(&ctx.url)?.to_path_buf();
    let sink = ctx.sink.clone();
    let shown = ctx.url.redacted();
    let task = tokio::task::spawn_blocking(move || -> Result<DbManifest> {
        check_source_file(&file)?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::invalid(format!("{} names no file", file.display())))?;
        let tmp = TempFile::create(&std::env::temp_dir(), &name)
            .map_err(|e| e.context("cannot make room for the consistent copy (set TMPDIR to a folder with space for the database)"))?;
        let session = sink.session().clone();
        let stats = online_copy(&file, tmp.path(), &|| session.is_cancelled())
            .map_err(|e| e.context(format!("copying {}", file.display())))?;

        let conn = open_copy(tmp.path())?;
        let facts = inspect(&conn, tmp.path(), true)
            .map_err(|e| e.context(format!("checking the copy of {}", file.display())))?;
        drop(conn);
        tmp.remove_sidecars();

        let mut warnings = facts.warnings.clone();
        let integrity = facts.integrity.clone().unwrap_or_default();
        if integrity != "ok" {
            let w = format!(
                "the integrity check of {} failed; the copy is stored as it is (restores will show the same damage): {}",
                file.display(),
                integrity.lines().next().unwrap_or_default()
            );
            tracing::warn!("{w}");
            warnings.push(w);
        }

        let stream = format!("db/{}", component(&name));
        let size = std::fs::metadata(tmp.path())
            .map_err(|e| Error::io("cannot read the size of the copy", e))?
            .len();
        let f = std::fs::File::open(tmp.path())
            .map_err(|e| Error::io("cannot read the temporary copy", e))?;
        sink.add_reader(&stream, std::io::BufReader::with_capacity(1 << 20, f))
            .map_err(|e| e.context(format!("storing {}", file.display())))?;
        drop(tmp);

        let (schema_version, version_table) = match facts.schema_version {
            Some((v, t)) => (Some(v), Some(t)),
            None => (None, None),
        };
        Ok(DbManifest {
            engine: "sqlite".into(),
            server_version: rusqlite::version().to_string(),
            whole_server: false,
            databases: vec![DatabaseInfo {
                name,
                size_bytes: size,
                tables: facts.tables,
                schema_version,
                keys: None,
                page_size: Some(facts.page_size),
                integrity_check: Some(integrity),
            }],
            streams: Vec::new(),
            details: json!({
                "stream": stream,
                "user_version": facts.user_version,
                "application_id": facts.application_id,
                "encoding": facts.encoding,
                "page_count": facts.page_count,
                "freelist_count": facts.freelist_count,
                "journal_mode": stats.journal_mode,
                "schema_version_table": version_table,
                "copy": {
                    "method": "online backup API, one read transaction",
                    "steps": stats.steps,
                    "restarts": stats.restarts,
                    "seconds": stats.elapsed.as_secs_f64(),
                },
                "warnings": warnings,
            }),
        })
    });
    joined(task.await, "the SQLite backup").map_err(|e| e.context(format!("backing up {shown}")))
}
