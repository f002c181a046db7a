//! Where a database source writes its streams: each stream becomes a file of the snapshot's
//! tree (chunked, deduplicated, SHA-256 checked like any file), so check, verify, ls, diff, copy
//! and forget treat database snapshots exactly as file snapshots.

use super::manifest::StreamInfo;
use bytes::Bytes;
use coffer_core::snapshot::SnapshotStats;
use coffer_core::tree::{Node, NodeKind, Tree};
use coffer_core::{BackupSession, Error, ErrorKind, Id, Result, StreamContent};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// Collects the named streams of one database backup.
pub struct StreamSink {
    session: Arc<BackupSession>,
    streams: Mutex<Vec<(String, StreamContent)>>,
    time_ns: i64,
}

/// Makes a string safe as one path component of a stream: `/`, `%` and control characters are
/// percent-encoded, so any table name maps to exactly one component and back.
pub fn component(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '/' || c == '%' || c.is_control() || (out.is_empty() && c == '.') {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

impl StreamSink {
    /// A sink writing into `session`.
    pub fn new(session: Arc<BackupSession>) -> Arc<StreamSink> {
        let time_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        Arc::new(StreamSink {
            session,
            streams: Mutex::new(Vec::new()),
            time_ns,
        })
    }

    /// The backup session (for its counters and cancellation flag).
    pub fn session(&self) -> &Arc<BackupSession> {
        &self.session
    }

    fn check_path(&self, path: &str) -> Result<()> {
        let ok = !path.is_empty()
            && path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !ok {
            return Err(Error::invalid(format!(
                "internal error: {path:?} is not a valid stream path"
            )));
        }
        Ok(())
    }

    fn record(&self, path: &str, content: StreamContent) -> Result<StreamContent> {
        let mut s = self.streams.lock().unwrap();
        if s.iter().any(|(p, _)| p == path) {
            return Err(Error::invalid(format!(
                "internal error: the stream {path:?} was written twice"
            )));
        }
        s.push((path.to_string(), content.clone()));
        Ok(content)
    }

    /// Stores a stream read from `reader` under `path` (`a/b/c`). Blocking: call it from a
    /// blocking thread, never on the async runtime.
    pub fn add_reader<R: Read>(&self, path: &str, reader: R) -> Result<StreamContent> {
        self.check_path(path)?;
        if self.session.is_cancelled() {
            return Err(Error::new(
                ErrorKind::Interrupted,
                "the backup was interrupted",
            ));
        }
        let content = self.session.save_stream(reader)?;
        self.record(path, content)
    }

    /// Stores a small stream held in memory. Blocking.
    pub fn add_bytes(&self, path: &str, data: &[u8]) -> Result<StreamContent> {
        self.add_reader(path, data)
    }

    /// Opens a stream for an async producer (a COPY, a socket): write [`Bytes`] to it, then
    /// `finish`. The chunking runs on a blocking thread; at most a few buffers are in flight.
    pub fn add_async(self: &Arc<Self>, path: &str) -> Result<AsyncStream> {
        self.check_path(path)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        let me = self.clone();
        let path = path.to_string();
        let task = tokio::task::spawn_blocking(move || {
            me.add_reader(
                &path,
                ChannelReader {
                    rx,
                    cur: Bytes::new(),
                },
            )
        });
        Ok(AsyncStream {
            tx: Some(tx),
            task: Some(task),
        })
    }

    /// Opens a stream for a blocking producer, as a [`Write`]r; call
    /// [`StreamWriter::finish`] at the end. The chunking runs on its own thread.
    pub fn add_writer(self: &Arc<Self>, path: &str) -> Result<StreamWriter> {
        self.check_path(path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let me = self.clone();
        let path = path.to_string();
        let thread = std::thread::Builder::new()
            .name("coffer-stream".into())
            .spawn(move || {
                me.add_reader(
                    &path,
                    VecChannelReader {
                        rx,
                        cur: Vec::new(),
                        pos: 0,
                    },
                )
            })
            .map_err(|e| Error::io("starting a stream thread", e))?;
        Ok(StreamWriter {
            tx: Some(tx),
            buf: Vec::with_capacity(WRITE_BUF),
            thread: Some(thread),
            failed: None,
        })
    }

    /// Writes the tree of every stream and returns its root, the stream list and the
    /// statistics. Blocking.
    pub fn finish(self: Arc<Self>) -> Result<(Id, Vec<StreamInfo>, SnapshotStats)> {
        let streams = std::mem::take(&mut *self.streams.lock().unwrap());
        let mut root = Dir::default();
        let mut stats = SnapshotStats::default();
        let mut infos = Vec::with_capacity(streams.len());
        for (path, content) in streams {
            stats.files += 1;
            stats.bytes_read += content.size;
            stats.total_bytes += content.size;
            stats.files_read += 1;
            let sha = hex::encode(content.sha256);
            infos.push(StreamInfo {
                path: path.clone(),
                size: content.size,
                sha256: sha.clone(),
            });
            let mut parts: Vec<&str> = path.split('/').collect();
            let name = parts.pop().expect("paths are not empty");
            let mut dir = &mut root;
            for p in parts {
                dir = dir.dirs.entry(p.to_string()).or_default();
            }
            let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
            node.mode = 0o600;
            node.mtime_ns = self.time_ns;
            node.size = content.size;
            node.content = content.chunks;
            node.sha256 = Some(sha);
            dir.files.push(node);
        }
        let root_id = self.write_dir(root, &mut stats)?;
        Ok((root_id, infos, stats))
    }

    fn write_dir(&self, dir: Dir, stats: &mut SnapshotStats) -> Result<Id> {
        stats.dirs += 1;
        let mut tree = Tree { nodes: dir.files };
        for (name, sub) in dir.dirs {
            let id = self.write_dir(sub, stats)?;
            let mut node = Node::new(name.into_bytes(), NodeKind::Dir);
            node.mode = 0o700;
            node.mtime_ns = self.time_ns;
            node.subtree = Some(id);
            tree.nodes.push(node);
        }
        tree.sort();
        if tree.nodes.windows(2).any(|w| w[0].name == w[1].name) {
            return Err(Error::invalid(
                "internal error: a stream and a folder of streams share a name",
            ));
        }
        self.session.save_tree(&tree)
    }
}

#[derive(Default)]
struct Dir {
    files: Vec<Node>,
    dirs: BTreeMap<String, Dir>,
}

struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// An open stream fed by async code. Dropping it without `finish` ends the stream early, so
/// always call `finish` (or `abort`) and handle its result.
pub struct AsyncStream {
    tx: Option<tokio::sync::mpsc::Sender<Bytes>>,
    task: Option<tokio::task::JoinHandle<Result<StreamContent>>>,
}

impl AsyncStream {
    /// Appends bytes. Fails with the consumer's error if the repository side stopped.
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let tx = self.tx.as_ref().expect("write after finish");
        if tx.send(data).await.is_err() {
            // The consumer ended early: report why.
            self.tx = None;
            let task = self.task.take().expect("one consumer");
            return match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) => Err(Error::new(ErrorKind::Storage, "the stream ended early")),
                Err(e) => Err(Error::new(
                    ErrorKind::Storage,
                    format!("the stream writer panicked: {e}"),
                )),
            };
        }
        Ok(())
    }

    /// Ends the stream and returns what was stored.
    pub async fn finish(mut self) -> Result<StreamContent> {
        self.tx = None;
        let task = self
            .task
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Storage, "the stream already failed"))?;
        task.await.map_err(|e| {
            Error::new(
                ErrorKind::Storage,
                format!("the stream writer panicked: {e}"),
            )
        })?
    }
}

const WRITE_BUF: usize = 256 * 1024;

struct VecChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for VecChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.cur = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// An open stream fed by blocking code, as a [`Write`]r.
pub struct StreamWriter {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    thread: Option<std::thread::JoinHandle<Result<StreamContent>>>,
    /// Why the repository side stopped, once a write found out (shared with the I/O errors
    /// the producer saw, which keep it as their cause so that its kind is not lost).
    failed: Option<Arc<Error>>,
}

/// The cause of a producer's failed write: the repository side stopped, for the reason below.
/// Its source is the repository side's own error, so a caller above the producer still finds
/// that error's kind (a full repository, say) with [`Error::has_kind`].
#[derive(Debug)]
struct RepositorySideStopped(Option<Arc<Error>>);

impl std::fmt::Display for RepositorySideStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the repository side of the stream stopped")
    }
}

impl std::error::Error for RepositorySideStopped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl StreamWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(WRITE_BUF));
        let Some(tx) = self.tx.as_ref() else {
            return Err(self.stopped());
        };
        if tx.send(full).is_ok() {
            return Ok(());
        }
        // The repository side ended early: its error (a full disk, say) is the cause the
        // producer must report, not the closed channel.
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            self.failed = Some(Arc::new(match thread.join() {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => Error::new(ErrorKind::Storage, "the stream ended before its data"),
                Err(_) => Error::new(ErrorKind::Storage, "the stream writer panicked"),
            }));
        }
        Err(self.stopped())
    }

    /// The I/O error a producer sees once the repository side has stopped, naming why.
    fn stopped(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            RepositorySideStopped(self.failed.clone()),
        )
    }

    /// Ends the stream and returns what was stored (or the repository side's error).
    pub fn finish(mut self) -> Result<StreamContent> {
        let sent = self.send();
        self.tx = None;
        if let Some(e) = self.failed.take() {
            // The repository side's own error; shared still by an I/O error the producer
            // kept, it is passed on as the cause of one with the same kind.
            return Err(Arc::try_unwrap(e).unwrap_or_else(|shared| {
                Error::new(shared.kind(), "the stream could not be stored")
                    .with_source(RepositorySideStopped(Some(shared)))
            }));
        }
        let thread = self.thread.take().expect("one consumer");
        let r = thread
            .join()
            .map_err(|_| Error::new(ErrorKind::Storage, "the stream writer panicked"))?;
        let content = r?;
        sent.map_err(|e| Error::io("writing a stream", e))?;
        Ok(content)
    }
}

impl Write for StreamWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_BUF {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::component;

    #[test]
    fn components_are_reversible_and_safe() {
        assert_eq!(component("users"), "users");
        assert_eq!(component("a/b"), "a%2Fb");
        assert_eq!(component("50%"), "50%25");
        assert_eq!(component(".."), "%2E.");
        assert_eq!(component("tab\tle"), "tab%09le");
        assert_eq!(component(""), "%00");
        assert_eq!(component("über 😀"), "über 😀");
    }
}
