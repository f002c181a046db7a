//! Step 3 of a prune, **re-index what is needed**: a used blob that no index lists can only be
//! in a pack that a previous prune marked for deletion (or that no index lists); such packs go
//! back into the index. If a used blob is nowhere, prune stops before changing anything.

use super::count::Tally;
use super::ids::IdMap;
use super::mark::UNCLAIMED;
use super::report::PackCount;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::PackRecord;
use crate::pack::{decode_trailer, parse_footer, FOOTER_LEN};
use crate::repository::Keyring;

impl Tally {
    /// Finds a pack for every used blob no index file in use lists, among the pending packs and
    /// the packs on storage (`stored`) no index lists, and adds those packs (counted in
    /// `reindexed`). A backup that read an index older than a prune's mark (its lock had gone
    /// stale, or it read index files a crashed prune had superseded but not yet removed) may
    /// have stored a snapshot that uses blobs of a pack now pending deletion, or of a pack no
    /// index lists.
    pub(super) async fn reindex(
        &mut self,
        keys: &Keyring,
        stored: &IdMap<u64>,
        reindexed: &mut PackCount,
    ) -> Result<()> {
        let mut missing = self.unclaimed().count();
        if missing > 0 {
            for rec in self.reindex_candidates(keys, stored).await {
                if missing == 0 {
                    break;
                }
                let needed = rec
                    .entries
                    .iter()
                    .any(|e| self.used.get(&e.id) == Some(&UNCLAIMED));
                if !needed {
                    continue;
                }
                reindexed.add(stored.get(&rec.id).copied().unwrap_or(0));
                missing -= self.add_reindexed(rec);
            }
        }
        if missing > 0 {
            let some: Vec<String> = self.unclaimed().take(3).map(|id| id.to_hex()).collect();
            return Err(Error::corrupt(format!(
                "{missing} blob(s) that snapshots use are in no index and no pack (such as {}); prune changes nothing while data is missing: run `coffer check`",
                some.join(", ")
            )));
        }
        Ok(())
    }

    /// The stored packs no index file in use lists: the pending ones, then the others (whose
    /// trailers are read; those that cannot be read are left out), each in the order of ids.
    async fn reindex_candidates(&self, keys: &Keyring, stored: &IdMap<u64>) -> Vec<PackRecord> {
        let mut candidates: Vec<PackRecord> = Vec::new();
        let mut ids: Vec<&Id> = self.pending.keys().collect();
        ids.sort();
        for id in ids {
            if !self.indexed(id) && stored.contains_key(id) {
                candidates.push(self.pending[id].record.clone());
            }
        }
        let mut unlisted: Vec<(&Id, &u64)> = stored
            .iter()
            .filter(|(id, _)| !self.indexed(id) && !self.pending.contains_key(*id))
            .collect();
        unlisted.sort();
        for (id, size) in unlisted {
            if let Ok(rec) = read_trailer(keys, id, *size).await {
                candidates.push(rec);
            }
        }
        candidates
    }
}

/// Reads the trailer of a pack no index lists.
pub(super) async fn read_trailer(keys: &Keyring, id: &Id, size: u64) -> Result<PackRecord> {
    if size < FOOTER_LEN as u64 {
        return Err(Error::corrupt(format!("pack {} is too short", id.to_hex())));
    }
    let be = &keys.backend;
    let footer = be
        .read_range(
            FileType::Pack,
            id,
            size - FOOTER_LEN as u64,
            FOOTER_LEN as u64,
        )
        .await?;
    let (salt, tlen) = parse_footer(&footer)?;
    if tlen as u64 + FOOTER_LEN as u64 > size {
        return Err(Error::corrupt("trailer length exceeds the pack"));
    }
    let t = be
        .read_range(
            FileType::Pack,
            id,
            size - FOOTER_LEN as u64 - tlen as u64,
            tlen as u64,
        )
        .await?;
    let entries = decode_trailer(&keys.key, keys.encryption, &salt, &t)?;
    Ok(PackRecord {
        id: *id,
        salt,
        entries,
    })
}
