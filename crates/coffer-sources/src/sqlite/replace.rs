//! Putting a database file in place safely: the snapshot's file written next to the target and
//! fsynced, then renamed over it, the old file's `-wal`, `-shm` and `-journal` removed.

use super::copy::TempFile;
use super::{joined, sidecars, sql_error, BUSY_TIMEOUT, HEADER};
use crate::database::StreamSource;
use coffer_core::{Error, ErrorKind, Result};
use rusqlite::{Connection, OpenFlags};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder holding `target` (which must exist) and the target's file name.
pub(super) fn folder_of(target: &Path) -> Result<(PathBuf, String)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::invalid(format!("{} names no file", target.display())))?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::not_found(format!(
            "the folder of the restore target, {}, does not exist: create it first",
            dir.display()
        )));
    }
    Ok((dir, name))
}

/// Writes the stream `path` of `src` into a new temporary file in `dir` and fsyncs it. The
/// stream's SHA-256 is checked on the way.
pub(super) async fn materialize(
    src: &StreamSource,
    path: &str,
    dir: &Path,
    base: &str,
) -> Result<TempFile> {
    let tmp = TempFile::create(dir, base)?;
    let mut reader = src.reader(path)?;
    let dest = tmp.path().to_path_buf();
    let task = tokio::task::spawn_blocking(move || -> Result<()> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&dest)
            .map_err(|e| Error::io(format!("cannot open {}", dest.display()), e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        std::io::copy(&mut reader, &mut w).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                Error::corrupt(format!("reading the snapshot's database file: {e}"))
            } else {
                Error::io(format!("writing {}", dest.display()), e)
            }
        })?;
        w.flush()
            .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
        let f = w
            .into_inner()
            .map_err(|e| Error::io(format!("writing {}", dest.display()), e.into_error()))?;
        f.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", dest.display()), e))
    });
    joined(task.await, "writing the temporary file")?;
    Ok(tmp)
}

/// Renames `tmp` over `target`: the old target (when it is a database) is checkpointed first so
/// that its `-wal` holds nothing and no hot journal is left, then the rename, an fsync of the
/// folder, and the stale sidecar files removed. At every instant the target path holds either
/// the whole old database or the whole new one.
pub(super) fn replace_target(tmp: TempFile, target: &Path, dir: &Path) -> Result<()> {
    settle_old_target(target).map_err(Error::untouched)?;
    std::fs::rename(tmp.path(), target).map_err(|e| {
        Error::io(
            format!(
                "cannot rename {} over {} (the target was not changed)",
                tmp.path().display(),
                target.display()
            ),
            e,
        )
        .untouched()
    })?;
    tmp.keep();
    // Stale sidecars would be applied to the new file: remove them before anyone opens it.
    for s in sidecars(target) {
        match std::fs::remove_file(&s) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(
                    format!(
                        "the new database is in place, but its stale {} could not be removed (remove it before opening the database)",
                        s.display()
                    ),
                    e,
                ))
            }
        }
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Makes the old target's sidecars harmless: rolls back a hot journal and moves everything in
/// its WAL into the main file (`wal_checkpoint(TRUNCATE)`). A file that is not a database has
/// nothing to settle.
fn settle_old_target(target: &Path) -> Result<()> {
    let is_db = std::fs::File::open(target)
        .ok()
        .and_then(|mut f| {
            let mut h = [0u8; 16];
            std::io::Read::read_exact(&mut f, &mut h).ok().map(|_| h)
        })
        .is_some_and(|h| &h == HEADER);
    let [wal, _, journal] = sidecars(target);
    if !is_db || (!wal.exists() && !journal.exists()) {
        return Ok(());
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let settle = || -> rusqlite::Result<(i64, i64, i64)> {
        let conn = Connection::open_with_flags(target, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Reading rolls back a hot journal.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
    };
    match settle() {
        Ok((0, _, _)) => Ok(()),
        Ok(_) => Err(Error::new(
            ErrorKind::Source,
            format!(
                "the target {} is in use: another process keeps a transaction open, so its WAL cannot be emptied; stop the application using it and retry (the target was not changed)",
                target.display()
            ),
        )),
        // A damaged old file has nothing worth keeping in its journal: replace it as it is.
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(sql_error(
            "cannot settle the old target's journal before replacing it (the target was not changed)",
            target,
            e,
        )),
    }
}
