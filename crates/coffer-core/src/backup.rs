//! The write side of a backup: blobs in, packs out.
//!
//! Callers (the sources) hand content to a [`BackupSession`] from any number of threads. Each
//! blob is identified, deduplicated against the index and the blobs in flight, compressed,
//! sealed into the current pack, and full packs are uploaded concurrently. Index files are
//! written every few packs and at the end; the snapshot is written last, so a crash at any
//! moment lists nothing partial, and packs already indexed are reused by the next backup.

use crate::backend::FileType;
use crate::chunker::{ChunkError, ChunkerParams};
use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use crate::index::{IndexFile, PackRecord};
use crate::pack::{BlobType, FinishedPack, PackWriter, PACK_TARGET_SIZE};
use crate::repository::{Indexed, Keyring, Repository};
use crate::snapshot::Snapshot;
use crate::tree::Tree;
use sha2::Digest;
use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, Semaphore};

/// Packs uploaded between two intermediate index files.
const PACKS_PER_INDEX: usize = 16;

/// Tuning of a backup session.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Pack uploads running at once.
    pub connections: usize,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions { connections: 4 }
    }
}

/// The content of one file or stream as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamContent {
    /// Chunk ids in order.
    pub chunks: Vec<Id>,
    /// SHA-256 of the whole content.
    pub sha256: [u8; 32],
    /// Bytes read.
    pub size: u64,
}

/// Counters of what a session stored.
#[derive(Debug, Default)]
pub struct SessionCounters {
    /// Sealed bytes of new blobs.
    pub bytes_added: AtomicU64,
    /// New blobs.
    pub blobs_added: AtomicU64,
    /// Bytes of content handed in.
    pub bytes_read: AtomicU64,
}

struct Shared {
    keys: Arc<Keyring>,
    index: Arc<RwLock<crate::index::Index>>,
    in_flight: Mutex<HashSet<Id>>,
    packers: [Mutex<Option<PackWriter>>; 2],
    /// Buffers of packs already uploaded, for the next packs (see [`SPARE_PACK_BUFFERS`]).
    spare_buffers: Mutex<Vec<Vec<u8>>>,
    failure: Mutex<Option<Error>>,
    failed: AtomicBool,
    cancelled: AtomicBool,
    counters: SessionCounters,
}

/// A running backup. Share it between threads with an `Arc`; end it with
/// [`BackupSession::finish`] (writes the snapshot) or [`BackupSession::abort`] (keeps the
/// uploaded data indexed, writes no snapshot).
pub struct BackupSession {
    shared: Arc<Shared>,
    /// The only sender of the upload queue: dropping it (in `finish`/`abort`) ends the uploader.
    uploads: mpsc::Sender<FinishedPack>,
    uploader: tokio::task::JoinHandle<Result<()>>,
    chunker: ChunkerParams,
}

impl Repository<Indexed> {
    /// Starts a backup session. Must be called inside a Tokio runtime.
    pub fn start_backup(&self, opts: BackupOptions) -> BackupSession {
        let (tx, rx) = mpsc::channel::<FinishedPack>(1);
        let shared = Arc::new(Shared {
            keys: self.keyring().clone(),
            index: self.shared_index().clone(),
            in_flight: Mutex::new(HashSet::new()),
            packers: [Mutex::new(None), Mutex::new(None)],
            spare_buffers: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            counters: SessionCounters::default(),
        });
        let uploader = tokio::spawn(upload_loop(shared.clone(), rx, opts.connections.max(1)));
        BackupSession {
            shared,
            uploads: tx,
            uploader,
            chunker: self.config().chunker,
        }
    }
}

impl Shared {
    fn fail(&self, e: Error) {
        let mut f = self.failure.lock().unwrap();
        if f.is_none() {
            *f = Some(e);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    fn check(&self) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            let f = self.failure.lock().unwrap();
            let msg = f.as_ref().map(|e| format!("{e:#}")).unwrap_or_default();
            let kind = f.as_ref().map(|e| e.kind()).unwrap_or(ErrorKind::Storage);
            return Err(Error::new(kind, format!("the backup stopped: {msg}")));
        }
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Interrupted,
                "the backup was interrupted",
            ));
        }
        Ok(())
    }
}

async fn write_index(keys: &Keyring, packs: Vec<PackRecord>) -> Result<()> {
    if packs.is_empty() {
        return Ok(());
    }
    keys.write_index_file(&IndexFile {
        supersedes: vec![],
        packs,
        pending: vec![],
    })
    .await
    .map(|_| ())
}

async fn upload_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<FinishedPack>,
    connections: usize,
) -> Result<()> {
    let sem = Arc::new(Semaphore::new(connections));
    let done: Arc<Mutex<Vec<PackRecord>>> = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(pack) = rx.recv().await {
        let permit = sem.clone().acquire_owned().await.expect("semaphore open");
        let (shared, done) = (shared.clone(), done.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let r = shared
                .keys
                .backend
                .write(FileType::Pack, &pack.id, pack.data.clone())
                .await;
            match r {
                Ok(()) => {
                    // Index first, then leave the in-flight set: a blob is never in neither.
                    shared
                        .index
                        .write()
                        .unwrap()
                        .add_pack(pack.id, pack.salt, &pack.entries);
                    {
                        let mut fl = shared.in_flight.lock().unwrap();
                        for e in &pack.entries {
                            fl.remove(&e.id);
                        }
                    }
                    let batch = {
                        let mut d = done.lock().unwrap();
                        d.push(PackRecord {
                            id: pack.id,
                            salt: pack.salt,
                            entries: pack.entries,
                        });
                        if d.len() >= PACKS_PER_INDEX {
                            std::mem::take(&mut *d)
                        } else {
                            Vec::new()
                        }
                    };
                    if let Err(e) = write_index(&shared.keys, batch).await {
                        shared.fail(e);
                    }
                }
                Err(e) => shared.fail(e.context(format!("uploading pack {}", pack.id.short()))),
            }
            shared.keep_buffer(pack.data);
        });
        while let Some(r) = tasks.try_join_next() {
            r.map_err(|e| Error::new(ErrorKind::Storage, format!("upload task failed: {e}")))?;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| Error::new(ErrorKind::Storage, format!("upload task failed: {e}")))?;
    }
    let rest = std::mem::take(&mut *done.lock().unwrap());
    // Index what was uploaded even if the backup failed: the next backup reuses it.
    write_index(&shared.keys, rest).await?;
    Ok(())
}

/// Buffers of uploaded packs kept for the next packs at most. A pack buffer is 20 MiB: a fresh
/// one is new memory the kernel must fault in and zero page by page (about a third of a first
/// backup's page faults before buffers were reused).
const SPARE_PACK_BUFFERS: usize = 2;

impl Shared {
    /// Keeps an uploaded pack's buffer for a next pack, if no one else holds it any more.
    fn keep_buffer(&self, data: bytes::Bytes) {
        let Ok(buf) = data.try_into_mut() else {
            return;
        };
        let mut buf = Vec::from(buf);
        let mut spare = self.spare_buffers.lock().unwrap();
        if spare.len() < SPARE_PACK_BUFFERS {
            buf.clear();
            spare.push(buf);
        }
    }

    /// A new pack writer, on a kept buffer when there is one.
    fn new_pack(&self) -> PackWriter {
        let buf = self.spare_buffers.lock().unwrap().pop();
        PackWriter::with_buffer(&self.keys.key, self.keys.encryption, buf)
    }
}

thread_local! {
    /// Each worker thread's buffer for a blob's compressed, framed bytes, reused for every blob.
    static FRAMED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl BackupSession {
    /// The chunk size parameters of this repository.
    pub fn chunker(&self) -> ChunkerParams {
        self.chunker
    }

    /// What has been stored so far.
    pub fn counters(&self) -> &SessionCounters {
        &self.shared.counters
    }

    /// Asks every thread to stop at its next blob (SIGINT).
    pub fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether [`BackupSession::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Whether the repository side failed (an upload or index write); the backup cannot succeed.
    pub fn has_failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Whether the blob is stored or being stored.
    pub fn has_blob(&self, id: &Id) -> bool {
        self.shared.index.read().unwrap().contains(id)
            || self.shared.in_flight.lock().unwrap().contains(id)
    }

    /// Stores one blob unless it is known; returns its id and whether it was new. Blocking:
    /// call from worker threads, not from async code.
    pub fn save_blob(&self, blob_type: BlobType, data: &[u8]) -> Result<(Id, bool)> {
        let s = &self.shared;
        s.check()?;
        let id = s.keys.key.blob_id(data);
        if s.index.read().unwrap().contains(&id) || !s.in_flight.lock().unwrap().insert(id) {
            return Ok((id, false));
        }
        let full = FRAMED.with(|cell| {
            let mut framed = cell.borrow_mut();
            framed.clear();
            s.keys.compression.encode_into(data, &mut framed);
            let mut slot = s.packers[blob_type as usize].lock().unwrap();
            let w = slot.get_or_insert_with(|| s.new_pack());
            let len = w.add(blob_type, id, &framed, data.len() as u32);
            s.counters
                .bytes_added
                .fetch_add(len as u64, Ordering::Relaxed);
            s.counters.blobs_added.fetch_add(1, Ordering::Relaxed);
            if w.size() >= PACK_TARGET_SIZE {
                slot.take()
            } else {
                None
            }
        });
        if let Some(w) = full {
            let pack = w.finish();
            self.uploads
                .blocking_send(pack)
                .map_err(|_| Error::new(ErrorKind::Storage, "the uploader stopped"))?;
            s.check()?;
        }
        Ok((id, true))
    }

    /// Reads a stream once: chunks it, hashes it with SHA-256, stores the new chunks. Blocking.
    pub fn save_stream<R: Read>(&self, reader: R) -> Result<StreamContent> {
        let mut sha = sha2::Sha256::new();
        let mut size = 0u64;
        let mut chunks = Vec::new();
        self.chunker
            .for_each(reader, |c| {
                sha.update(c);
                size += c.len() as u64;
                chunks.push(self.save_blob(BlobType::Data, c)?.0);
                Ok(())
            })
            .map_err(|e| match e {
                ChunkError::Read(e) => Error::io("reading the source", e),
                ChunkError::Sink(e) => e,
            })?;
        self.shared
            .counters
            .bytes_read
            .fetch_add(size, Ordering::Relaxed);
        Ok(StreamContent {
            chunks,
            sha256: sha.finalize().into(),
            size,
        })
    }

    /// Stores a tree blob. Blocking.
    pub fn save_tree(&self, tree: &Tree) -> Result<Id> {
        Ok(self.save_blob(BlobType::Tree, &tree.to_bytes())?.0)
    }

    /// Closes the open packs, waits for every upload and writes the last index file.
    async fn drain(self) -> Result<Arc<Shared>> {
        for slot in &self.shared.packers {
            let w = slot.lock().unwrap().take();
            if let Some(w) = w.filter(|w| !w.is_empty()) {
                if self.uploads.send(w.finish()).await.is_err() {
                    break; // the uploader ended early; its error is reported below
                }
            }
        }
        drop(self.uploads);
        let r = self
            .uploader
            .await
            .map_err(|e| Error::new(ErrorKind::Storage, format!("the uploader panicked: {e}")))?;
        r?;
        Ok(self.shared)
    }

    /// Flushes every pack and index, then writes the snapshot: the backup becomes visible only
    /// now. Fails, writing no snapshot, if any blob could not be stored or the session was
    /// cancelled. `snapshot.stats.bytes_added` and `blobs_added` are filled in here.
    pub async fn finish(self, mut snapshot: Snapshot) -> Result<Snapshot> {
        let shared = self.drain().await?;
        if shared.cancelled.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Interrupted,
                "the backup was interrupted; no snapshot was written",
            ));
        }
        if let Some(e) = shared.failure.lock().unwrap().take() {
            return Err(e.context("the backup failed; no snapshot was written"));
        }
        snapshot.stats.bytes_added = shared.counters.bytes_added.load(Ordering::Relaxed);
        snapshot.stats.blobs_added = shared.counters.blobs_added.load(Ordering::Relaxed);
        shared.keys.save_snapshot(&snapshot).await?;
        Ok(snapshot)
    }

    /// Like [`BackupSession::finish`], but writes the manifest exactly as given (copies keep the
    /// statistics of the original backup).
    pub async fn finish_as_is(self, snapshot: Snapshot) -> Result<Snapshot> {
        let shared = self.drain().await?;
        if let Some(e) = shared.failure.lock().unwrap().take() {
            return Err(e.context("the copy failed; no snapshot was written"));
        }
        shared.keys.save_snapshot(&snapshot).await?;
        Ok(snapshot)
    }

    /// Ends the session without a snapshot, keeping what was stored indexed so that the next
    /// backup reuses it (SIGINT, or a source error).
    pub async fn abort(self) -> Result<()> {
        self.drain().await.map(|_| ())
    }
}
