//! Reading a database snapshot's streams back: in order, a few chunks ahead, each stream's
//! SHA-256 and length checked at its end (a mismatch is an error, never silently restored).

use super::manifest::StreamInfo;
use bytes::Bytes;
use coffer_core::snapshot::Snapshot;
use coffer_core::tree::{Node, NodeKind};
use coffer_core::{BlobReader, Error, Id, Indexed, Repository, Result};
use futures::{Stream, StreamExt};
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::Read;

/// Chunks read ahead of the consumer, per stream.
const READ_AHEAD: usize = 4;

/// The streams of one database snapshot.
pub struct StreamSource {
    reader: BlobReader,
    streams: BTreeMap<String, Node>,
    snapshot: Id,
}

impl StreamSource {
    /// Loads the tree of `snap` (not its data).
    pub async fn load(repo: &Repository<Indexed>, snap: &Snapshot) -> Result<StreamSource> {
        let reader = repo.blob_reader();
        let mut streams = BTreeMap::new();
        let mut todo = vec![(String::new(), snap.tree)];
        while let Some((prefix, id)) = todo.pop() {
            let tree = reader.load_tree(&id).await?;
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

    /// Reads a whole (small) stream into memory: schemas, globals, lists.
    pub async fn read_all(&self, path: &str) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.node(path)?.size as usize);
        let mut chunks = Box::pin(self.chunks(path)?);
        while let Some(c) = chunks.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }
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
