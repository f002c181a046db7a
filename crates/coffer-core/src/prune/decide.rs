//! Step 4 of a prune, **decide**, and phase 2's rule: which packs leave the index (unused, or
//! repacked while the unused bytes exceed `--max-unused`), which unindexed packs are marked, and
//! which pending packs are deleted, kept waiting, or forgotten.

use super::count::{Fate, PendingFate};
use super::plan::PrunePlan;
use crate::id::Id;
use std::collections::BTreeSet;

impl PrunePlan {
    /// Decides the fate of every pack the counts of steps 1 to 3 know, and of the packs on
    /// storage no index lists, filling the report's counts.
    pub(super) fn decide(&mut self) {
        let candidates = self.drop_unused();
        self.choose_repacks(candidates);
        self.list_unindexed();
        self.settle_pending();
        self.settle_leaving();
        let r = &mut self.report;
        r.after.packs = r.before.packs - r.deleted.packs;
        r.after.bytes = r.before.bytes - r.deleted.bytes;
        self.delete.sort();
        self.delete.dedup();
        self.affected = self.affected_files();
    }

    /// Counts the used and unused bytes, takes the packs with no used blob out of the index, and
    /// returns the positions of the packs that may be repacked (some blobs used, some not).
    fn drop_unused(&mut self) -> Vec<u32> {
        let r = &mut self.report;
        let mut candidates: Vec<u32> = Vec::new();
        for (no, st) in self.tally.packs.iter_mut().enumerate() {
            r.used_bytes += st.used_bytes;
            r.unused_bytes += st.unused_bytes();
            let size = self.stored.get(&st.id).copied();
            if st.reindex.is_some() {
                continue;
            }
            if st.used_blobs == 0 {
                st.fate = Fate::Unused;
                r.unused_packs.add(size.unwrap_or(0));
            } else if size.is_none() {
                r.warnings.push(format!(
                    "pack {} is in the index but missing from storage; `coffer check` names the snapshots it breaks",
                    st.id.to_hex()
                ));
            } else if st.used_blobs < st.blobs {
                candidates.push(no as u32);
            }
        }
        candidates
    }

    /// Repacks `candidates`, the largest unused share first (each repacked byte frees the
    /// most), until the unused bytes left are within `--max-unused`, copying at most
    /// `--max-repack-size`.
    fn choose_repacks(&mut self, mut candidates: Vec<u32>) {
        let packs = &mut self.tally.packs;
        let mut unused_left: u64 = packs
            .iter()
            .filter(|p| p.fate == Fate::Keep)
            .map(|p| p.unused_bytes())
            .sum();
        let limit = self.opts.max_unused.limit(self.report.used_bytes);
        candidates.sort_by(|a, b| {
            let (a, b) = (&packs[*a as usize], &packs[*b as usize]);
            let ra = a.unused_bytes() as f64 / a.bytes.max(1) as f64;
            let rb = b.unused_bytes() as f64 / b.bytes.max(1) as f64;
            rb.total_cmp(&ra).then(a.id.cmp(&b.id))
        });
        let mut budget = self.opts.max_repack_bytes.unwrap_or(u64::MAX);
        for no in candidates {
            if unused_left <= limit {
                break;
            }
            let st = &mut packs[no as usize];
            if st.used_bytes > budget {
                continue;
            }
            budget -= st.used_bytes;
            unused_left -= st.unused_bytes();
            st.fate = Fate::Repack;
            self.report
                .repacked_packs
                .add(self.stored.get(&st.id).copied().unwrap_or(0));
        }
        self.report.unused_bytes_after = unused_left;
    }

    /// Lists the packs no index lists: left by an interrupted backup (or being written by a
    /// backup whose lock went stale, hence the grace period for them too).
    fn list_unindexed(&mut self) {
        let t = &self.tally;
        let mut unlisted: Vec<(Id, u64)> = self
            .stored
            .iter()
            .filter(|(id, _)| !t.indexed(id) && !t.pending.contains_key(*id))
            .map(|(id, s)| (*id, *s))
            .collect();
        unlisted.sort();
        for (_, size) in &unlisted {
            self.report.unindexed_packs.add(*size);
        }
        self.unlisted = unlisted;
    }

    /// Phase 2's rule, enforced here. A pending pack is deleted only if (a) its grace period
    /// has passed since it was marked, (b) no index file in use lists it as a pack (a `coffer
    /// index` rebuild or a re-index by step 3 may have put it back), and (c) no snapshot uses a
    /// blob found only in it (step 3 re-indexed every such pack, so (c) follows from (b)).
    /// Every snapshot written so far was walked by the plan, under the exclusive lock; a backup
    /// still running with an index from before the mark would have to have held no live lock
    /// for the whole grace period. Index files that list it and are superseded are removed
    /// before any pack is deleted (see the execution).
    fn settle_pending(&mut self) {
        let mut ids: Vec<Id> = self.tally.pending.keys().copied().collect();
        ids.sort();
        for id in &ids {
            let indexed = self.tally.indexed(id);
            let p = self.tally.pending.get_mut(id).expect("listed");
            let r = &mut self.report;
            p.fate = if indexed || !self.stored.contains_key(id) {
                PendingFate::Forget
            } else if self.now.saturating_sub(p.marked) >= self.grace {
                self.delete.push(*id);
                r.deleted.add(self.stored[id]);
                PendingFate::Delete
            } else {
                r.pending.add(self.stored[id]);
                r.due(p.marked.saturating_add(self.grace));
                PendingFate::Wait
            };
        }
    }

    /// Packs this run takes out of the index (or never indexed) are deleted by it when there is
    /// no grace period, else marked.
    fn settle_leaving(&mut self) {
        let newly: Vec<(Id, u64)> = self
            .tally
            .packs
            .iter()
            .filter(|p| p.fate != Fate::Keep)
            .map(|p| (p.id, self.stored.get(&p.id).copied().unwrap_or(0)))
            .chain(self.unlisted.iter().copied())
            .collect();
        for (id, size) in newly {
            if !self.stored.contains_key(&id) {
                continue;
            }
            if self.delete_now() {
                self.delete.push(id);
                self.report.deleted.add(size);
            } else {
                self.report.pending.add(size);
                self.marks += 1;
            }
        }
    }

    /// The positions of the index files this run supersedes, in order: those that list a pack
    /// leaving the index, or a pending pack deleted or forgotten.
    fn affected_files(&self) -> Vec<u32> {
        let mut affected: BTreeSet<u32> = BTreeSet::new();
        for p in self.tally.pending.values() {
            if p.fate != PendingFate::Wait {
                affected.extend(p.files.iter().copied());
            }
        }
        for st in &self.tally.packs {
            if st.fate != Fate::Keep {
                affected.extend(st.files.iter().copied());
            }
        }
        affected.into_iter().collect()
    }
}
