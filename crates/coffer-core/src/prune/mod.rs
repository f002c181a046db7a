//! `prune`: delete the data no snapshot references, and repack packs that are mostly unused, in
//! two phases so that a backup running at the same time never loses data.
//!
//! One run, under the repository's exclusive lock:
//!
//! 1. **Mark.** Walk every snapshot's trees and collect the ids of the blobs they use (one hash
//!    map entry per blob, about 48 bytes; trees are read one by one, packs never whole).
//! 2. **Count.** Read the index files in use and count, per pack, its used and unused bytes. A
//!    blob stored twice is used in the first pack that lists it and unused in the other.
//! 3. **Re-index what is needed.** A used blob that no index lists can only be in a pack that a
//!    previous prune marked for deletion (or that no index lists): such packs go back into the
//!    index. If a used blob is nowhere, prune stops before changing anything.
//! 4. **Decide.** Packs with no used blob are dropped; of the packs with unused blobs, those with
//!    the largest unused share are repacked until the unused bytes left are within
//!    `--max-unused` (default 10% of the stored blobs). Packs no index lists (left by an
//!    interrupted backup) are marked too.
//! 5. **Phase 1: mark.** Used blobs of the packs to repack are copied into new packs (opened and
//!    sealed again under the new packs' keys; blob ids and compression stay). Then each index
//!    file that lists a dropped or repacked pack is replaced by one that supersedes it, lists the
//!    new packs, and moves the old packs to its *pending deletion* list with the time (see
//!    `docs/format.md`, section 7): in one object, so a pack is never out of the index without
//!    being marked. Pending packs stay on storage; no reader sees their blobs any more.
//! 6. **Phase 2: delete.** A pending pack is deleted once its grace period (`--grace`, default
//!    [`DEFAULT_GRACE`]) has passed, by this run or a later one, under the rule written where it
//!    is enforced (`decide.rs`).
//!
//! Write order, for crash safety: new packs, then the index files that list them and supersede
//! the old ones, then the removal of superseded index files, then pack deletions. A kill at any
//! moment leaves packs no index lists (harmless; the next prune marks them), index files that
//! are superseded but still present (their packs are all still stored), or pending packs.
//!
//! Steps 1 to 4, and which pending packs phase 2 deletes, make a [`PrunePlan`]
//! ([`Repository::plan_prune`], which writes nothing); [`Repository::execute_prune`] carries it
//! out (steps 5 and 6) and [`PrunePlan::dry_run_report`] tells what it would do.
//! [`Repository::prune`] is the two in one.
//!
//! Files: `options.rs` and `report.rs` hold the public types; `mark.rs`, `count.rs`,
//! `reindex.rs` and `decide.rs` the steps of the plan (`plan.rs`); `rewrite.rs` (with
//! `repack.rs`) phase 1 and `execute.rs` the execution.

mod count;
mod decide;
mod execute;
mod ids;
mod mark;
mod options;
mod plan;
mod reindex;
mod repack;
mod report;
mod rewrite;
#[cfg(test)]
mod tests;

pub use options::{MaxUnused, PruneHook, PruneOptions, PruneStage, DEFAULT_GRACE};
pub use plan::PrunePlan;
pub use report::{PackCount, PruneReport};

use crate::error::Result;
use crate::repository::{Indexed, Repository};

impl Repository<Indexed> {
    /// Prunes the repository (see the module documentation): plans, then carries the plan out,
    /// or with `dry_run` reports it. The caller holds the exclusive lock (a shared one is enough
    /// with `dry_run`). This handle's index is stale afterwards.
    pub async fn prune(&self, opts: &PruneOptions) -> Result<PruneReport> {
        let plan = self.plan_prune(opts).await?;
        if opts.dry_run {
            return Ok(plan.dry_run_report());
        }
        self.execute_prune(plan).await
    }
}
