//! Channels between async code (the replication socket, the repository's streams, stdout) and
//! the blocking RDB parser, and the reading of a snapshot's RDB segments in order.

use super::rdb::RdbSink;
use crate::database::StreamSource;
use bytes::Bytes;
use coffer_core::Result;
use futures::StreamExt;
use std::io::{Read, Write};

/// A blocking reader over bytes sent by async code; an `Err` item becomes a read error.
pub struct ChanReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes>>,
    cur: Bytes,
}

/// A channel whose receiving end is a [`ChanReader`].
pub fn chan_reader(capacity: usize) -> (tokio::sync::mpsc::Sender<Result<Bytes>>, ChanReader) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    (
        tx,
        ChanReader {
            rx,
            cur: Bytes::new(),
        },
    )
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// A blocking writer feeding an async consumer, 256 KiB at a time.
pub struct ChanWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChanWriter {
    /// A writer sending into `tx`.
    pub fn new(tx: tokio::sync::mpsc::Sender<Vec<u8>>) -> ChanWriter {
        ChanWriter {
            tx,
            buf: Vec::new(),
        }
    }
}

impl Write for ChanWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let b = std::mem::take(&mut self.buf);
        self.tx
            .blocking_send(b)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "output closed"))
    }
}

impl RdbSink for ChanWriter {}

/// Sends the bytes of `segments` (in order: together they are the RDB file) to `tx`. A read
/// or checksum error is sent on as the last item, so the parser fails with it.
pub async fn forward_segments(
    src: &StreamSource,
    segments: &[String],
    tx: tokio::sync::mpsc::Sender<Result<Bytes>>,
) {
    for seg in segments {
        let chunks = match src.chunks(seg) {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let mut chunks = Box::pin(chunks);
        while let Some(c) = chunks.next().await {
            let stop = c.is_err();
            if tx.send(c).await.is_err() || stop {
                return;
            }
        }
    }
}
