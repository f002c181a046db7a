//! Per-blob compression. A blob's plaintext is `codec(1 byte) | payload`; a chunk that does not
//! shrink is stored with codec 0 (uncompressed), so incompressible data costs one byte.

use crate::error::{Error, Result};
use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

/// The compression a repository applies to new blobs, chosen at `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Store as is.
    None,
    /// Zstandard at a level (1..=22; default 3).
    Zstd(i32),
    /// LZ4 (block format, size-prefixed).
    Lz4,
    /// gzip at a level (0..=9; default 6).
    Gzip(u32),
    /// bzip2 at a level (1..=9; default 9).
    Bzip2(u32),
}

const CODEC_NONE: u8 = 0;
const CODEC_ZSTD: u8 = 1;
const CODEC_LZ4: u8 = 2;
const CODEC_GZIP: u8 = 3;
const CODEC_BZIP2: u8 = 4;

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd(3)
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => write!(f, "none"),
            Compression::Zstd(l) => write!(f, "zstd:{l}"),
            Compression::Lz4 => write!(f, "lz4"),
            Compression::Gzip(l) => write!(f, "gzip:{l}"),
            Compression::Bzip2(l) => write!(f, "bzip2:{l}"),
        }
    }
}

impl FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        let lvl = |default: i64, lo: i64, hi: i64| -> Result<i64> {
            match level {
                None => Ok(default),
                Some(l) => match l.parse::<i64>() {
                    Ok(v) if (lo..=hi).contains(&v) => Ok(v),
                    _ => Err(Error::invalid(format!(
                        "compression level {l:?} for {name} must be between {lo} and {hi}"
                    ))),
                },
            }
        };
        let c = match name.to_ascii_lowercase().as_str() {
            "none" if level.is_none() => Compression::None,
            "zstd" => Compression::Zstd(lvl(3, 1, 22)? as i32),
            "lz4" if level.is_none() => Compression::Lz4,
            "gzip" => Compression::Gzip(lvl(6, 0, 9)? as u32),
            "bzip2" => Compression::Bzip2(lvl(9, 1, 9)? as u32),
            _ => {
                return Err(Error::invalid(format!(
                    "unknown compression {s:?}: use zstd[:LEVEL], lz4, gzip[:LEVEL], bzip2[:LEVEL] or none"
                )))
            }
        };
        Ok(c)
    }
}

/// A thread's zstd compressor, for one level, with the buffer it compresses into (kept between
/// blobs: allocating a fresh chunk-sized buffer per blob made glibc return and re-fault the
/// memory each time).
type ZstdSlot = (i32, zstd::bulk::Compressor<'static>, Vec<u8>);

thread_local! {
    static ZSTD: std::cell::RefCell<Option<ZstdSlot>> = const { std::cell::RefCell::new(None) };
}

thread_local! {
    static ZSTD_D: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn zstd_decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    ZSTD_D.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        slot.as_mut().unwrap().decompress(data, capacity)
    })
}

/// Compresses `data` with zstd at `level` and, if that makes it smaller, appends the codec byte
/// and the compressed bytes to `out` and returns true.
fn zstd_encode_into(data: &[u8], level: i32, out: &mut Vec<u8>) -> bool {
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _, _)| *l) != Some(level) {
            match zstd::bulk::Compressor::new(level) {
                Ok(c) => *slot = Some((level, c, Vec::new())),
                Err(_) => return false,
            }
        }
        let (_, compressor, buf) = slot.as_mut().unwrap();
        buf.clear();
        buf.reserve(zstd::zstd_safe::compress_bound(data.len()));
        match compressor.compress_to_buffer(data, buf) {
            Ok(n) if n < data.len() => {
                out.push(CODEC_ZSTD);
                out.extend_from_slice(&buf[..n]);
                true
            }
            _ => false,
        }
    })
}

impl Compression {
    /// Compresses `data` and frames it; falls back to codec 0 when compression does not help.
    pub fn encode(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(data, &mut out);
        out
    }

    /// Appends `data`, compressed and framed as [`Compression::encode`] returns it, to `out`.
    /// With zstd nothing is allocated once the thread has compressed a blob of that size.
    pub fn encode_into(&self, data: &[u8], out: &mut Vec<u8>) {
        let packed: Option<(u8, Vec<u8>)> = match *self {
            Compression::None => None,
            Compression::Zstd(l) => {
                if zstd_encode_into(data, l, out) {
                    return;
                }
                None
            }
            Compression::Lz4 => Some((CODEC_LZ4, lz4_flex::compress_prepend_size(data))),
            Compression::Gzip(l) => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(l));
                e.write_all(data)
                    .and_then(|_| e.finish())
                    .ok()
                    .map(|v| (CODEC_GZIP, v))
            }
            Compression::Bzip2(l) => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(l));
                e.write_all(data)
                    .and_then(|_| e.finish())
                    .ok()
                    .map(|v| (CODEC_BZIP2, v))
            }
        };
        match packed {
            Some((codec, v)) if v.len() < data.len() => {
                out.push(codec);
                out.extend_from_slice(&v);
            }
            _ => {
                out.push(CODEC_NONE);
                out.extend_from_slice(data);
            }
        }
    }
}

/// Undoes [`Compression::encode`]. `max_len` bounds the output (a damaged or hostile blob cannot
/// make us allocate more); the result must be exactly `expected` bytes when given.
pub fn decode(framed: &[u8], expected: Option<usize>, max_len: usize) -> Result<Vec<u8>> {
    let (&codec, payload) = framed
        .split_first()
        .ok_or_else(|| Error::corrupt("empty blob (no codec byte)"))?;
    let bad = |e: std::io::Error| Error::corrupt(format!("blob does not decompress: {e}"));
    let out = match codec {
        CODEC_NONE => payload.to_vec(),
        CODEC_ZSTD => zstd_decompress(payload, expected.unwrap_or(max_len)).map_err(bad)?,
        CODEC_LZ4 => lz4_flex::decompress_size_prepended(payload)
            .map_err(|e| Error::corrupt(format!("blob does not decompress: {e}")))?,
        CODEC_GZIP => {
            let mut v = Vec::new();
            flate2::read::GzDecoder::new(payload)
                .take(max_len as u64 + 1)
                .read_to_end(&mut v)
                .map_err(bad)?;
            v
        }
        CODEC_BZIP2 => {
            let mut v = Vec::new();
            bzip2::read::BzDecoder::new(payload)
                .take(max_len as u64 + 1)
                .read_to_end(&mut v)
                .map_err(bad)?;
            v
        }
        c => return Err(Error::corrupt(format!("unknown compression codec {c}"))),
    };
    if out.len() > max_len || expected.is_some_and(|e| e != out.len()) {
        return Err(Error::corrupt(format!(
            "blob decompressed to {} bytes, expected {}",
            out.len(),
            expected
                .map(|e| e.to_string())
                .unwrap_or_else(|| format!("at most {max_len}"))
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all() -> Vec<Compression> {
        [
            "none", "zstd", "zstd:19", "lz4", "gzip", "gzip:1", "bzip2", "bzip2:1",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(0u8..4, 0..20000)) {
            for c in all() {
                let f = c.encode(&data);
                prop_assert!(f.len() <= data.len() + 1);
                prop_assert_eq!(decode(&f, Some(data.len()), 1 << 20).unwrap(), data.clone());
            }
        }
    }

    /// `encode_into` appends to what `out` holds, reusing a thread's buffers across blobs of
    /// varied sizes and kinds, and gives the bytes `encode` gives.
    #[test]
    fn encode_into_appends_what_encode_returns() {
        let mut noise = vec![0u8; 300_000];
        rand::fill(&mut noise[..]);
        let blobs: Vec<Vec<u8>> = vec![
            vec![5u8; 2_000_000],
            b"short".to_vec(),
            noise,
            (0..1_000_000u32).map(|i| (i % 7) as u8).collect(),
            Vec::new(),
        ];
        for c in all() {
            let mut out = b"lead".to_vec();
            for blob in &blobs {
                let before = out.len();
                c.encode_into(blob, &mut out);
                assert_eq!(&out[before..], &c.encode(blob)[..], "{c}");
                assert_eq!(
                    decode(&out[before..], Some(blob.len()), 4 << 20).unwrap(),
                    *blob
                );
            }
            assert_eq!(&out[..4], b"lead");
        }
    }

    #[test]
    fn incompressible_is_stored() {
        let mut data = vec![0u8; 4096];
        rand::fill(&mut data[..]);
        let f = Compression::default().encode(&data);
        assert_eq!(f[0], CODEC_NONE);
        assert_eq!(f.len(), data.len() + 1);
    }

    #[test]
    fn names_round_trip_and_errors() {
        for c in all() {
            assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
        }
        assert!("zstd:99".parse::<Compression>().is_err());
        assert!("brotli".parse::<Compression>().is_err());
    }

    #[test]
    fn bomb_is_bounded() {
        let data = vec![0u8; 1 << 20];
        let f = Compression::Zstd(3).encode(&data);
        assert!(decode(&f, None, 1000).is_err());
    }
}
