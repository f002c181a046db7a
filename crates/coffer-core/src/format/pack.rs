//! Pack files: many sealed blobs followed by a sealed trailer that lists them, so the index can
//! be rebuilt from packs alone.
//!
//! Layout: `blob_0 | blob_1 | ... | trailer | salt(32) | trailer_len(u32 LE) | "CFPACK01"`.
//! Security rules 1 and 2 (see `crypto.rs`) are enforced here: each pack draws a fresh random
//! salt, so its subkey seals exactly one pack; inside it, a blob's nonce is its byte offset,
//! which is unique within the pack, and the trailer's nonce has a form no offset can take.

use crate::crypto::{Cipher, Encryption, MasterKey};
use crate::error::{Error, Result};
use crate::id::Id;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Trailing magic of every pack (format version 1).
pub const PACK_MAGIC: &[u8; 8] = b"CFPACK01";
/// Length of the fixed footer: salt, trailer length, magic.
pub const FOOTER_LEN: usize = 32 + 4 + 8;
/// A pack is closed once it holds this many bytes (packs end up 16 to 32 MiB).
pub const PACK_TARGET_SIZE: usize = 16 * 1024 * 1024;
/// Bytes of one trailer record: type, id, offset, length, uncompressed length.
const TRAILER_RECORD: usize = 1 + 32 + 4 + 4 + 4;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum BlobType {
    /// A chunk of file or stream content.
    Data = 0,
    /// A serialized directory ([`crate::tree::Tree`]).
    Tree = 1,
}

impl BlobType {
    /// Parses the on-disk byte.
    pub fn from_u8(b: u8) -> Result<BlobType> {
        match b {
            0 => Ok(BlobType::Data),
            1 => Ok(BlobType::Tree),
            _ => Err(Error::corrupt(format!("unknown blob type {b}"))),
        }
    }
}

/// The most bytes one read of neighbouring blobs spans (see [`read_windows`]).
pub const READ_WINDOW: u64 = 8 * 1024 * 1024;

/// Groups `entries` (sorted by offset) into runs of neighbours spanning at most `max` bytes,
/// so that a pack is read in a few requests of bounded size and never whole (a blob longer
/// than `max` is a run of its own). Each run: the indices of its entries, and the first and
/// past-the-end byte offsets it covers in the pack.
pub fn read_windows(entries: &[PackEntry], max: u64) -> Vec<(std::ops::Range<usize>, u64, u64)> {
    let end_of = |e: &PackEntry| e.offset as u64 + e.length as u64;
    let mut runs = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let start = entries[i].offset as u64;
        let mut j = i + 1;
        while j < entries.len() && end_of(&entries[j]) - start <= max {
            j += 1;
        }
        runs.push((i..j, start, end_of(&entries[j - 1])));
        i = j;
    }
    runs
}

/// One blob's place in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// Data or tree.
    pub blob_type: BlobType,
    /// The blob's id (keyed BLAKE3 of its uncompressed content).
    pub id: Id,
    /// Byte offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the blob's content once opened and decompressed.
    pub ulen: u32,
}

/// A blob's nonce: its offset, in a form (last four bytes zero) the trailer's never takes.
pub fn blob_nonce(offset: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&(offset as u64).to_le_bytes());
    n
}

const TRAILER_NONCE: [u8; 12] = [0xff; 12];

/// The associated data of a blob: its type and id (security rule 3).
pub fn blob_aad(blob_type: BlobType, id: &Id) -> [u8; 33] {
    let mut a = [0u8; 33];
    a[0] = blob_type as u8;
    a[1..].copy_from_slice(&id.0);
    a
}

/// Builds one pack in memory.
pub struct PackWriter {
    buf: Vec<u8>,
    salt: [u8; 32],
    cipher: Cipher,
    entries: Vec<PackEntry>,
}

/// A closed pack, ready to upload.
pub struct FinishedPack {
    /// SHA-256 of `data`: the pack's name.
    pub id: Id,
    /// The whole pack.
    pub data: Bytes,
    /// The salt its subkey was derived from.
    pub salt: [u8; 32],
    /// The blobs it holds.
    pub entries: Vec<PackEntry>,
}

impl PackWriter {
    /// A new empty pack with a fresh salt (rule 1: one subkey per pack).
    pub fn new(key: &MasterKey, alg: Encryption) -> Self {
        Self::with_buffer(key, alg, None)
    }

    /// A new empty pack with a fresh salt (rule 1), built in `buf` (emptied first) when given,
    /// so that a buffer of an uploaded pack serves again.
    pub fn with_buffer(key: &MasterKey, alg: Encryption, buf: Option<Vec<u8>>) -> Self {
        let mut salt = [0u8; 32];
        rand::fill(&mut salt);
        let mut buf = buf.unwrap_or_default();
        buf.clear();
        buf.reserve(PACK_TARGET_SIZE + 4 * 1024 * 1024);
        PackWriter {
            buf,
            salt,
            cipher: key.cipher(alg, &salt),
            entries: Vec::new(),
        }
    }

    /// Seals and appends one blob whose framed plaintext (codec byte + payload) is given.
    /// Rule 2: the nonce is the blob's offset, unique in this pack.
    pub fn add(&mut self, blob_type: BlobType, id: Id, framed: &[u8], ulen: u32) -> u32 {
        let start = self.buf.len();
        let offset = u32::try_from(start).expect("packs stay far below 4 GiB");
        self.buf.extend_from_slice(framed);
        self.cipher.seal_append(
            &blob_nonce(offset),
            &blob_aad(blob_type, &id),
            &mut self.buf,
            start,
        );
        let length = (self.buf.len() - start) as u32;
        self.entries.push(PackEntry {
            blob_type,
            id,
            offset,
            length,
            ulen,
        });
        length
    }

    /// Bytes written so far.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the trailer and footer and names the pack by its SHA-256.
    pub fn finish(mut self) -> FinishedPack {
        let mut t = Vec::with_capacity(4 + self.entries.len() * TRAILER_RECORD);
        t.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            t.push(e.blob_type as u8);
            t.extend_from_slice(&e.id.0);
            t.extend_from_slice(&e.offset.to_le_bytes());
            t.extend_from_slice(&e.length.to_le_bytes());
            t.extend_from_slice(&e.ulen.to_le_bytes());
        }
        let sealed = self.cipher.seal(&TRAILER_NONCE, b"coffer pack trailer", &t);
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&self.salt);
        self.buf
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(PACK_MAGIC);
        let data = Bytes::from(self.buf);
        FinishedPack {
            id: Id::sha256(&data),
            data,
            salt: self.salt,
            entries: self.entries,
        }
    }
}

/// Parses a pack's footer (its last [`FOOTER_LEN`] bytes): the salt and the trailer length.
pub fn parse_footer(footer: &[u8]) -> Result<([u8; 32], u32)> {
    if footer.len() != FOOTER_LEN || &footer[36..] != PACK_MAGIC {
        return Err(Error::corrupt(
            "pack footer is missing or damaged (no CFPACK01 magic)",
        ));
    }
    let salt: [u8; 32] = footer[..32].try_into().unwrap();
    let len = u32::from_le_bytes(footer[32..36].try_into().unwrap());
    Ok((salt, len))
}

/// Opens a pack's trailer and returns its entries.
pub fn decode_trailer(
    key: &MasterKey,
    alg: Encryption,
    salt: &[u8; 32],
    sealed: &[u8],
) -> Result<Vec<PackEntry>> {
    let t = key
        .cipher(alg, salt)
        .open(&TRAILER_NONCE, b"coffer pack trailer", sealed)
        .map_err(|e| e.context("pack trailer"))?;
    let n = u32::from_le_bytes(
        t.get(..4)
            .ok_or_else(|| Error::corrupt("empty pack trailer"))?
            .try_into()
            .unwrap(),
    ) as usize;
    if t.len() != 4 + n * TRAILER_RECORD {
        return Err(Error::corrupt("pack trailer has the wrong length"));
    }
    t[4..]
        .chunks_exact(TRAILER_RECORD)
        .map(|r| {
            Ok(PackEntry {
                blob_type: BlobType::from_u8(r[0])?,
                id: Id(r[1..33].try_into().unwrap()),
                offset: u32::from_le_bytes(r[33..37].try_into().unwrap()),
                length: u32::from_le_bytes(r[37..41].try_into().unwrap()),
                ulen: u32::from_le_bytes(r[41..45].try_into().unwrap()),
            })
        })
        .collect()
}

/// Opens one sealed blob read from a pack and returns its content, checking its length.
pub fn open_blob(
    key: &MasterKey,
    alg: Encryption,
    salt: &[u8; 32],
    entry: &PackEntry,
    sealed: &[u8],
) -> Result<Vec<u8>> {
    let framed = key.cipher(alg, salt).open(
        &blob_nonce(entry.offset),
        &blob_aad(entry.blob_type, &entry.id),
        sealed,
    )?;
    let ulen = entry.ulen as usize;
    crate::compression::decode(&framed, Some(ulen), ulen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::Compression;
    use proptest::prelude::*;

    #[test]
    fn read_windows_group_neighbours_up_to_the_limit() {
        let e = |offset: u32, length: u32| PackEntry {
            blob_type: BlobType::Data,
            id: Id::ZERO,
            offset,
            length,
            ulen: length,
        };
        // 0..4, 4..8 and 8..10 fit in 10 bytes; 10..30 is larger than the limit, alone.
        let entries = [e(0, 4), e(4, 4), e(8, 2), e(10, 20), e(30, 5)];
        assert_eq!(
            read_windows(&entries, 10),
            vec![(0..3, 0, 10), (3..4, 10, 30), (4..5, 30, 35)]
        );
        assert!(read_windows(&[], 10).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn pack_round_trip(blobs in proptest::collection::vec(proptest::collection::vec(0u8..8, 0..3000), 1..20)) {
            let key = MasterKey::generate();
            let alg = Encryption::Aes256Gcm;
            let mut w = PackWriter::new(&key, alg);
            for (i, b) in blobs.iter().enumerate() {
                let t = if i % 2 == 0 { BlobType::Data } else { BlobType::Tree };
                w.add(t, key.blob_id(b), &Compression::default().encode(b), b.len() as u32);
            }
            let p = w.finish();
            prop_assert_eq!(Id::sha256(&p.data), p.id);
            let (salt, tlen) = parse_footer(&p.data[p.data.len() - FOOTER_LEN..]).unwrap();
            let tstart = p.data.len() - FOOTER_LEN - tlen as usize;
            let entries = decode_trailer(&key, alg, &salt, &p.data[tstart..p.data.len() - FOOTER_LEN]).unwrap();
            prop_assert_eq!(&entries, &p.entries);
            for (e, b) in entries.iter().zip(&blobs) {
                let s = &p.data[e.offset as usize..(e.offset + e.length) as usize];
                prop_assert_eq!(&open_blob(&key, alg, &salt, e, s).unwrap(), b);
                let mut swapped = *e;
                swapped.blob_type = if e.blob_type == BlobType::Data { BlobType::Tree } else { BlobType::Data };
                prop_assert!(open_blob(&key, alg, &salt, &swapped, s).is_err());
            }
        }
    }
}
