//! Reading a database snapshot's streams back: in order, a few chunks ahead, each stream's
//! SHA-256 and length checked at its end (a mismatch is an error, never silently restored).

use super::manifest::StreamInfo;
use bytes::Bytes;
use coffer_core::snapshot::Snapshot;
use coffer_core::tree::{Node, NodeKind};
use coffer_core::{BlobReader, Error, ErrorKind, Id, Indexed, Repository, Result};
use futures::{Stream, StreamExt};
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::Read;

/// Chunks read ahead of the consumer, per stream.
const READ_AHEAD: usize = 4;

/// The most entries (streams and folders) a database snapshot's tree may hold: one stream per
/// table (and per table's triggers) of every database, with room to spare.
pub const MAX_ENTRIES: u64 = 4 << 20;

/// The streams of one database snapshot.
pub struct StreamSource {
    reader: BlobReader,
    streams: BTreeMap<String, Node>,
    snapshot: Id,
}

impl StreamSource {
    /// Loads the tree of `snap` (not its data).
    pub async fn load(repo: &Repository<Indexed>, snap: &Snapshot) -> Result<StreamSource> {
        Self::load_capped(repo, snap, MAX_ENTRIES).await
    }

    async fn load_capped(
        repo: &Repository<Indexed>,
        snap: &Snapshot,
        max_entries: u64,
    ) -> Result<StreamSource> {
        let reader = repo.blob_reader();
        let mut streams = BTreeMap::new();
        let mut todo = vec![(String::new(), snap.tree)];
        // Identical folders share one tree, so a forged snapshot could name a few trees over
        // and over to spell out more entries than memory holds: their number is capped.
        let mut entries: u64 = 0;
        while let Some((prefix, id)) = todo.pop() {
            let tree = reader.load_tree(&id).await?;
            entries += tree.nodes.len() as u64;
            if entries > max_entries {
                return Err(Error::corrupt(format!(
                    "the tree of snapshot {} holds more than {max_entries} entries, the most a \
                     database snapshot has: it is damaged or forged",
                    snap.id.short()
                )));
            }
            for node in tree.nodes {
                let name = node.name.lossy();
                let path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                match node.kind {
                    NodeKind::Dir => {
                        let sub = node
                            .subtree
                            .ok_or_else(|| Error::corrupt(format!("folder {path} has no tree")))?;
                        todo.push((path, sub));
                    }
                    NodeKind::File => {
                        streams.insert(path, node);
                    }
                    _ => {}
                }
            }
        }
        Ok(StreamSource {
            reader,
            streams,
            snapshot: snap.id,
        })
    }

    /// Every stream path, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.streams.keys().map(String::as_str)
    }

    /// Whether the snapshot has this stream.
    pub fn contains(&self, path: &str) -> bool {
        self.streams.contains_key(path)
    }

    /// A stream's size and SHA-256.
    pub fn info(&self, path: &str) -> Option<StreamInfo> {
        self.streams.get(path).map(|n| StreamInfo {
            path: path.to_string(),
            size: n.size,
            sha256: n.sha256.clone().unwrap_or_default(),
        })
    }

    fn node(&self, path: &str) -> Result<&Node> {
        self.streams.get(path).ok_or_else(|| {
            Error::corrupt(format!(
                "snapshot {} lacks the stream {path} its manifest lists",
                self.snapshot.short()
            ))
        })
    }

    /// The stream's content as async chunks, read ahead. The last item is an error if the
    /// content does not match the stored length and SHA-256. Call inside a Tokio runtime.
    pub fn chunks(&self, path: &str) -> Result<impl Stream<Item = Result<Bytes>> + Send + 'static> {
        let node = self.node(path)?.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(READ_AHEAD);
        let reader = self.reader.clone();
        let path = path.to_string();
        let snapshot = self.snapshot;
        tokio::spawn(async move {
            let mut sha = sha2::Sha256::new();
            let mut size = 0u64;
            let mut blobs = futures::stream::iter(node.content.clone())
                .map(|id| {
                    let r = reader.clone();
                    async move { r.read_blob(&id).await }
                })
                .buffered(READ_AHEAD);
            while let Some(b) = blobs.next().await {
                match b {
                    Ok(data) => {
                        sha.update(&data);
                        size += data.len() as u64;
                        if size > node.size {
                            // A forged tree (one blob listed over and over) stops here, not
                            // after streaming without end.
                            let _ = tx
                                .send(Err(Error::corrupt(format!(
                                    "the stream {path} of snapshot {} holds more than the {} bytes its tree states",
                                    snapshot.short(),
                                    node.size
                                ))))
                                .await;
                            return;
                        }
                        if tx.send(Ok(Bytes::from(data))).await.is_err() {
                            return; // the consumer stopped
                        }
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Err(e.context(format!("reading the stream {path}"))))
                            .await;
                        return;
                    }
                }
            }
            let got = hex::encode(sha.finalize());
            let want = node.sha256.as_deref().unwrap_or_default();
            if size != node.size || (!want.is_empty() && got != want) {
                let _ = tx
                    .send(Err(Error::corrupt(format!(
                        "the stream {path} of snapshot {} does not match its checksum (SHA-256 {got}, {size} bytes; expected {want}, {} bytes)",
                        snapshot.short(),
                        node.size
                    ))))
                    .await;
            }
        });
        Ok(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    /// The stream as a blocking reader (for child processes and blocking writers). Create it
    /// inside a Tokio runtime; read it from a blocking thread. A checksum mismatch surfaces as
    /// an `InvalidData` error at the end.
    pub fn reader(&self, path: &str) -> Result<StreamReader> {
        let mut chunks = Box::pin(self.chunks(path)?);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Bytes>>(1);
        tokio::spawn(async move {
            while let Some(item) = chunks.next().await {
                let stop = item.is_err();
                let tx = tx.clone();
                let sent = tokio::task::spawn_blocking(move || tx.send(item).is_ok())
                    .await
                    .unwrap_or(false);
                if !sent || stop {
                    return;
                }
            }
        });
        Ok(StreamReader {
            rx,
            cur: Bytes::new(),
        })
    }

    /// Reads a whole (small) stream into memory: schemas, globals, lists. A stream larger than
    /// [`MAX_IN_MEMORY`] is refused.
    pub async fn read_all(&self, path: &str) -> Result<Vec<u8>> {
        let size = self.node(path)?.size;
        collect(path, size, self.chunks(path)?, MAX_IN_MEMORY).await
    }
}

/// The largest stream [`StreamSource::read_all`] holds in memory (a schema, a list of roles):
/// far above any real one, and a bound on what a damaged or forged snapshot can make Coffer
/// allocate.
pub const MAX_IN_MEMORY: u64 = 1 << 30;

/// The most room reserved before a stream's bytes arrive; beyond it, room grows with them.
const RESERVE: u64 = 16 << 20;

/// Gathers `chunks`, a stream stored as `stated` bytes, refusing a stream over `limit` bytes and
/// one that brings more bytes than it states (its checksum would fail at its end anyway).
async fn collect(
    path: &str,
    stated: u64,
    chunks: impl Stream<Item = Result<Bytes>>,
    limit: u64,
) -> Result<Vec<u8>> {
    if stated > limit {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the stream {path} is {stated} bytes; Coffer reads streams of this kind into \
                 memory, up to {limit} bytes"
            ),
        ));
    }
    let mut out = Vec::with_capacity(stated.min(RESERVE) as usize);
    let mut chunks = Box::pin(chunks);
    while let Some(c) = chunks.next().await {
        let c = c?;
        if (out.len() + c.len()) as u64 > stated {
            return Err(Error::corrupt(format!(
                "the stream {path} holds more than the {stated} bytes its tree states"
            )));
        }
        out.extend_from_slice(&c);
    }
    Ok(out)
}

/// A blocking reader over one stream.
pub struct StreamReader {
    rx: std::sync::mpsc::Receiver<Result<Bytes>>,
    cur: Bytes,
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.recv() {
                Ok(Ok(b)) => self.cur = b,
                Ok(Err(e)) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes>> {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    /// A snapshot whose root names one folder tree three times, which names one tree of three
    /// files three times: 3 + 9 + 27 entries from three stored trees.
    #[tokio::test(flavor = "multi_thread")]
    async fn trees_that_repeat_folders_are_walked_within_a_cap() {
        use coffer_core::keyfile::KdfParams;
        use coffer_core::memory::MemoryBackend;
        use coffer_core::snapshot::SourceInfo;
        use coffer_core::tree::Tree;
        use coffer_core::{BackupOptions, InitOptions};
        use std::sync::Arc;

        let be = Arc::new(MemoryBackend::new());
        let opts = InitOptions {
            kdf: KdfParams {
                m_cost: 64,
                t_cost: 1,
                p_cost: 1,
            },
            ..Default::default()
        };
        let repo = Repository::new(be.clone())
            .init(b"pw", opts)
            .await
            .unwrap()
            .load_index()
            .await
            .unwrap();
        let session = repo.start_backup(BackupOptions::default());
        let tree = |kind: NodeKind, sub: Option<Id>| {
            let mut t = Tree::default();
            for name in ["a", "b", "c"] {
                let mut n = Node::new(name.as_bytes().to_vec(), kind);
                n.subtree = sub;
                t.nodes.push(n);
            }
            t
        };
        let (session, root) = tokio::task::spawn_blocking(move || {
            let files = session.save_tree(&tree(NodeKind::File, None)).unwrap();
            let mid = session
                .save_tree(&tree(NodeKind::Dir, Some(files)))
                .unwrap();
            let root = session.save_tree(&tree(NodeKind::Dir, Some(mid))).unwrap();
            (session, root)
        })
        .await
        .unwrap();
        let source = SourceInfo {
            kind: "sqlite".into(),
            location: "test".into(),
            paths: vec![],
        };
        let snap = session.finish(Snapshot::new(source, root)).await.unwrap();
        let repo = Repository::new(be)
            .open(b"pw")
            .await
            .unwrap()
            .load_index()
            .await
            .unwrap();
        let src = StreamSource::load_capped(&repo, &snap, 39).await.unwrap();
        assert_eq!(src.paths().count(), 27);
        assert!(src.contains("b/c/a"));
        let e = StreamSource::load_capped(&repo, &snap, 38)
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("more than 38 entries"), "{e}");
    }

    #[test]
    fn in_memory_reads_are_capped_by_the_stated_size_and_the_limit() {
        let got = run(collect("s", 6, chunks(&[b"abc", b"def"]), 10)).unwrap();
        assert_eq!(got, b"abcdef");
        // A stated size over the limit is refused before anything is read or reserved.
        let e = run(collect("big", u64::MAX, chunks(&[b"abc"]), 10)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("up to 10 bytes"), "{e}");
        // More bytes than stated (a forged tree whose content repeats a blob) stop the read.
        let e = run(collect("s", 4, chunks(&[b"abc", b"def"]), 10)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("more than the 4 bytes"), "{e}");
    }
}
