//! Step 2 of a prune, **count**: read the index files in use and count, per pack, its used and
//! unused bytes. A blob stored twice is used in the first pack that lists it (in the order of
//! the index files' ids, so the same copy every time) and unused in the other.

use super::ids::IdMap;
use super::mark::UNCLAIMED;
use crate::error::Result;
use crate::id::Id;
use crate::index::{IndexFile, PackRecord};
use crate::pack::PackEntry;
use crate::repository::{read_index_file, Keyring};
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;

/// What one indexed pack holds.
pub(super) struct PackStat {
    pub id: Id,
    pub blobs: u32,
    pub bytes: u64,
    pub used_blobs: u32,
    pub used_bytes: u64,
    /// Positions (in [`Tally::files`]) of the files that list it.
    pub files: Vec<u32>,
    /// Set for a pending or unindexed pack this run puts back into the index.
    pub reindex: Option<PackRecord>,
    pub fate: Fate,
}

impl PackStat {
    fn new(id: Id) -> PackStat {
        PackStat {
            id,
            blobs: 0,
            bytes: 0,
            used_blobs: 0,
            used_bytes: 0,
            files: Vec::new(),
            reindex: None,
            fate: Fate::Keep,
        }
    }

    /// Sealed bytes of its blobs no snapshot uses here.
    pub(super) fn unused_bytes(&self) -> u64 {
        self.bytes - self.used_bytes
    }
}

/// What this run does with an indexed pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// It stays in the index.
    Keep,
    /// No used blob: it leaves the index.
    Unused,
    /// Its used blobs are copied into new packs; it leaves the index.
    Repack,
}

/// A pack listed as pending deletion by an index file in use.
pub(super) struct Pending {
    pub marked: i64,
    pub record: PackRecord,
    /// Positions (in [`Tally::files`]) of the files that list it.
    pub files: Vec<u32>,
    pub fate: PendingFate,
}

/// What this run does with a pending pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PendingFate {
    /// Still within its grace period.
    Wait,
    /// In the index again, or already gone from storage: forget the entry.
    Forget,
    /// Grace period over, nothing needs it: delete.
    Delete,
}

/// The index files in use, what their packs hold, and which pack holds the counted copy of each
/// used blob.
pub(super) struct Tally {
    /// The index files in use, sorted.
    pub files: Vec<Id>,
    /// Every pack the files list, then the packs step 3 puts back into the index.
    pub packs: Vec<PackStat>,
    /// Each pack's position in `packs`.
    pub pack_no: IdMap<u32>,
    /// The packs the files list as pending deletion.
    pub pending: IdMap<Pending>,
    /// The index files that the files in use supersede.
    pub superseded_known: HashSet<Id>,
    /// Each used blob, mapped to the position of the pack that holds its counted copy
    /// ([`UNCLAIMED`] while none does).
    pub used: IdMap<u32>,
}

impl Tally {
    /// Reads the index files in use (`files`, in any order) and counts what their packs hold.
    pub(super) async fn count(
        keys: &Arc<Keyring>,
        mut files: Vec<Id>,
        used: IdMap<u32>,
    ) -> Result<Tally> {
        files.sort();
        let mut t = Tally {
            files,
            packs: Vec::new(),
            pack_no: IdMap::default(),
            pending: IdMap::default(),
            superseded_known: HashSet::new(),
            used,
        };
        let mut stream = futures::stream::iter(t.files.clone().into_iter().map(|id| {
            let keys = keys.clone();
            async move { read_index_file(&keys, &id).await }
        }))
        .buffered(8);
        let mut fno = 0u32;
        while let Some(f) = stream.next().await {
            t.add_file(fno, f?);
            fno += 1;
        }
        Ok(t)
    }

    /// Counts index file number `fno`.
    fn add_file(&mut self, fno: u32, f: IndexFile) {
        self.superseded_known.extend(f.supersedes.iter().copied());
        for p in &f.packs {
            let packs = &mut self.packs;
            let no = *self.pack_no.entry(p.id).or_insert_with(|| {
                packs.push(PackStat::new(p.id));
                (packs.len() - 1) as u32
            });
            let st = &mut self.packs[no as usize];
            let first = st.files.is_empty();
            if st.files.last() != Some(&fno) {
                st.files.push(fno);
            }
            if first {
                claim(&mut self.used, st, no, &p.entries);
            }
        }
        for pp in f.pending {
            let e = self.pending.entry(pp.pack.id).or_insert_with(|| Pending {
                marked: pp.marked,
                record: pp.pack,
                files: Vec::new(),
                fate: PendingFate::Wait,
            });
            // Listed twice (after a crash): the later mark counts, the safer side.
            e.marked = e.marked.max(pp.marked);
            if e.files.last() != Some(&fno) {
                e.files.push(fno);
            }
        }
    }

    /// Adds a pack that goes back into the index, claiming its used blobs no pack claimed yet;
    /// returns how many it claimed.
    pub(super) fn add_reindexed(&mut self, rec: PackRecord) -> usize {
        let no = self.packs.len() as u32;
        let mut st = PackStat::new(rec.id);
        claim(&mut self.used, &mut st, no, &rec.entries);
        let claimed = st.used_blobs as usize;
        st.reindex = Some(rec);
        self.pack_no.insert(st.id, no);
        self.packs.push(st);
        claimed
    }

    /// Used blobs no pack holds (yet).
    pub(super) fn unclaimed(&self) -> impl Iterator<Item = &Id> {
        self.used
            .iter()
            .filter(|(_, c)| **c == UNCLAIMED)
            .map(|(id, _)| id)
    }

    /// Whether a pack by that id is listed by an index file in use or goes back into the index.
    pub(super) fn indexed(&self, id: &Id) -> bool {
        self.pack_no.contains_key(id)
    }
}

/// Claims, for pack number `no`, every used blob of `entries` no other pack claimed yet.
fn claim(used: &mut IdMap<u32>, st: &mut PackStat, no: u32, entries: &[PackEntry]) {
    for e in entries {
        st.blobs += 1;
        st.bytes += e.length as u64;
        if let Some(c) = used.get_mut(&e.id) {
            if *c == UNCLAIMED {
                *c = no;
                st.used_blobs += 1;
                st.used_bytes += e.length as u64;
            }
        }
    }
}
