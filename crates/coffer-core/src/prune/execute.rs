//! The execution phase of a prune: [`Repository::execute_prune`] carries out a [`PrunePlan`] in
//! the crash-safe order of the module documentation (new packs, then the index files that list
//! them and supersede the old ones, then the removal of superseded index files, then pack
//! deletions) and reports what it did.

use super::options::PruneStage;
use super::plan::PrunePlan;
use super::reindex::read_trailer;
use super::report::PruneReport;
use super::rewrite::{Extras, Rewrite};
use crate::backend::{Backend, FileType};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{PackRecord, PendingPack};
use crate::repository::{read_index_file, Indexed, Keyring, Repository};
use chrono::Utc;
use std::collections::HashSet;

impl Repository<Indexed> {
    /// Carries out `plan` (phases 1 and 2 of the module documentation) and reports what was
    /// done. The plan must come from [`Repository::plan_prune`] on this handle, without
    /// `dry_run`, under the exclusive lock the caller still holds. Packs are marked with the
    /// time this call writes them. This handle's index is stale afterwards.
    pub async fn execute_prune(&self, mut plan: PrunePlan) -> Result<PruneReport> {
        check_plan(self, &plan)?;
        let keys = self.keyring().clone();
        let be = self.backend();
        let marked = Utc::now().timestamp().max(plan.now);
        let mut r = std::mem::take(&mut plan.report);
        if plan.marks > 0 {
            r.due(marked.saturating_add(plan.grace));
        }

        // Phase 1: new packs, then index files that list them and supersede the old ones.
        let clock = std::time::Instant::now();
        let extras = extras(&mut plan, &keys, marked).await;
        let mut rewrite = Rewrite::new(&plan, keys.clone(), marked);
        rewrite.run(extras).await?;
        tracing::info!(
            "prune: repack and write the index: {} packs repacked, {} index files written ({:.2}s)",
            r.repacked_packs.packs,
            rewrite.new_files.len(),
            clock.elapsed().as_secs_f64()
        );
        r.repacked_blobs = rewrite.repacker.blobs;
        r.repacked_bytes = rewrite.repacker.bytes;
        r.new_packs = rewrite.repacker.new_packs;
        r.after.packs += r.new_packs.packs;
        r.after.bytes += r.new_packs.bytes;
        let (new_files, superseded) = (rewrite.new_files, rewrite.superseded);
        plan.opts.reached(PruneStage::IndexWritten);

        let clock = std::time::Instant::now();
        r.index_files.1 =
            remove_superseded(&mut plan, &keys, be.as_ref(), &new_files, &superseded).await?;
        plan.opts.reached(PruneStage::IndexCleaned);
        tracing::info!(
            "prune: superseded index files removed ({:.2}s)",
            clock.elapsed().as_secs_f64()
        );

        // Phase 2: delete.
        let clock = std::time::Instant::now();
        delete_packs(&plan, be.as_ref()).await?;
        tracing::info!(
            "prune: delete: {} packs ({:.2}s)",
            plan.delete.len(),
            clock.elapsed().as_secs_f64()
        );
        Ok(r)
    }
}

/// Refuses a plan made for a dry run, or from another view of the index than this handle's.
fn check_plan(repo: &Repository<Indexed>, plan: &PrunePlan) -> Result<()> {
    if plan.opts.dry_run {
        return Err(Error::usage(
            "a prune plan made with dry_run is not carried out; plan again without it",
        ));
    }
    let mut files = repo.index_files().to_vec();
    files.sort();
    if files != plan.tally.files {
        return Err(Error::usage(
            "this prune plan was made from other index files than this repository handle's; plan again with it",
        ));
    }
    Ok(())
}

/// Takes out of `plan` the packs that go back into the index, and records the unindexed packs
/// to mark (unless they are deleted at once), with their content read from their trailers so
/// that step 3 can re-index them without reading them again.
async fn extras(plan: &mut PrunePlan, keys: &Keyring, marked: i64) -> Extras {
    let packs: Vec<PackRecord> = (plan.tally.packs.iter_mut())
        .filter_map(|p| p.reindex.take())
        .collect();
    let mut pending: Vec<PendingPack> = Vec::new();
    if !plan.delete_now() {
        for (id, size) in &plan.unlisted {
            let pack = read_trailer(keys, id, *size)
                .await
                .unwrap_or_else(|_| PackRecord {
                    id: *id,
                    salt: [0; 32],
                    entries: Vec::new(),
                });
            pending.push(PendingPack { marked, pack });
        }
    }
    Extras { packs, pending }
}

/// Removes superseded index files: those `new_files` supersede (`superseded`), and those a
/// crashed run or compaction left. Only files some index file names as superseded are removed,
/// never one merely unknown (a backup whose lock went stale may be writing it now). Returns how
/// many index files are in use.
async fn remove_superseded(
    plan: &mut PrunePlan,
    keys: &Keyring,
    be: &dyn Backend,
    new_files: &[Id],
    superseded: &HashSet<Id>,
) -> Result<usize> {
    let in_use: HashSet<Id> = (plan.tally.files.iter())
        .filter(|f| !superseded.contains(*f))
        .chain(new_files.iter())
        .copied()
        .collect();
    let listed: Vec<Id> = be
        .list(FileType::Index)
        .await?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let mut superseded_known = std::mem::take(&mut plan.tally.superseded_known);
    let mut leftovers = Vec::new();
    for id in &listed {
        if in_use.contains(id) || superseded.contains(id) {
            continue;
        }
        // Superseded leftovers name what they superseded: follow the chain.
        if let Ok(f) = read_index_file(keys, id).await {
            superseded_known.extend(f.supersedes);
        }
        leftovers.push(*id);
    }
    for id in listed.iter().filter(|i| {
        superseded.contains(*i) || (leftovers.contains(*i) && superseded_known.contains(*i))
    }) {
        be.remove(FileType::Index, id).await?;
    }
    Ok(in_use.len())
}

/// Deletes the packs the plan deletes, calling the hook at [`PruneStage::PackDeleted`] after
/// the first.
async fn delete_packs(plan: &PrunePlan, be: &dyn Backend) -> Result<()> {
    let delete = &plan.delete;
    for (n, id) in delete.iter().enumerate() {
        be.remove(FileType::Pack, id).await.map_err(|e| {
            e.context(format!(
                "deleting pack {} ({n} of {} deleted; the rest stay marked)",
                id.short(),
                delete.len()
            ))
        })?;
        if n == 0 {
            plan.opts.reached(PruneStage::PackDeleted);
        }
    }
    Ok(())
}
