//! `coffer restore SNAP --target sqlite:///PATH`: the whole file, put in place atomically, then
//! integrity-checked and counted. `--table`, `--schema-only` and `--data-only` go to
//! [`super::tables`].

use super::inspect::{count_rows, integrity_check, open_copy};
use super::replace::{folder_of, materialize, replace_target};
use super::target::look;
use super::{database, file_of, is_table_restore, joined, stream_path};
use crate::database::{
    select_tables, CountCheck, DatabaseInfo, DbManifest, RestoreReport, RestoreRequest,
    StreamSource,
};
use coffer_core::{Error, Result};
use std::path::{Path, PathBuf};

/// Restores the snapshot's database into the target file: see the module docs.
pub async fn restore(
    src: &StreamSource,
    m: &DbManifest,
    req: &RestoreRequest,
) -> Result<RestoreReport> {
    let url = req.target()?;
    let target = file_of(url)?.to_path_buf();
    // A symbolic link: replace the file it points to, not the link.
    let target = std::fs::canonicalize(&target).unwrap_or(target);
    let db = database(m, req.database.as_deref())?;
    let selected: Vec<String> = select_tables(db, &req.tables)?
        .into_iter()
        .map(|t| t.name.clone())
        .collect();
    let mut report = if is_table_restore(req) {
        super::tables::restore_tables(src, m, db, req, &target, selected).await?
    } else {
        restore_file(src, m, db, req, &target).await?
    };
    report.target = url.redacted();
    Ok(report)
}

/// The whole-file restore: temporary file, fsync, integrity check, rename, sidecars removed.
async fn restore_file(
    src: &StreamSource,
    m: &DbManifest,
    db: &DatabaseInfo,
    req: &RestoreRequest,
    target: &Path,
) -> Result<RestoreReport> {
    let (dir, base) = folder_of(target)?;
    let t = target.to_path_buf();
    let now = joined(
        tokio::task::spawn_blocking(move || look(&t)).await,
        "looking at the target",
    )?;
    if now.exists && !now.empty() && !req.clean {
        return Err(Error::invalid(format!(
            "the restore target {} is not empty ({} tables): pass --clean to replace the whole file",
            target.display(),
            now.tables.len()
        )));
    }
    let unchanged = if now.exists {
        "the target was not changed"
    } else {
        "no target file was created"
    };

    // Step 1: the snapshot's file, next to the target, fsynced.
    let stream = stream_path(m, db);
    let tmp = materialize(src, &stream, &dir, &base).await.map_err(|e| {
        e.context(format!(
            "restore step 1 of 3 (writing the snapshot's database to a temporary file in {}) failed; {unchanged}",
            dir.display()
        ))
        .untouched()
    })?;

    // Step 2: its integrity check.
    let recorded = db.integrity_check.clone();
    let tmp_path = tmp.path().to_path_buf();
    let checked = tokio::task::spawn_blocking(move || -> Result<String> {
        let conn = open_copy(&tmp_path)?;
        let r = integrity_check(&conn, &tmp_path);
        drop(conn);
        r
    })
    .await;
    tmp.remove_sidecars();
    let result = joined(checked, "the integrity check").map_err(|e| {
        e.context(format!(
            "restore step 2 of 3 (integrity check of the restored file) failed; {unchanged}"
        ))
        .untouched()
    })?;
    let mut warnings = Vec::new();
    if result != "ok" {
        if recorded.as_deref() == Some(result.as_str()) {
            warnings.push(format!(
                "the database was already damaged when it was backed up; it is restored as it was (integrity check: {})",
                result.lines().next().unwrap_or_default()
            ));
        } else {
            return Err(Error::corrupt(format!(
                "restore step 2 of 3: the restored file fails its integrity check ({}), although the backup recorded {:?}; {unchanged}",
                result.lines().next().unwrap_or_default(),
                recorded.as_deref().unwrap_or("nothing")
            ))
            .untouched());
        }
    }

    // Step 3: into place.
    let t = target.to_path_buf();
    let d = dir.clone();
    joined(
        tokio::task::spawn_blocking(move || replace_target(tmp, &t, &d)).await,
        "replacing the target",
    )
    .map_err(|e| e.context("restore step 3 of 3 (renaming the restored file over the target)"))?;

    // Afterwards: count what is there now.
    let names: Vec<String> = db.tables.iter().map(|t| t.name.clone()).collect();
    let counts = verify_counts(target.to_path_buf(), db, names.clone()).await?;
    Ok(RestoreReport {
        target: String::new(),
        restored: names,
        counts,
        warnings,
    })
}

/// Counts the rows of `names` in the target and pairs them with the manifest's counts. A table
/// that cannot be counted shows 0 rows (and so a mismatch).
pub(super) async fn verify_counts(
    target: PathBuf,
    db: &DatabaseInfo,
    names: Vec<String>,
) -> Result<Vec<CountCheck>> {
    let found = joined(
        tokio::task::spawn_blocking(move || -> Result<Vec<(String, Option<u64>)>> {
            let conn = open_copy(&target).map_err(|e| {
                e.context("the restore completed, but the row counts could not be verified")
            })?;
            Ok(count_rows(&conn, &names))
        })
        .await,
        "counting rows",
    )?;
    Ok(found
        .into_iter()
        .map(|(name, actual)| CountCheck {
            expected: db
                .tables
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.rows)
                .unwrap_or_default(),
            actual: actual.unwrap_or_default(),
            object: name,
        })
        .collect())
}
