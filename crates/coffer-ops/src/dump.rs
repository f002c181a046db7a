//! A database snapshot's plain dump (SQL for PostgreSQL and MySQL, the database file for
//! SQLite, the RDB file for Redis), written without any server, so that a restore never
//! depends on Coffer reaching one.

use crate::progress::{Phase, Progress};
use crate::repo::RepoSpec;
use crate::select::{resolve, SnapshotFilter};
use crate::CancellationToken;
use coffer_core::{Error, Id, Result};
use coffer_sources::database::{self, DbManifest, DumpRequest, Engine, StreamSource};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A dump.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// What `latest` chooses among.
    pub filter: SnapshotFilter,
    /// What to write: a database, tables, schema or data only.
    pub request: DumpRequest,
    /// Read without taking the repository's shared lock.
    pub no_lock: bool,
}

/// Where the dump goes.
pub enum DumpOutput<'a> {
    /// A file, written beside its final name and renamed into place once complete and synced
    /// (an interrupted dump leaves no file behind).
    File(PathBuf),
    /// A stream (standard output), flushed at the end.
    Writer(&'a mut (dyn Write + Send)),
}

/// What a dump wrote.
#[derive(Debug, Clone, Serialize)]
pub struct DumpReport {
    /// The snapshot dumped.
    pub snapshot_id: Id,
    /// Its engine.
    pub engine: String,
    /// Bytes written.
    pub bytes: u64,
    /// The file written, if one was.
    pub output: Option<PathBuf>,
}

/// Counts what passes through.
struct Counting<'a> {
    inner: &'a mut (dyn Write + Send),
    bytes: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the dump of `req.snapshot` (a database snapshot of the repository of `spec`) to
/// `output`.
pub async fn dump(
    spec: &RepoSpec,
    req: &Dump,
    output: DumpOutput<'_>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<DumpReport> {
    progress.phase(Phase::Opening);
    let (locked, snapshots) = spec.open_listed("dump", req.no_lock, progress).await?;
    locked
        .run(|repo| async move {
            let snap = resolve(&req.snapshot, snapshots, &req.filter)?;
            if Engine::from_kind(&snap.source.kind).is_none() {
                return Err(Error::usage(format!(
                    "snapshot {} holds files, not a database: use `coffer restore` or `coffer ls`",
                    snap.id.short()
                )));
            }
            let manifest = DbManifest::from_snapshot(&snap)?;
            let src = StreamSource::load(&repo, &snap).await?;
            progress.phase(Phase::Dumping);
            let (bytes, path) = match output {
                DumpOutput::Writer(w) => (
                    write_dump(w, &src, &manifest, &req.request, cancel).await,
                    None,
                ),
                DumpOutput::File(path) => {
                    let bytes = match PartialFile::create(&path) {
                        Ok(mut partial) => {
                            let r =
                                write_dump(&mut partial.out, &src, &manifest, &req.request, cancel)
                                    .await;
                            partial.finish(r)
                        }
                        Err(e) => Err(e),
                    };
                    (bytes, Some(path))
                }
            };
            let bytes =
                bytes.map_err(|e| e.context(format!("dumping snapshot {}", snap.id.short())))?;
            Ok(DumpReport {
                snapshot_id: snap.id,
                engine: manifest.engine.clone(),
                bytes,
                output: path,
            })
        })
        .await
}

/// Writes the dump to `out`; returns the bytes written.
async fn write_dump(
    out: &mut (dyn Write + Send),
    src: &StreamSource,
    manifest: &DbManifest,
    req: &DumpRequest,
    cancel: &CancellationToken,
) -> Result<u64> {
    let mut counting = Counting {
        inner: out,
        bytes: 0,
    };
    crate::or_cancelled(
        cancel,
        "the dump",
        database::dump(src, manifest, req, &mut counting),
    )
    .await?;
    counting
        .flush()
        .map_err(|e| Error::io("writing the dump", e))?;
    Ok(counting.bytes)
}

/// A file written beside its final name, renamed into place once complete and synced.
struct PartialFile {
    tmp: PathBuf,
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl PartialFile {
    /// Creates the temporary file beside `path`.
    fn create(path: &Path) -> Result<PartialFile> {
        let tmp = path.with_extension("coffer-partial");
        let file = std::fs::File::create(&tmp)
            .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
        Ok(PartialFile {
            tmp,
            path: path.to_path_buf(),
            out: std::io::BufWriter::with_capacity(1 << 20, file),
        })
    }

    /// After `written` succeeded: syncs the file and renames it into place. On any failure the
    /// temporary file is removed.
    fn finish(self, written: Result<u64>) -> Result<u64> {
        let tmp = self.tmp.clone();
        let result = written.and_then(|n| {
            let f = self.out.into_inner().map_err(|e| {
                Error::io(format!("writing {}", self.tmp.display()), e.into_error())
            })?;
            f.sync_all()
                .map_err(|e| Error::io(format!("syncing {}", self.tmp.display()), e))?;
            std::fs::rename(&self.tmp, &self.path).map_err(|e| {
                Error::io(
                    format!("renaming {} to {}", self.tmp.display(), self.path.display()),
                    e,
                )
            })?;
            Ok(n)
        });
        if result.is_err() {
            std::fs::remove_file(&tmp).ok();
        }
        result
    }
}
