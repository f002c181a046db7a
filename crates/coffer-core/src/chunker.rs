//! Content-defined chunking with FastCDC (2020), reading a stream once with bounded memory.

use serde::{Deserialize, Serialize};
use std::io::Read;

/// Chunk size bounds, stored in the repository config so that every client cuts alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk (except a stream's last).
    pub min_size: u32,
    /// Target average chunk size.
    pub avg_size: u32,
    /// Largest chunk: bounds the memory one stream holds.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 512 KiB / 1 MiB / 4 MiB: see `docs/format.md` and `bench/chunker.sh` for the measurement.
    fn default() -> Self {
        ChunkerParams {
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 4 * 1024 * 1024,
        }
    }
}

thread_local! {
    /// One read buffer per thread, reused for every stream (allocating and zeroing a fresh
    /// multi-MiB buffer per small file cost a quarter of a backup's CPU).
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl ChunkerParams {
    /// Iterates over the chunks of `reader`. Each item is one chunk's bytes; memory held is at
    /// most `max_size` plus one chunk. Kept as the reference for [`ChunkerParams::for_each`].
    pub fn chunks<R: Read>(&self, reader: R) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
        fastcdc::v2020::StreamCDC::new(
            reader,
            self.min_size as usize,
            self.avg_size as usize,
            self.max_size as usize,
        )
        .map(|r| {
            r.map(|c| c.data).map_err(|e| match e {
                fastcdc::v2020::Error::IoError(e) => e,
                other => std::io::Error::other(other.to_string()),
            })
        })
    }

    /// Reads `reader` once and calls `f` with each chunk, in order. Cuts exactly where
    /// [`ChunkerParams::chunks`] does (FastCDC 2020 over at most `max_size` buffered bytes), but
    /// reuses one buffer per thread. Read errors come back as `Err(Left)`, `f`'s as `Err(Right)`.
    pub fn for_each<R: Read, E>(
        &self,
        mut reader: R,
        mut f: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), ChunkError<E>> {
        let max = self.max_size as usize;
        BUFFER.with(|cell| {
            let mut buf = cell.borrow_mut();
            if buf.len() < 2 * max {
                buf.resize(2 * max, 0);
            }
            let (mut len, mut eof) = (0usize, false);
            loop {
                while len < buf.len() && !eof {
                    match reader.read(&mut buf[len..]) {
                        Ok(0) => eof = true,
                        Ok(n) => len += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(ChunkError::Read(e)),
                    }
                }
                if len == 0 {
                    return Ok(());
                }
                let cdc = fastcdc::v2020::FastCDC::new(
                    &buf[..len],
                    self.min_size as usize,
                    self.avg_size as usize,
                    max,
                );
                let mut start = 0;
                while start < len && (eof || len - start >= max) {
                    let (_, end) = cdc.cut(start, (len - start).min(max));
                    f(&buf[start..end]).map_err(ChunkError::Sink)?;
                    start = end;
                }
                buf.copy_within(start..len, 0);
                len -= start;
                if eof && len == 0 {
                    return Ok(());
                }
            }
        })
    }
}

/// Why [`ChunkerParams::for_each`] stopped.
#[derive(Debug)]
pub enum ChunkError<E> {
    /// Reading the source failed.
    Read(std::io::Error),
    /// The callback failed.
    Sink(E),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn chunks_concatenate_to_input(len in 0usize..3_000_000, seed in any::<u64>()) {
            let p = ChunkerParams { min_size: 64 * 1024, avg_size: 256 * 1024, max_size: 1024 * 1024 };
            let mut data = vec![0u8; len];
            let mut x = seed | 1;
            for b in data.iter_mut() { x ^= x << 13; x ^= x >> 7; x ^= x << 17; *b = x as u8; }
            let chunks: Vec<Vec<u8>> = p.chunks(&data[..]).map(|c| c.unwrap()).collect();
            prop_assert_eq!(chunks.concat(), data.clone());
            for (i, c) in chunks.iter().enumerate() {
                prop_assert!(c.len() <= p.max_size as usize);
                if i + 1 < chunks.len() { prop_assert!(c.len() >= p.min_size as usize); }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn for_each_cuts_like_stream_cdc(len in 0usize..3_000_000, seed in any::<u64>(), small_reads in any::<bool>()) {
            let p = ChunkerParams { min_size: 64 * 1024, avg_size: 256 * 1024, max_size: 1024 * 1024 };
            let mut data = vec![0u8; len];
            let mut x = seed | 1;
            for b in data.iter_mut() { x ^= x << 13; x ^= x >> 7; x ^= x << 17; *b = x as u8; }
            let want: Vec<Vec<u8>> = p.chunks(&data[..]).map(|c| c.unwrap()).collect();
            let mut got: Vec<Vec<u8>> = Vec::new();
            // A reader that returns short reads, as pipes and sockets do.
            struct Dribble<'a>(&'a [u8], bool);
            impl Read for Dribble<'_> {
                fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                    let n = if self.1 { b.len().min(self.0.len()).min(7777) } else { b.len().min(self.0.len()) };
                    b[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            p.for_each(Dribble(&data, small_reads), |c| { got.push(c.to_vec()); Ok::<(), ()>(()) }).unwrap();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn insertion_shifts_few_chunks() {
        let p = ChunkerParams {
            min_size: 16 * 1024,
            avg_size: 64 * 1024,
            max_size: 256 * 1024,
        };
        let mut data = vec![0u8; 4_000_000];
        let mut x = 12345u64;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let a: std::collections::HashSet<Vec<u8>> =
            p.chunks(&data[..]).map(|c| c.unwrap()).collect();
        data.splice(2_000_000..2_000_000, b"inserted bytes".iter().copied());
        let b: Vec<Vec<u8>> = p.chunks(&data[..]).map(|c| c.unwrap()).collect();
        let changed = b.iter().filter(|c| !a.contains(*c)).count();
        assert!(
            changed <= 2,
            "{changed} chunks changed after a small insertion"
        );
    }
}
