//! What a prune did, or with `dry_run` would do: [`PruneReport`], counted in [`PackCount`]s.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A number of packs and their stored size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PackCount {
    /// Packs.
    pub packs: usize,
    /// Their bytes on storage.
    pub bytes: u64,
}

impl PackCount {
    /// Counts one more pack of `bytes`.
    pub(super) fn add(&mut self, bytes: u64) {
        self.packs += 1;
        self.bytes += bytes;
    }
}

/// What a prune did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Snapshots whose trees were walked.
    pub snapshots: usize,
    /// Distinct blobs they use.
    pub blobs_used: u64,
    /// Pack files on storage before.
    pub before: PackCount,
    /// Sealed bytes of the used blobs.
    pub used_bytes: u64,
    /// Sealed bytes of indexed blobs no snapshot uses (second copies included), before.
    pub unused_bytes: u64,
    /// Indexed packs with no used blob: taken out of the index.
    pub unused_packs: PackCount,
    /// Packs repacked: their used blobs copied, the packs taken out of the index.
    pub repacked_packs: PackCount,
    /// Blobs copied by the repack.
    pub repacked_blobs: u64,
    /// Sealed bytes copied by the repack.
    pub repacked_bytes: u64,
    /// New packs written by the repack.
    pub new_packs: PackCount,
    /// Packs no index listed (left by an interrupted backup): marked for deletion.
    pub unindexed_packs: PackCount,
    /// Pending or unindexed packs put back into the index because a snapshot uses their blobs
    /// (a backup that ran with an index older than the mark).
    pub reindexed_packs: PackCount,
    /// Packs deleted by this run.
    pub deleted: PackCount,
    /// Packs pending deletion once this run is over.
    pub pending: PackCount,
    /// When the next pending pack may be deleted (its mark plus the grace period).
    pub next_deletion: Option<DateTime<Utc>>,
    /// Unused bytes left in indexed packs after this run.
    pub unused_bytes_after: u64,
    /// Pack files on storage after.
    pub after: PackCount,
    /// Index files in use before and after.
    pub index_files: (usize, usize),
    /// Problems prune cannot fix and leaves as they are (such as packs missing from storage).
    pub warnings: Vec<String>,
}

impl PruneReport {
    /// Notes that a pending pack may be deleted from `t` (seconds since the epoch) on.
    pub(super) fn due(&mut self, t: i64) {
        let t = DateTime::from_timestamp(t, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.next_deletion = Some(self.next_deletion.map_or(t, |n| n.min(t)));
    }
}
