//! A consistent copy of a live database with the online backup API, and the temporary files
//! that hold copies (removed, with their sidecars, whatever happens).

use super::{sidecars, sql_error, BUSY_TIMEOUT, HEADER};
use coffer_core::{Error, ErrorKind, Result};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Pages copied per backup step (between two cancellation checks).
const PAGES_PER_STEP: i32 = 1024;

/// A temporary file removed on drop (with its `-wal`, `-shm` and `-journal`), unless kept.
pub(super) struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// A new, empty file named after `base` in `dir` (created exclusively, mode 0600).
    pub(super) fn create(dir: &Path, base: &str) -> Result<TempFile> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            ".{base}.coffer-{}-{}-{nanos:08x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                Error::io(
                    format!("cannot create a temporary file in {}", dir.display()),
                    e,
                )
            })?;
        Ok(TempFile { path, keep: false })
    }

    /// Its path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the removal (the file was renamed into place).
    pub(super) fn keep(mut self) {
        self.keep = true;
    }

    /// Removes the sidecar files a connection may have left next to it.
    pub(super) fn remove_sidecars(&self) {
        for s in sidecars(&self.path) {
            let _ = std::fs::remove_file(s);
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.remove_sidecars();
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Checks that `file` is a readable SQLite database before SQLite opens it, so that a missing,
/// unreadable or foreign file gets an error that says so.
pub(super) fn check_source_file(file: &Path) -> Result<()> {
    let shown = file.display();
    let meta = std::fs::metadata(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::not_found(format!(
            "the SQLite database {shown} does not exist (check the path in the URL: sqlite:///ABSOLUTE/PATH)"
        )),
        std::io::ErrorKind::PermissionDenied => Error::new(
            ErrorKind::Source,
            format!("cannot reach the SQLite database {shown}: permission denied on its folder"),
        ),
        _ => Error::io(format!("cannot read the SQLite database {shown}"), e),
    })?;
    if meta.is_dir() {
        return Err(Error::invalid(format!(
            "{shown} is a folder, not a SQLite database file"
        )));
    }
    let mut f = std::fs::File::open(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => Error::new(
            ErrorKind::Source,
            format!(
                "cannot read the SQLite database {shown}: permission denied (run coffer as a user who may read it)"
            ),
        ),
        _ => Error::io(format!("cannot open the SQLite database {shown}"), e),
    })?;
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(Error::io(format!("cannot read {shown}"), e)),
        }
    }
    // An empty file is an empty database, as SQLite sees it.
    if got > 0 && &head[..got] != HEADER.as_slice() {
        return Err(Error::invalid(format!(
            "{shown} is not a SQLite database (it lacks the \"SQLite format 3\" header; an encrypted database looks like this too)"
        )));
    }
    Ok(())
}

/// Opens the source database (never creating it), waiting for other processes' locks. Coffer
/// only reads, but opens read-write when it may: the last connection to close a WAL database
/// removes its `-wal` and `-shm` files, which a read-only connection would leave behind.
pub(super) fn open_source(file: &Path) -> Result<Connection> {
    let rw = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let ro = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(file, rw)
        .or_else(|_| Connection::open_with_flags(file, ro))
        .map_err(|e| sql_error("cannot open the SQLite database", file, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| sql_error("cannot set a busy timeout", file, e))?;
    Ok(conn)
}

/// Copies `file` into `dest` (a new, empty file) with the online backup API, inside one read
/// transaction on the source: the copy holds exactly one committed state, and a writer in
/// another process never makes the copy restart. `cancelled` is polled between steps.
pub(super) fn online_copy(
    file: &Path,
    dest: &Path,
    cancelled: &dyn Fn() -> bool,
) -> Result<CopyStats> {
    let started = Instant::now();
    let src = open_source(file)?;
    // Take the read lock (rollback journal) or the read snapshot (WAL) now, and hold it until
    // the last page is copied.
    src.execute_batch("BEGIN DEFERRED")
        .map_err(|e| sql_error("cannot start a read transaction", file, e))?;
    src.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| sql_error("cannot read the database", file, e))?;

    let mut dst =
        Connection::open(dest).map_err(|e| sql_error("cannot open the temporary copy", dest, e))?;
    dst.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
        .map_err(|e| sql_error("cannot set up the temporary copy", dest, e))?;
    let mut stats = CopyStats::default();
    {
        let backup = Backup::new(&src, &mut dst)
            .map_err(|e| sql_error("cannot start the online backup", file, e))?;
        let deadline = Instant::now() + BUSY_TIMEOUT;
        let mut last_remaining = i32::MAX;
        loop {
            if cancelled() {
                return Err(Error::new(
                    ErrorKind::Interrupted,
                    "the backup was interrupted",
                ));
            }
            // After repeated restarts (which the read transaction should rule out), copy the
            // rest in one step: that holds the lock for the whole copy and cannot restart.
            let pages = if stats.restarts >= 3 {
                -1
            } else {
                PAGES_PER_STEP
            };
            let step = backup
                .step(pages)
                .map_err(|e| sql_error("the online backup failed", file, e))?;
            stats.steps += 1;
            let p = backup.progress();
            if p.remaining > last_remaining {
                stats.restarts += 1;
            }
            last_remaining = p.remaining;
            stats.pages = p.pagecount.max(0) as u64;
            match step {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked => {
                    if Instant::now() > deadline {
                        return Err(Error::new(
                            ErrorKind::Source,
                            format!(
                                "the online backup of {} could not get a lock for {} s: another process keeps it locked",
                                file.display(),
                                BUSY_TIMEOUT.as_secs()
                            ),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
    }
    drop(dst);
    let _ = src.execute_batch("COMMIT");
    stats.journal_mode = src
        .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        .unwrap_or_default();
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// What [`online_copy`] did.
#[derive(Debug, Default, Clone)]
pub(super) struct CopyStats {
    /// Pages in the copy.
    pub pages: u64,
    /// Backup steps run.
    pub steps: u64,
    /// Times the backup started over because the source changed.
    pub restarts: u64,
    /// The source's journal mode (`wal`, `delete`, ...).
    pub journal_mode: String,
    /// How long the copy took.
    pub elapsed: Duration,
}
