//! The planning phase of a prune: [`Repository::plan_prune`] reads the repository (packs on
//! storage, snapshots, index files in use, pending marks) and returns a [`PrunePlan`], what a
//! run will do, without writing anything to storage.

use super::count::{Fate, PendingFate, Tally};
use super::ids::IdMap;
use super::mark;
use super::options::PruneOptions;
use super::report::PruneReport;
use crate::backend::FileType;
use crate::error::Result;
use crate::id::Id;
use crate::repository::{Indexed, Repository};
use chrono::Utc;
use std::fmt;

/// What a prune run will do: which packs leave the index (unused or repacked), which go back
/// into it, which are marked and which are deleted, with the sizes before and after. Made by
/// [`Repository::plan_prune`]; [`PrunePlan::dry_run_report`] shows it, and
/// [`Repository::execute_prune`] carries it out.
pub struct PrunePlan {
    /// The options it was made with.
    pub(super) opts: PruneOptions,
    /// When it was made, in seconds since the epoch.
    pub(super) now: i64,
    /// The grace period, in seconds.
    pub(super) grace: i64,
    /// The packs on storage and their sizes.
    pub(super) stored: IdMap<u64>,
    /// The index files in use and what their packs hold.
    pub(super) tally: Tally,
    /// The packs on storage no index file lists, sorted.
    pub(super) unlisted: Vec<(Id, u64)>,
    /// The packs the run deletes, sorted.
    pub(super) delete: Vec<Id>,
    /// The positions (in the tally's files) of the index files the run supersedes, sorted.
    pub(super) affected: Vec<u32>,
    /// How many packs the run marks for deletion (they leave the index, or no index lists them).
    pub(super) marks: usize,
    /// The report as far as the plan knows it: without the repack's copies and new packs, the
    /// index files after, and the deletion time of the packs the run marks.
    pub(super) report: PruneReport,
}

impl fmt::Debug for PrunePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrunePlan")
            .field("opts", &self.opts)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl Repository<Indexed> {
    /// Plans a prune (steps 1 to 4 and phase 2's rule of the module documentation): writes
    /// nothing to storage. Carrying the plan out ([`Repository::execute_prune`]) needs the
    /// exclusive lock held from before this call until it is done; a plan only shown needs a
    /// shared one. The blobs of pending packs become readable through this handle's index (so
    /// that the trees of a snapshot that uses them can be walked).
    pub async fn plan_prune(&self, opts: &PruneOptions) -> Result<PrunePlan> {
        let keys = self.keyring().clone();
        let now = Utc::now().timestamp();
        let mut report = PruneReport::default();
        let stored: IdMap<u64> = self
            .backend()
            .list(FileType::Pack)
            .await?
            .into_iter()
            .collect();
        for size in stored.values() {
            report.before.add(*size);
        }
        mark::index_pending(self, &stored);
        let (snapshots, used) = mark::used_blobs(self, &opts.ignore_snapshots).await?;
        report.snapshots = snapshots;
        report.blobs_used = used.len() as u64;
        let clock = std::time::Instant::now();
        let mut tally = Tally::count(&keys, self.index_files().to_vec(), used).await?;
        report.index_files.0 = tally.files.len();
        tracing::info!(
            "prune: count: {} index files, {} packs ({:.2}s)",
            tally.files.len(),
            tally.packs.len(),
            clock.elapsed().as_secs_f64()
        );
        tally
            .reindex(&keys, &stored, &mut report.reindexed_packs)
            .await?;
        let mut plan = PrunePlan {
            opts: opts.clone(),
            now,
            grace: i64::try_from(opts.grace.as_secs()).unwrap_or(i64::MAX),
            stored,
            tally,
            unlisted: Vec::new(),
            delete: Vec::new(),
            affected: Vec::new(),
            marks: 0,
            report,
        };
        plan.decide();
        Ok(plan)
    }
}

impl PrunePlan {
    /// What carrying the plan out would do, as the report of a dry run (`dry_run` set; the new
    /// packs of the repack are counted at the bytes they would copy).
    pub fn dry_run_report(&self) -> PruneReport {
        let mut r = self.report.clone();
        r.dry_run = true;
        if self.marks > 0 {
            r.due(self.now.saturating_add(self.grace));
        }
        let repacked = || self.tally.packs.iter().filter(|p| p.fate == Fate::Repack);
        r.repacked_bytes = repacked().map(|p| p.used_bytes).sum();
        r.repacked_blobs = repacked().map(|p| p.used_blobs as u64).sum();
        r.after.bytes += r.repacked_bytes;
        r.index_files.1 = r.index_files.0;
        r
    }

    /// Indexed packs no snapshot uses a blob of: they leave the index.
    pub fn unused_packs(&self) -> Vec<Id> {
        self.packs_whose_fate_is(Fate::Unused)
    }

    /// Packs whose used blobs are copied into new packs; then they leave the index.
    pub fn repacked_packs(&self) -> Vec<Id> {
        self.packs_whose_fate_is(Fate::Repack)
    }

    /// Pending or unindexed packs that go back into the index because a snapshot uses their
    /// blobs (a backup that ran with an index older than the mark).
    pub fn reindexed_packs(&self) -> Vec<Id> {
        let mut ids: Vec<Id> = (self.tally.packs.iter())
            .filter(|p| p.reindex.is_some())
            .map(|p| p.id)
            .collect();
        ids.sort();
        ids
    }

    /// Packs on storage no index lists (left by an interrupted backup): they are marked for
    /// deletion, or with no grace period deleted.
    pub fn unindexed_packs(&self) -> Vec<Id> {
        self.unlisted.iter().map(|(id, _)| *id).collect()
    }

    /// Packs pending deletion whose grace period is over and that nothing needs: deleted.
    pub fn expired_pending_packs(&self) -> Vec<Id> {
        let mut ids: Vec<Id> = (self.tally.pending.iter())
            .filter(|(_, p)| p.fate == PendingFate::Delete)
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// Every pack the run deletes: the expired pending packs and, with no grace period, the
    /// packs that leave the index and the unindexed ones.
    pub fn deleted_packs(&self) -> &[Id] {
        &self.delete
    }

    /// Problems prune cannot fix and leaves as they are (such as packs missing from storage).
    pub fn warnings(&self) -> &[String] {
        &self.report.warnings
    }

    /// The options the plan was made with.
    pub fn options(&self) -> &PruneOptions {
        &self.opts
    }

    /// Whether the packs that leave the index are deleted in the same run (no grace period).
    pub(super) fn delete_now(&self) -> bool {
        self.grace == 0
    }

    fn packs_whose_fate_is(&self, fate: Fate) -> Vec<Id> {
        let mut ids: Vec<Id> = (self.tally.packs.iter())
            .filter(|p| p.fate == fate)
            .map(|p| p.id)
            .collect();
        ids.sort();
        ids
    }
}
