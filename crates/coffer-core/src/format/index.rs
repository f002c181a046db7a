//! The index: where each blob lives. On disk, index files list packs and their blobs; in memory,
//! one sorted vector of 52-byte entries (plus 64 bytes per pack), so a million chunks take about
//! 56 MB and a lookup is a binary search.
//!
//! Index file plaintext (then compressed and sealed, see `docs/format.md`):
//! `"CFIDX001" | n_supersedes(u32) | ids... | n_packs(u32) | per pack: id(32) salt(32)
//! n_blobs(u32) then per blob: type(1) id(32) offset(u32) length(u32) ulen(u32)`. A file that
//! also lists packs pending deletion (written by prune) starts with `"CFIDX002"` and ends with
//! `n_pending(u32) | per pending pack: marked(i64) then the pack as above`.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::{BlobType, PackEntry};
use std::collections::HashMap;

const INDEX_MAGIC: &[u8; 8] = b"CFIDX001";
/// Magic of an index file that ends with a list of packs pending deletion.
const INDEX_MAGIC_PENDING: &[u8; 8] = b"CFIDX002";

/// A pack as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRecord {
    /// The pack's id (SHA-256 of its bytes).
    pub id: Id,
    /// The salt its subkey derives from.
    pub salt: [u8; 32],
    /// Its blobs.
    pub entries: Vec<PackEntry>,
}

/// A pack that prune took out of the index and will delete once its grace period has passed
/// (see `crate::prune`). Its blobs are not in the index: nothing new may come to depend on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPack {
    /// When prune marked it, in seconds since the Unix epoch (UTC).
    pub marked: i64,
    /// The pack as it was indexed (empty `entries` and a zero salt for a pack that was never
    /// indexed and whose trailer could not be read).
    pub pack: PackRecord,
}

/// The content of one index file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Index files this one replaces (after compaction); readers ignore those.
    pub supersedes: Vec<Id>,
    /// The packs it describes.
    pub packs: Vec<PackRecord>,
    /// Packs pending deletion (written by prune; empty in every other index file).
    pub pending: Vec<PendingPack>,
}

struct Reader<'a>(&'a [u8]);
impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.0.len() < n {
            return Err(Error::corrupt("index file is truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn id(&mut self) -> Result<Id> {
        Ok(Id(self.take(32)?.try_into().unwrap()))
    }
    fn pack(&mut self) -> Result<PackRecord> {
        let id = self.id()?;
        let salt: [u8; 32] = self.take(32)?.try_into().unwrap();
        let nb = self.u32()? as usize;
        let mut entries = Vec::with_capacity(nb.min(1 << 16));
        for _ in 0..nb {
            let blob_type = BlobType::from_u8(self.take(1)?[0])?;
            let bid = self.id()?;
            let (offset, length, ulen) = (self.u32()?, self.u32()?, self.u32()?);
            entries.push(PackEntry {
                blob_type,
                id: bid,
                offset,
                length,
                ulen,
            });
        }
        Ok(PackRecord { id, salt, entries })
    }
}

fn encode_pack(v: &mut Vec<u8>, p: &PackRecord) {
    v.extend_from_slice(&p.id.0);
    v.extend_from_slice(&p.salt);
    v.extend_from_slice(&(p.entries.len() as u32).to_le_bytes());
    for e in &p.entries {
        v.push(e.blob_type as u8);
        v.extend_from_slice(&e.id.0);
        v.extend_from_slice(&e.offset.to_le_bytes());
        v.extend_from_slice(&e.length.to_le_bytes());
        v.extend_from_slice(&e.ulen.to_le_bytes());
    }
}

impl IndexFile {
    /// Serializes to the binary plaintext form: `CFIDX001` when no pack is pending deletion (so
    /// files written by backups are unchanged), else `CFIDX002` with the pending list at the end.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(if self.pending.is_empty() {
            INDEX_MAGIC
        } else {
            INDEX_MAGIC_PENDING
        });
        v.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for s in &self.supersedes {
            v.extend_from_slice(&s.0);
        }
        v.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            encode_pack(&mut v, p);
        }
        if !self.pending.is_empty() {
            v.extend_from_slice(&(self.pending.len() as u32).to_le_bytes());
            for p in &self.pending {
                v.extend_from_slice(&p.marked.to_le_bytes());
                encode_pack(&mut v, &p.pack);
            }
        }
        v
    }

    /// Parses the binary plaintext form (`CFIDX001` or `CFIDX002`).
    pub fn decode(data: &[u8]) -> Result<IndexFile> {
        let mut r = Reader(data);
        let magic = r.take(8)?;
        let with_pending = match magic {
            m if m == INDEX_MAGIC => false,
            m if m == INDEX_MAGIC_PENDING => true,
            _ => return Err(Error::corrupt("index file has no CFIDX001/CFIDX002 magic")),
        };
        let ns = r.u32()? as usize;
        let supersedes = (0..ns).map(|_| r.id()).collect::<Result<Vec<_>>>()?;
        let np = r.u32()? as usize;
        let mut packs = Vec::with_capacity(np.min(1 << 16));
        for _ in 0..np {
            packs.push(r.pack()?);
        }
        let mut pending = Vec::new();
        if with_pending {
            let n = r.u32()? as usize;
            for _ in 0..n {
                let marked = i64::from_le_bytes(r.take(8)?.try_into().unwrap());
                pending.push(PendingPack {
                    marked,
                    pack: r.pack()?,
                });
            }
        }
        if !r.0.is_empty() {
            return Err(Error::corrupt("index file has trailing bytes"));
        }
        Ok(IndexFile {
            supersedes,
            packs,
            pending,
        })
    }
}

/// One blob in the in-memory index (52 bytes).
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: Id,
    pack: u32,
    offset: u32,
    length: u32,
    ulen: u32,
    blob_type: BlobType,
}

/// Where a blob is, resolved for reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack that holds it.
    pub pack: Id,
    /// The pack's salt.
    pub salt: [u8; 32],
    /// The blob's entry in the pack.
    pub entry: PackEntry,
}

/// The in-memory index of every blob in the repository.
#[derive(Default)]
pub struct Index {
    packs: Vec<(Id, [u8; 32])>,
    pack_pos: HashMap<Id, u32>,
    sorted: Vec<Entry>,
    /// `fanout[p]..fanout[p + 1]` is the range of `sorted` whose ids start with the 16-bit
    /// prefix `p` (as in git's pack index): a lookup touches a few neighbouring entries instead
    /// of a cache miss per bisection step. 256 KiB, whatever the index size.
    fanout: Vec<u32>,
    recent: HashMap<Id, Entry>,
}

fn prefix16(id: &Id) -> usize {
    (id.0[0] as usize) << 8 | id.0[1] as usize
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pack and its blobs. A blob already known keeps its first location.
    pub fn add_pack(&mut self, id: Id, salt: [u8; 32], entries: &[PackEntry]) {
        let pack = match self.pack_pos.get(&id) {
            Some(p) => *p,
            None => {
                let p = self.packs.len() as u32;
                self.packs.push((id, salt));
                self.pack_pos.insert(id, p);
                p
            }
        };
        for e in entries {
            if !self.contains(&e.id) {
                self.recent.insert(
                    e.id,
                    Entry {
                        id: e.id,
                        pack,
                        offset: e.offset,
                        length: e.length,
                        ulen: e.ulen,
                        blob_type: e.blob_type,
                    },
                );
            }
        }
        if self.recent.len() > 4096 && self.recent.len() * 8 > self.sorted.len() {
            self.compact();
        }
    }

    /// Moves recent additions into the sorted vector.
    pub fn compact(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        self.sorted.extend(self.recent.drain().map(|(_, e)| e));
        self.sorted.sort_unstable_by_key(|e| e.id);
        self.sorted.dedup_by(|a, b| a.id == b.id);
        self.sorted.shrink_to_fit();
        self.recent.shrink_to_fit();
        let mut fanout = vec![0u32; 65537];
        for e in &self.sorted {
            fanout[prefix16(&e.id) + 1] += 1;
        }
        for i in 1..fanout.len() {
            fanout[i] += fanout[i - 1];
        }
        self.fanout = fanout;
    }

    fn entry(&self, id: &Id) -> Option<&Entry> {
        if !self.sorted.is_empty() {
            let p = prefix16(id);
            let (lo, hi) = (self.fanout[p] as usize, self.fanout[p + 1] as usize);
            let range = &self.sorted[lo..hi];
            if let Ok(i) = range.binary_search_by(|e| e.id.cmp(id)) {
                return Some(&range[i]);
            }
        }
        self.recent.get(id)
    }

    /// Whether the blob is stored.
    pub fn contains(&self, id: &Id) -> bool {
        self.entry(id).is_some()
    }

    /// Where the blob is stored.
    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.entry(id).map(|e| self.location(e))
    }

    fn location(&self, e: &Entry) -> BlobLocation {
        let (pack, salt) = self.packs[e.pack as usize];
        BlobLocation {
            pack,
            salt,
            entry: PackEntry {
                blob_type: e.blob_type,
                id: e.id,
                offset: e.offset,
                length: e.length,
                ulen: e.ulen,
            },
        }
    }

    /// Whether the pack is known.
    pub fn has_pack(&self, id: &Id) -> bool {
        self.pack_pos.contains_key(id)
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of packs.
    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    /// Every blob with its location (for check and stats).
    pub fn iter(&self) -> impl Iterator<Item = BlobLocation> + '_ {
        self.sorted
            .iter()
            .chain(self.recent.values())
            .map(|e| self.location(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u8) -> PackEntry {
        PackEntry {
            blob_type: BlobType::Data,
            id: Id([i; 32]),
            offset: i as u32 * 10,
            length: 10,
            ulen: 9,
        }
    }

    #[test]
    fn file_round_trip() {
        let f = IndexFile {
            supersedes: vec![Id([7; 32])],
            packs: vec![PackRecord {
                id: Id([1; 32]),
                salt: [2; 32],
                entries: vec![entry(1), entry(2)],
            }],
            pending: vec![],
        };
        assert_eq!(&f.encode()[..8], b"CFIDX001");
        assert_eq!(IndexFile::decode(&f.encode()).unwrap(), f);
        let mut bad = f.encode();
        bad.pop();
        assert!(IndexFile::decode(&bad).is_err());
    }

    #[test]
    fn file_with_pending_packs_round_trips() {
        let f = IndexFile {
            supersedes: vec![Id([7; 32]), Id([8; 32])],
            packs: vec![PackRecord {
                id: Id([1; 32]),
                salt: [2; 32],
                entries: vec![entry(1)],
            }],
            pending: vec![
                PendingPack {
                    marked: 1_790_000_000,
                    pack: PackRecord {
                        id: Id([3; 32]),
                        salt: [4; 32],
                        entries: vec![entry(3), entry(4)],
                    },
                },
                PendingPack {
                    marked: -5,
                    pack: PackRecord {
                        id: Id([5; 32]),
                        salt: [0; 32],
                        entries: vec![],
                    },
                },
            ],
        };
        let enc = f.encode();
        assert_eq!(&enc[..8], b"CFIDX002");
        assert_eq!(IndexFile::decode(&enc).unwrap(), f);
        let mut bad = enc.clone();
        bad.truncate(enc.len() - 3);
        assert!(IndexFile::decode(&bad).is_err());
        let mut bad = enc;
        bad.push(0);
        assert!(IndexFile::decode(&bad).is_err());
    }

    #[test]
    fn lookup_and_compaction() {
        let mut idx = Index::new();
        for p in 0..50u8 {
            let es: Vec<_> = (0..100u8)
                .map(|i| PackEntry {
                    id: Id([
                        p, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                        0, 0, 0, 0, 0, 0, 0,
                    ]),
                    ..entry(i)
                })
                .collect();
            idx.add_pack(Id([p; 32]), [p; 32], &es);
        }
        idx.compact();
        assert_eq!(idx.len(), 5000);
        let mut id = [0u8; 32];
        id[0] = 7;
        id[1] = 9;
        let loc = idx.get(&Id(id)).unwrap();
        assert_eq!(loc.pack, Id([7; 32]));
        assert_eq!(loc.entry.offset, 90);
        assert!(!idx.contains(&Id([255; 32])));
        assert_eq!(std::mem::size_of::<Entry>(), 52);
    }
}
