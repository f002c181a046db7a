//! Phase 1 of a prune's execution, **mark**: new packs, then the index files that list them and
//! supersede the old ones. Each index file that lists a pack leaving the index is replaced by
//! one that lists the packs it keeps and the new packs, and moves the leaving packs to its
//! pending list with the time of the mark: in one object, so a pack is never out of the index
//! without being marked.

use super::count::{Fate, PendingFate};
use super::ids::IdSet;
use super::plan::PrunePlan;
use super::repack::Repacker;
use crate::error::Result;
use crate::id::Id;
use crate::index::{IndexFile, PackRecord, PendingPack};
use crate::repository::{read_index_file, Keyring};
use std::collections::HashSet;
use std::sync::Arc;

/// Index files rewritten together into one new file (bounds the memory of the rewrite).
const BATCH_PACKS: usize = 16 * 1024;

/// What a new index file lists besides the content of the files it supersedes: the packs that
/// go back into the index, and the unindexed packs marked for deletion.
#[derive(Default)]
pub(super) struct Extras {
    pub packs: Vec<PackRecord>,
    pub pending: Vec<PendingPack>,
}

impl Extras {
    fn is_empty(&self) -> bool {
        self.packs.is_empty() && self.pending.is_empty()
    }
}

/// The rewrite of the index files a plan supersedes.
pub(super) struct Rewrite<'a> {
    plan: &'a PrunePlan,
    keys: Arc<Keyring>,
    /// The time of the mark, in seconds since the epoch.
    marked: i64,
    /// Writes the new packs.
    pub repacker: Repacker,
    /// Packs a new index file lists already (as a pack or as pending).
    emitted: IdSet,
    /// Packs whose used blobs are copied already.
    repacked: IdSet,
    /// The new index files.
    pub new_files: Vec<Id>,
    /// The index files they supersede.
    pub superseded: HashSet<Id>,
}

impl<'a> Rewrite<'a> {
    /// A rewrite of `plan`'s index files that marks packs at `marked`.
    pub(super) fn new(plan: &'a PrunePlan, keys: Arc<Keyring>, marked: i64) -> Rewrite<'a> {
        Rewrite {
            plan,
            repacker: Repacker::new(keys.clone()),
            keys,
            marked,
            emitted: IdSet::default(),
            repacked: IdSet::default(),
            new_files: Vec::new(),
            superseded: HashSet::new(),
        }
    }

    /// Writes the new packs and index files (the first file also lists `extras`), calling the
    /// hook at [`PruneStage::PacksWritten`](super::PruneStage::PacksWritten) once the first
    /// batch's new packs are stored (or once it is clear there are none).
    pub(super) async fn run(&mut self, mut extras: Extras) -> Result<()> {
        for p in &extras.packs {
            self.emitted.insert(p.id);
        }
        for p in &extras.pending {
            self.emitted.insert(p.pack.id);
        }
        let mut packs_reached = false;
        for batch in self.batches(extras.is_empty()) {
            let mut out = IndexFile::default();
            out.packs.append(&mut extras.packs);
            out.pending.append(&mut extras.pending);
            for fno in batch {
                self.supersede(fno, &mut out).await?;
            }
            out.packs.extend(self.repacker.flush().await?);
            if !packs_reached {
                packs_reached = true;
                self.plan.opts.reached(super::PruneStage::PacksWritten);
            }
            if out.supersedes.is_empty() && out.packs.is_empty() && out.pending.is_empty() {
                continue;
            }
            self.superseded.extend(out.supersedes.iter().copied());
            self.new_files.push(self.keys.write_index_file(&out).await?);
        }
        if !packs_reached {
            self.plan.opts.reached(super::PruneStage::PacksWritten);
        }
        Ok(())
    }

    /// The files to supersede, in batches of about [`BATCH_PACKS`] packs; one (empty) batch
    /// when there are none but `extras` must be written.
    fn batches(&self, no_extras: bool) -> Vec<Vec<u32>> {
        let plan = self.plan;
        // Weight of a file: the packs it lists (counted from the stats, not re-read).
        let mut per_file = vec![0usize; plan.tally.files.len()];
        for p in &plan.tally.packs {
            for f in &p.files {
                per_file[*f as usize] += 1;
            }
        }
        let mut batches: Vec<Vec<u32>> = Vec::new();
        let mut cur: Vec<u32> = Vec::new();
        let mut weight = 0usize;
        for &fno in &plan.affected {
            weight += per_file[fno as usize].max(1);
            cur.push(fno);
            if weight >= BATCH_PACKS {
                batches.push(std::mem::take(&mut cur));
                weight = 0;
            }
        }
        if !cur.is_empty() || !no_extras {
            batches.push(cur);
        }
        batches
    }

    /// Adds to `out` what index file number `fno` keeps (copying the used blobs of the packs
    /// to repack), its leaving packs as pending, and its pending packs still waiting.
    async fn supersede(&mut self, fno: u32, out: &mut IndexFile) -> Result<()> {
        let t = &self.plan.tally;
        let fid = t.files[fno as usize];
        let f = read_index_file(&self.keys, &fid).await?;
        out.supersedes.push(fid);
        for p in f.packs {
            let no = t.pack_no[&p.id];
            let fate = t.packs[no as usize].fate;
            if fate == Fate::Repack && self.repacked.insert(p.id) {
                self.repacker
                    .copy(&p, |e| t.used.get(&e.id) == Some(&no))
                    .await?;
            }
            if !self.emitted.insert(p.id) {
                continue; // listed by two files: once is enough
            }
            if fate == Fate::Keep {
                out.packs.push(p);
            } else if self.plan.stored.contains_key(&p.id) && !self.plan.delete_now() {
                out.pending.push(PendingPack {
                    marked: self.marked,
                    pack: p,
                });
            }
        }
        for pp in f.pending {
            let p = &t.pending[&pp.pack.id];
            if p.fate == PendingFate::Wait && self.emitted.insert(pp.pack.id) {
                out.pending.push(PendingPack {
                    marked: p.marked,
                    pack: pp.pack,
                });
            }
        }
        Ok(())
    }
}
