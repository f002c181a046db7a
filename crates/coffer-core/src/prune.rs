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
//!    is enforced ([`Repository::prune`]).
//!
//! Write order, for crash safety: new packs, then the index files that list them and supersede
//! the old ones, then the removal of superseded index files, then pack deletions. A kill at any
//! moment leaves packs no index lists (harmless; the next prune marks them), index files that
//! are superseded but still present (their packs are all still stored), or pending packs.

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use crate::index::{IndexFile, PackRecord, PendingPack};
use crate::pack::{
    blob_aad, blob_nonce, decode_trailer, parse_footer, BlobType, PackEntry, PackWriter,
    FOOTER_LEN, PACK_TARGET_SIZE,
};
use crate::repository::{read_index_file, Indexed, Keyring, Repository};
use crate::tree::NodeKind;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long a pack stays pending before a prune may delete it: one hour, twice the time after
/// which a lock that is not refreshed counts as stale. A backup holding a live lock keeps prune
/// out entirely; the grace period protects a backup whose lock went stale (a suspended laptop,
/// a lost network) and that resumes with an index read before the mark.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// The most a repack reads from a pack in one request.
const WINDOW: u64 = 8 * 1024 * 1024;

/// Index files rewritten together into one new file (bounds the memory of the rewrite).
const BATCH_PACKS: usize = 16 * 1024;

/// A used blob not yet found in any pack.
const UNCLAIMED: u32 = u32::MAX;

/// Hashes an id by its first 8 bytes: blob ids are keyed hashes, uniform and not chosen by
/// anyone without the key, so this is as good as SipHash and much faster.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        if bytes.len() >= 8 {
            self.0 ^= u64::from_le_bytes(bytes[..8].try_into().unwrap());
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type IdMap<V> = HashMap<Id, V, BuildHasherDefault<IdHasher>>;
type IdSet = HashSet<Id, BuildHasherDefault<IdHasher>>;

/// How much unused space prune tolerates before it repacks (`--max-unused`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnused {
    /// Never repack; only fully unused packs are deleted.
    Unlimited,
    /// At most this share (0..100) of the stored blobs may be unused.
    Percent(f64),
    /// At most this many unused bytes.
    Bytes(u64),
}

impl Default for MaxUnused {
    fn default() -> Self {
        MaxUnused::Percent(10.0)
    }
}

impl MaxUnused {
    /// The unused bytes tolerated next to `used` bytes of used blobs.
    pub fn limit(&self, used: u64) -> u64 {
        match *self {
            MaxUnused::Unlimited => u64::MAX,
            MaxUnused::Bytes(b) => b,
            MaxUnused::Percent(p) if p >= 100.0 => u64::MAX,
            // unused / (used + unused) <= p  <=>  unused <= used * p / (1 - p)
            MaxUnused::Percent(p) => (used as f64 * p / (100.0 - p)) as u64,
        }
    }
}

impl FromStr for MaxUnused {
    type Err = Error;

    /// `10%`, `0%`, `500MiB` (any size `forget --max-size` takes), or `unlimited`.
    fn from_str(s: &str) -> Result<MaxUnused> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(v) if (0.0..=100.0).contains(&v) => Ok(MaxUnused::Percent(v)),
                _ => Err(Error::invalid(format!(
                    "{s:?} is not a percentage from 0% to 100%"
                ))),
            };
        }
        t.parse::<crate::retention::ByteSize>()
            .map(|b| MaxUnused::Bytes(b.0))
            .map_err(|_| {
                Error::invalid(format!(
                    "{s:?} is not a limit: write a percentage (10%), a size (500MiB) or `unlimited`"
                ))
            })
    }
}

impl fmt::Display for MaxUnused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxUnused::Unlimited => f.write_str("unlimited"),
            MaxUnused::Percent(p) => write!(f, "{p}%"),
            MaxUnused::Bytes(b) => write!(f, "{}", crate::retention::ByteSize(*b)),
        }
    }
}

/// The points of a prune run at which [`PruneOptions::hook`] is called (tests kill the process
/// there to prove that a crash at any of them leaves a repository `check` passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PruneStage {
    /// The first batch's new packs are stored; no index lists them yet.
    PacksWritten,
    /// Every new index file is written; the files they supersede are still there.
    IndexWritten,
    /// Superseded index files are removed; no pack is deleted yet.
    IndexCleaned,
    /// The first pack was deleted.
    PackDeleted,
}

impl PruneStage {
    /// Every stage, in the order a run reaches them.
    pub const ALL: [PruneStage; 4] = [
        PruneStage::PacksWritten,
        PruneStage::IndexWritten,
        PruneStage::IndexCleaned,
        PruneStage::PackDeleted,
    ];

    /// Its kebab-case name (`index-written`).
    pub fn name(self) -> &'static str {
        match self {
            PruneStage::PacksWritten => "packs-written",
            PruneStage::IndexWritten => "index-written",
            PruneStage::IndexCleaned => "index-cleaned",
            PruneStage::PackDeleted => "pack-deleted",
        }
    }
}

/// A callback told of each [`PruneStage`] reached.
pub type PruneHook = Arc<dyn Fn(PruneStage) + Send + Sync>;

/// What prune may do.
#[derive(Clone, Default)]
pub struct PruneOptions {
    /// Unused space tolerated before packs are repacked.
    pub max_unused: MaxUnused,
    /// Copy at most this many bytes of used blobs when repacking (`None`: no limit).
    pub max_repack_bytes: Option<u64>,
    /// How long a pack stays pending before it is deleted ([`DEFAULT_GRACE`]; zero deletes in
    /// the same run).
    pub grace: Duration,
    /// Compute and report, change nothing.
    pub dry_run: bool,
    /// Snapshots to count as already deleted (`forget --dry-run --prune`).
    pub ignore_snapshots: Vec<Id>,
    /// Called at each stage (crash tests).
    pub hook: Option<PruneHook>,
}

impl fmt::Debug for PruneOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PruneOptions")
            .field("max_unused", &self.max_unused)
            .field("max_repack_bytes", &self.max_repack_bytes)
            .field("grace", &self.grace)
            .field("dry_run", &self.dry_run)
            .field("ignore_snapshots", &self.ignore_snapshots.len())
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl PruneOptions {
    /// The defaults: 10% unused tolerated, one hour of grace.
    pub fn new() -> Self {
        PruneOptions {
            grace: DEFAULT_GRACE,
            ..Default::default()
        }
    }

    fn reached(&self, stage: PruneStage) {
        if let Some(h) = &self.hook {
            h(stage);
        }
    }
}

/// A number of packs and their stored size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PackCount {
    /// Packs.
    pub packs: usize,
    /// Their bytes on storage.
    pub bytes: u64,
}

impl PackCount {
    fn add(&mut self, bytes: u64) {
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
    fn due(&mut self, t: i64) {
        let t = DateTime::from_timestamp(t, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.next_deletion = Some(self.next_deletion.map_or(t, |n| n.min(t)));
    }
}

/// What one indexed pack holds.
struct PackStat {
    id: Id,
    blobs: u32,
    bytes: u64,
    used_blobs: u32,
    used_bytes: u64,
    /// Positions (in the sorted list of index files in use) of the files that list it.
    files: Vec<u32>,
    /// Set for a pending or unindexed pack this run puts back into the index.
    reindex: Option<PackRecord>,
    fate: Fate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Unused,
    Repack,
}

/// A pack listed as pending deletion by an index file in use.
struct Pending {
    marked: i64,
    record: PackRecord,
    files: Vec<u32>,
    fate: PendingFate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingFate {
    /// Still within its grace period.
    Wait,
    /// In the index again, or already gone from storage: forget the entry.
    Forget,
    /// Grace period over, nothing needs it: delete.
    Delete,
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

/// Reads the trailer of a pack no index lists.
async fn read_trailer(keys: &Keyring, id: &Id, size: u64) -> Result<PackRecord> {
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

/// Builds the new packs of a repack, data and trees apart (as backups do).
struct Repacker {
    keys: Arc<Keyring>,
    writers: [Option<PackWriter>; 2],
    done: Vec<PackRecord>,
    new_packs: PackCount,
    blobs: u64,
    bytes: u64,
}

impl Repacker {
    /// Copies the blobs of `pack` that `keep` selects into new packs.
    async fn copy(&mut self, pack: &PackRecord, keep: impl Fn(&PackEntry) -> bool) -> Result<()> {
        let mut entries: Vec<PackEntry> =
            pack.entries.iter().filter(|e| keep(e)).copied().collect();
        entries.sort_by_key(|e| e.offset);
        let cipher = self.keys.key.cipher(self.keys.encryption, &pack.salt);
        let mut i = 0;
        while i < entries.len() {
            let start = entries[i].offset as u64;
            let mut j = i + 1;
            while j < entries.len()
                && entries[j].offset as u64 + entries[j].length as u64 - start <= WINDOW
            {
                j += 1;
            }
            let end = entries[j - 1].offset as u64 + entries[j - 1].length as u64;
            let window = self
                .keys
                .backend
                .read_range(FileType::Pack, &pack.id, start, end - start)
                .await
                .map_err(|e| e.context(format!("repacking pack {}", pack.id.to_hex())))?;
            for e in &entries[i..j] {
                let s = (e.offset as u64 - start) as usize;
                let sealed = &window[s..s + e.length as usize];
                // Opening authenticates the blob (type and id are its associated data); it is
                // sealed again, still framed (compressed) as it was, under the new pack's key.
                let framed = cipher
                    .open(&blob_nonce(e.offset), &blob_aad(e.blob_type, &e.id), sealed)
                    .map_err(|err| {
                        err.context(format!(
                            "repacking: blob {} in pack {} is damaged (nothing was deleted; run `coffer check --read-data`)",
                            e.id.to_hex(),
                            pack.id.to_hex()
                        ))
                    })?;
                let slot = &mut self.writers[e.blob_type as usize];
                let w = slot
                    .get_or_insert_with(|| PackWriter::new(&self.keys.key, self.keys.encryption));
                w.add(e.blob_type, e.id, &framed, e.ulen);
                self.blobs += 1;
                self.bytes += e.length as u64;
                if w.size() >= PACK_TARGET_SIZE {
                    let w = slot.take().expect("writer present");
                    self.upload(w).await?;
                }
            }
            i = j;
        }
        Ok(())
    }

    async fn upload(&mut self, w: PackWriter) -> Result<()> {
        let p = w.finish();
        self.keys
            .backend
            .write(FileType::Pack, &p.id, p.data.clone())
            .await?;
        self.new_packs.add(p.data.len() as u64);
        self.done.push(PackRecord {
            id: p.id,
            salt: p.salt,
            entries: p.entries,
        });
        Ok(())
    }

    /// Closes the open packs and returns every pack written since the last call.
    async fn flush(&mut self) -> Result<Vec<PackRecord>> {
        for t in [BlobType::Data, BlobType::Tree] {
            if let Some(w) = self.writers[t as usize].take() {
                if !w.is_empty() {
                    self.upload(w).await?;
                }
            }
        }
        Ok(std::mem::take(&mut self.done))
    }
}

/// Walks every snapshot's trees; returns each used blob id (mapped to [`UNCLAIMED`]).
async fn mark(
    repo: &Repository<Indexed>,
    snaps: &[crate::snapshot::Snapshot],
) -> Result<IdMap<u32>> {
    let reader = repo.blob_reader();
    let mut used: IdMap<u32> = IdMap::default();
    // Trees apart: a data chunk could have the same bytes, hence the same id, as a tree, and
    // the tree must still be walked.
    let mut trees: IdSet = IdSet::default();
    let mut stack: Vec<(Id, Id)> = Vec::new();
    for s in snaps {
        if trees.insert(s.tree) {
            stack.push((s.tree, s.id));
        }
    }
    while !stack.is_empty() {
        let batch = stack.split_off(stack.len().saturating_sub(64));
        let ids: Vec<Id> = batch.iter().map(|(t, _)| *t).collect();
        let loaded: Vec<_> = futures::stream::iter(ids.into_iter().map(|t| {
            let reader = reader.clone();
            async move { reader.load_tree(&t).await }
        }))
        .buffered(16)
        .collect()
        .await;
        for ((tid, snap), tree) in batch.into_iter().zip(loaded) {
            let tree = tree.map_err(|e| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "snapshot {}: tree {} cannot be read ({e:#}); prune changes nothing while a snapshot is damaged: run `coffer check`",
                        snap.short(),
                        tid.short()
                    ),
                )
            })?;
            used.insert(tid, UNCLAIMED);
            for n in tree.nodes {
                for c in n.content {
                    used.insert(c, UNCLAIMED);
                }
                if n.kind == NodeKind::Dir {
                    if let Some(sub) = n.subtree {
                        if trees.insert(sub) {
                            stack.push((sub, snap));
                        }
                    }
                }
            }
        }
    }
    Ok(used)
}

impl Repository<Indexed> {
    /// Prunes the repository (see the module documentation). The caller holds the exclusive
    /// lock (a shared one is enough with `dry_run`). This handle's index is stale afterwards.
    pub async fn prune(&self, opts: &PruneOptions) -> Result<PruneReport> {
        let keys = self.keyring().clone();
        let be = self.backend().clone();
        let now = Utc::now().timestamp();
        let grace = i64::try_from(opts.grace.as_secs()).unwrap_or(i64::MAX);
        let mut r = PruneReport {
            dry_run: opts.dry_run,
            ..Default::default()
        };
        let stored: IdMap<u64> = be.list(FileType::Pack).await?.into_iter().collect();
        for size in stored.values() {
            r.before.add(*size);
        }

        // Blobs of pending packs are out of the index, but a snapshot written by a backup that
        // read an older index may use them (step 3): make its trees readable for the walk.
        {
            let mut idx = self.shared_index().write().unwrap();
            for p in self.pending_packs() {
                if stored.contains_key(&p.pack.id) {
                    idx.add_pack(p.pack.id, p.pack.salt, &p.pack.entries);
                }
            }
            idx.compact();
        }

        // 1. Mark.
        let ignore: HashSet<Id> = opts.ignore_snapshots.iter().copied().collect();
        let snaps: Vec<_> = self
            .list_snapshots()
            .await?
            .into_iter()
            .filter(|s| !ignore.contains(&s.id))
            .collect();
        r.snapshots = snaps.len();
        let clock = std::time::Instant::now();
        let mut used = mark(self, &snaps).await?;
        drop(snaps);
        r.blobs_used = used.len() as u64;
        tracing::info!(
            "prune: mark: {} snapshots use {} blobs ({:.2}s)",
            r.snapshots,
            r.blobs_used,
            clock.elapsed().as_secs_f64()
        );
        let clock = std::time::Instant::now();

        // 2. Count, per pack, from the index files in use (in a fixed order, so that the copy of
        //    a blob stored twice that counts as used is the same every time).
        let mut files: Vec<Id> = self.index_files().to_vec();
        files.sort();
        r.index_files.0 = files.len();
        let mut packs: Vec<PackStat> = Vec::new();
        let mut pack_no: IdMap<u32> = IdMap::default();
        let mut pending: IdMap<Pending> = IdMap::default();
        let mut superseded_known: HashSet<Id> = HashSet::new();
        {
            let mut stream = futures::stream::iter(files.clone().into_iter().map(|id| {
                let keys = keys.clone();
                async move { read_index_file(&keys, &id).await }
            }))
            .buffered(8);
            let mut fno = 0u32;
            while let Some(f) = stream.next().await {
                let f = f?;
                superseded_known.extend(f.supersedes.iter().copied());
                for p in &f.packs {
                    let no = *pack_no.entry(p.id).or_insert_with(|| {
                        packs.push(PackStat {
                            id: p.id,
                            blobs: 0,
                            bytes: 0,
                            used_blobs: 0,
                            used_bytes: 0,
                            files: Vec::new(),
                            reindex: None,
                            fate: Fate::Keep,
                        });
                        (packs.len() - 1) as u32
                    });
                    let st = &mut packs[no as usize];
                    let first = st.files.is_empty();
                    if st.files.last() != Some(&fno) {
                        st.files.push(fno);
                    }
                    if first {
                        claim(&mut used, st, no, &p.entries);
                    }
                }
                for pp in f.pending {
                    let e = pending.entry(pp.pack.id).or_insert_with(|| Pending {
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
                fno += 1;
            }
        }

        tracing::info!(
            "prune: count: {} index files, {} packs ({:.2}s)",
            files.len(),
            packs.len(),
            clock.elapsed().as_secs_f64()
        );
        let clock = std::time::Instant::now();

        // 3. Used blobs no index lists. A backup that read an index older than a prune's mark
        //    (its lock had gone stale, or it read index files a crashed prune had superseded
        //    but not yet removed) may have stored a snapshot that uses blobs of a pack now
        //    pending deletion, or of a pack no index lists: those packs go back into the index.
        let mut missing = used.values().filter(|c| **c == UNCLAIMED).count();
        if missing > 0 {
            let mut candidates: Vec<PackRecord> = Vec::new();
            let mut ids: Vec<&Id> = pending.keys().collect();
            ids.sort();
            for id in ids {
                if !pack_no.contains_key(id) && stored.contains_key(id) {
                    candidates.push(pending[id].record.clone());
                }
            }
            let mut unlisted: Vec<(&Id, &u64)> = stored
                .iter()
                .filter(|(id, _)| !pack_no.contains_key(*id) && !pending.contains_key(*id))
                .collect();
            unlisted.sort();
            for (id, size) in unlisted {
                if let Ok(rec) = read_trailer(&keys, id, *size).await {
                    candidates.push(rec);
                }
            }
            for rec in candidates {
                if missing == 0 {
                    break;
                }
                let needed = rec
                    .entries
                    .iter()
                    .any(|e| used.get(&e.id) == Some(&UNCLAIMED));
                if !needed {
                    continue;
                }
                let no = packs.len() as u32;
                let mut st = PackStat {
                    id: rec.id,
                    blobs: 0,
                    bytes: 0,
                    used_blobs: 0,
                    used_bytes: 0,
                    files: Vec::new(),
                    reindex: None,
                    fate: Fate::Keep,
                };
                claim(&mut used, &mut st, no, &rec.entries);
                missing -= st.used_blobs as usize;
                r.reindexed_packs
                    .add(stored.get(&rec.id).copied().unwrap_or(0));
                st.reindex = Some(rec);
                pack_no.insert(st.id, no);
                packs.push(st);
            }
        }
        if missing > 0 {
            let some: Vec<String> = used
                .iter()
                .filter(|(_, c)| **c == UNCLAIMED)
                .take(3)
                .map(|(id, _)| id.to_hex())
                .collect();
            return Err(Error::corrupt(format!(
                "{missing} blob(s) that snapshots use are in no index and no pack (such as {}); prune changes nothing while data is missing: run `coffer check`",
                some.join(", ")
            )));
        }

        // 4. Decide.
        let mut candidates: Vec<u32> = Vec::new();
        for (no, st) in packs.iter_mut().enumerate() {
            r.used_bytes += st.used_bytes;
            r.unused_bytes += st.bytes - st.used_bytes;
            let size = stored.get(&st.id).copied();
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
        let mut unused_left: u64 = packs
            .iter()
            .filter(|p| p.fate == Fate::Keep)
            .map(|p| p.bytes - p.used_bytes)
            .sum();
        let limit = opts.max_unused.limit(r.used_bytes);
        // Most unused share first: each repacked byte frees the most.
        candidates.sort_by(|a, b| {
            let (a, b) = (&packs[*a as usize], &packs[*b as usize]);
            let ra = (a.bytes - a.used_bytes) as f64 / a.bytes.max(1) as f64;
            let rb = (b.bytes - b.used_bytes) as f64 / b.bytes.max(1) as f64;
            rb.total_cmp(&ra).then(a.id.cmp(&b.id))
        });
        let mut budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
        for no in candidates {
            if unused_left <= limit {
                break;
            }
            let st = &mut packs[no as usize];
            if st.used_bytes > budget {
                continue;
            }
            budget -= st.used_bytes;
            unused_left -= st.bytes - st.used_bytes;
            st.fate = Fate::Repack;
            r.repacked_packs
                .add(stored.get(&st.id).copied().unwrap_or(0));
        }
        r.unused_bytes_after = unused_left;

        // Packs no index lists: left by an interrupted backup (or being written by a backup
        // whose lock went stale, hence the grace period for them too).
        let mut unlisted: Vec<(Id, u64)> = stored
            .iter()
            .filter(|(id, _)| !pack_no.contains_key(*id) && !pending.contains_key(*id))
            .map(|(id, s)| (*id, *s))
            .collect();
        unlisted.sort();
        for (_, size) in &unlisted {
            r.unindexed_packs.add(*size);
        }

        // Phase 2's rule, enforced here. A pending pack is deleted only if (a) its grace period
        // has passed since it was marked, (b) no index file in use lists it as a pack (a
        // `coffer index` rebuild or a re-index by step 3 may have put it back), and (c) no
        // snapshot uses a blob found only in it (step 3 re-indexed every such pack, so (c)
        // follows from (b)). Every snapshot written so far was walked above, under the exclusive
        // lock; a backup still running with an index from before the mark would have to have
        // held no live lock for the whole grace period. Index files that list it and are
        // superseded are removed before any pack is deleted.
        let mut delete: Vec<Id> = Vec::new();
        let mut affected: HashSet<u32> = HashSet::new();
        let mut pending_ids: Vec<Id> = pending.keys().copied().collect();
        pending_ids.sort();
        for id in &pending_ids {
            let p = pending.get_mut(id).expect("listed");
            p.fate = if pack_no.contains_key(id) || !stored.contains_key(id) {
                PendingFate::Forget
            } else if now.saturating_sub(p.marked) >= grace {
                delete.push(*id);
                r.deleted.add(stored[id]);
                PendingFate::Delete
            } else {
                r.pending.add(stored[id]);
                r.due(p.marked.saturating_add(grace));
                PendingFate::Wait
            };
            if p.fate != PendingFate::Wait {
                affected.extend(p.files.iter().copied());
            }
        }
        for st in &packs {
            if st.fate != Fate::Keep {
                affected.extend(st.files.iter().copied());
            }
        }
        // Packs this run takes out of the index (or never indexed) are deleted now when there
        // is no grace period, else marked.
        let newly: Vec<(Id, u64)> = packs
            .iter()
            .filter(|p| p.fate != Fate::Keep)
            .map(|p| (p.id, stored.get(&p.id).copied().unwrap_or(0)))
            .chain(unlisted.iter().copied())
            .collect();
        let delete_now = grace == 0;
        for (id, size) in &newly {
            if !stored.contains_key(id) {
                continue;
            }
            if delete_now {
                delete.push(*id);
                r.deleted.add(*size);
            } else {
                r.pending.add(*size);
                r.due(now.saturating_add(grace));
            }
        }
        r.after = PackCount {
            packs: r.before.packs - r.deleted.packs,
            bytes: r.before.bytes - r.deleted.bytes,
        };
        if opts.dry_run {
            // New packs are estimated at the bytes they would copy.
            let copied: u64 = packs
                .iter()
                .filter(|p| p.fate == Fate::Repack)
                .map(|p| p.used_bytes)
                .sum();
            r.repacked_bytes = copied;
            r.repacked_blobs = packs
                .iter()
                .filter(|p| p.fate == Fate::Repack)
                .map(|p| p.used_blobs as u64)
                .sum();
            r.after.bytes += copied;
            r.index_files.1 = r.index_files.0;
            return Ok(r);
        }

        // 5. Phase 1: new packs, then index files that list them and supersede the old ones.
        let mut affected: Vec<u32> = affected.into_iter().collect();
        affected.sort();
        let mut extras_packs: Vec<PackRecord> =
            packs.iter_mut().filter_map(|p| p.reindex.take()).collect();
        let mut extras_pending: Vec<PendingPack> = Vec::new();
        for (id, size) in &unlisted {
            if delete_now {
                continue;
            }
            // Their content is recorded (from the trailer) so that step 3 can re-index them
            // without reading them again.
            let pack = read_trailer(&keys, id, *size)
                .await
                .unwrap_or_else(|_| PackRecord {
                    id: *id,
                    salt: [0; 32],
                    entries: Vec::new(),
                });
            extras_pending.push(PendingPack { marked: now, pack });
        }
        let mut repacker = Repacker {
            keys: keys.clone(),
            writers: [None, None],
            done: Vec::new(),
            new_packs: PackCount::default(),
            blobs: 0,
            bytes: 0,
        };
        let mut new_files: Vec<Id> = Vec::new();
        let mut superseded_now: HashSet<Id> = HashSet::new();
        let mut emitted: IdSet = IdSet::default();
        let mut repacked: IdSet = IdSet::default();
        let mut packs_reached = false;
        for p in &extras_packs {
            emitted.insert(p.id);
        }
        for p in &extras_pending {
            emitted.insert(p.pack.id);
        }
        let mut batches: Vec<Vec<u32>> = Vec::new();
        {
            // Weight of a file: the packs it lists (counted from the stats, not re-read).
            let mut per_file = vec![0usize; files.len()];
            for p in &packs {
                for f in &p.files {
                    per_file[*f as usize] += 1;
                }
            }
            let mut cur: Vec<u32> = Vec::new();
            let mut weight = 0usize;
            for fno in affected {
                weight += per_file[fno as usize].max(1);
                cur.push(fno);
                if weight >= BATCH_PACKS {
                    batches.push(std::mem::take(&mut cur));
                    weight = 0;
                }
            }
            if !cur.is_empty() || !extras_packs.is_empty() || !extras_pending.is_empty() {
                batches.push(cur);
            }
        }
        for batch in batches {
            let mut out = IndexFile::default();
            out.packs.append(&mut extras_packs);
            out.pending.append(&mut extras_pending);
            for fno in batch {
                let fid = files[fno as usize];
                let f = read_index_file(&keys, &fid).await?;
                out.supersedes.push(fid);
                for p in f.packs {
                    let no = pack_no[&p.id];
                    let fate = packs[no as usize].fate;
                    if fate == Fate::Repack && repacked.insert(p.id) {
                        repacker.copy(&p, |e| used.get(&e.id) == Some(&no)).await?;
                    }
                    if !emitted.insert(p.id) {
                        continue; // listed by two files: once is enough
                    }
                    if fate == Fate::Keep {
                        out.packs.push(p);
                    } else if stored.contains_key(&p.id) && !delete_now {
                        out.pending.push(PendingPack {
                            marked: now,
                            pack: p,
                        });
                    }
                }
                for pp in f.pending {
                    let p = &pending[&pp.pack.id];
                    if p.fate == PendingFate::Wait && emitted.insert(pp.pack.id) {
                        out.pending.push(PendingPack {
                            marked: p.marked,
                            pack: pp.pack,
                        });
                    }
                }
            }
            out.packs.extend(repacker.flush().await?);
            if !packs_reached {
                packs_reached = true;
                opts.reached(PruneStage::PacksWritten);
            }
            if out.supersedes.is_empty() && out.packs.is_empty() && out.pending.is_empty() {
                continue;
            }
            superseded_now.extend(out.supersedes.iter().copied());
            new_files.push(keys.write_index_file(&out).await?);
        }
        tracing::info!(
            "prune: decide, repack and write the index: {} packs repacked, {} index files written ({:.2}s)",
            r.repacked_packs.packs,
            new_files.len(),
            clock.elapsed().as_secs_f64()
        );
        let clock = std::time::Instant::now();
        r.repacked_blobs = repacker.blobs;
        r.repacked_bytes = repacker.bytes;
        r.new_packs = repacker.new_packs;
        r.after.packs += r.new_packs.packs;
        r.after.bytes += r.new_packs.bytes;
        if !packs_reached {
            opts.reached(PruneStage::PacksWritten);
        }
        opts.reached(PruneStage::IndexWritten);

        // Remove superseded index files: ours, and those a crashed run or compaction left. Only
        // files some index file names as superseded are removed, never one merely unknown (a
        // backup whose lock went stale may be writing it now).
        let in_use: HashSet<Id> = files
            .iter()
            .filter(|f| !superseded_now.contains(*f))
            .chain(new_files.iter())
            .copied()
            .collect();
        let listed: Vec<Id> = be
            .list(FileType::Index)
            .await?
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        let mut leftovers = Vec::new();
        for id in &listed {
            if in_use.contains(id) || superseded_now.contains(id) {
                continue;
            }
            // Superseded leftovers name what they superseded: follow the chain.
            if let Ok(f) = read_index_file(&keys, id).await {
                superseded_known.extend(f.supersedes);
            }
            leftovers.push(*id);
        }
        for id in listed.iter().filter(|i| {
            superseded_now.contains(*i) || (leftovers.contains(*i) && superseded_known.contains(*i))
        }) {
            be.remove(FileType::Index, id).await?;
        }
        r.index_files.1 = in_use.len();
        opts.reached(PruneStage::IndexCleaned);

        tracing::info!(
            "prune: superseded index files removed ({:.2}s)",
            clock.elapsed().as_secs_f64()
        );
        let clock = std::time::Instant::now();

        // 6. Phase 2: delete.
        delete.sort();
        delete.dedup();
        for (n, id) in delete.iter().enumerate() {
            be.remove(FileType::Pack, id).await.map_err(|e| {
                e.context(format!(
                    "deleting pack {} ({n} of {} deleted; the rest stay marked)",
                    id.short(),
                    delete.len()
                ))
            })?;
            if n == 0 {
                opts.reached(PruneStage::PackDeleted);
            }
        }
        tracing::info!(
            "prune: delete: {} packs ({:.2}s)",
            delete.len(),
            clock.elapsed().as_secs_f64()
        );
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::CheckOptions;
    use crate::keyfile::KdfParams;
    use crate::memory::MemoryBackend;
    use crate::snapshot::{Snapshot, SourceInfo};
    use crate::tree::{Node, Tree};
    use crate::{Backend, BackupOptions, BackupSession, InitOptions};

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn snapshot(tree: Id) -> Snapshot {
        let source = SourceInfo {
            kind: "test".into(),
            location: "memory".into(),
            paths: vec![],
        };
        Snapshot::new(source, tree)
    }

    /// Stores each content as one file of a one-level tree; returns the root tree id.
    fn store_files(s: &BackupSession, contents: &[&[u8]]) -> Id {
        let nodes = contents
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let sc = s.save_stream(*c).unwrap();
                let mut n = Node::new(format!("f{i}").into_bytes(), NodeKind::File);
                n.content = sc.chunks;
                n.size = sc.size;
                n
            })
            .collect();
        s.save_tree(&Tree { nodes }).unwrap()
    }

    async fn new_repo() -> Arc<MemoryBackend> {
        let be = Arc::new(MemoryBackend::new());
        Repository::new(be.clone())
            .init(
                b"pw",
                InitOptions {
                    kdf: KdfParams {
                        m_cost: 64,
                        t_cost: 1,
                        p_cost: 1,
                    },
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        be
    }

    async fn reopen(be: &Arc<MemoryBackend>) -> Repository<Indexed> {
        Repository::new(be.clone())
            .open(b"pw")
            .await
            .unwrap()
            .load_index()
            .await
            .unwrap()
    }

    /// Backs up `contents` as one snapshot; returns its id.
    async fn backup(be: &Arc<MemoryBackend>, contents: &[&[u8]]) -> Id {
        let repo = reopen(be).await;
        let s = Arc::new(repo.start_backup(BackupOptions::default()));
        let s2 = s.clone();
        let contents: Vec<Vec<u8>> = contents.iter().map(|c| c.to_vec()).collect();
        let tree = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = contents.iter().map(|c| c.as_slice()).collect();
            store_files(&s2, &refs)
        })
        .await
        .unwrap();
        let s = Arc::into_inner(s).unwrap();
        s.finish(snapshot(tree)).await.unwrap().id
    }

    async fn check_ok(be: &Arc<MemoryBackend>) -> crate::check::CheckReport {
        let r = reopen(be)
            .await
            .check(&CheckOptions {
                read_data: true,
                subset: None,
            })
            .await
            .unwrap();
        assert!(r.ok, "check failed: {:?}", r.errors);
        r
    }

    async fn restore_all(be: &Arc<MemoryBackend>) -> Vec<Vec<Vec<u8>>> {
        let repo = reopen(be).await;
        let reader = repo.blob_reader();
        let mut out = Vec::new();
        for s in repo.list_snapshots().await.unwrap() {
            let t = reader.load_tree(&s.tree).await.unwrap();
            let mut files = Vec::new();
            for n in t.nodes {
                let mut v = Vec::new();
                for c in n.content {
                    v.extend(reader.read_blob(&c).await.unwrap());
                }
                files.push(v);
            }
            out.push(files);
        }
        out
    }

    fn opts(grace: u64) -> PruneOptions {
        PruneOptions {
            grace: Duration::from_secs(grace),
            ..PruneOptions::new()
        }
    }

    async fn prune(be: &Arc<MemoryBackend>, o: &PruneOptions) -> PruneReport {
        reopen(be).await.prune(o).await.unwrap()
    }

    fn pack_count(be: &MemoryBackend) -> usize {
        futures::executor::block_on(be.list(FileType::Pack))
            .unwrap()
            .len()
    }

    #[test]
    fn max_unused_parses_and_limits() {
        assert_eq!(
            "10%".parse::<MaxUnused>().unwrap(),
            MaxUnused::Percent(10.0)
        );
        assert_eq!(
            "unlimited".parse::<MaxUnused>().unwrap(),
            MaxUnused::Unlimited
        );
        assert_eq!(
            "1MiB".parse::<MaxUnused>().unwrap(),
            MaxUnused::Bytes(1 << 20)
        );
        assert!("101%".parse::<MaxUnused>().is_err());
        assert!("lots".parse::<MaxUnused>().is_err());
        // 10% of the total: 900 used allow 100 unused.
        assert_eq!(MaxUnused::Percent(10.0).limit(900), 100);
        assert_eq!(MaxUnused::Percent(0.0).limit(900), 0);
        assert_eq!(MaxUnused::Percent(100.0).limit(900), u64::MAX);
    }

    #[test]
    fn the_id_hasher_spreads_ids() {
        let mut m: IdMap<u32> = IdMap::default();
        for i in 0..1000u32 {
            m.insert(Id::sha256(&i.to_le_bytes()), i);
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m[&Id::sha256(&7u32.to_le_bytes())], 7);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn unused_packs_are_marked_then_deleted_after_the_grace_period() {
        let be = new_repo().await;
        let a = data(300_000, 1);
        let b = data(300_000, 2);
        let first = backup(&be, &[&a]).await;
        backup(&be, &[&b]).await;
        reopen(&be).await.delete_snapshot(&first).await.unwrap();
        let before = pack_count(&be);

        // Phase 1: marked, nothing deleted; check is happy and says so.
        let r = prune(&be, &opts(3600)).await;
        assert_eq!(r.unused_packs.packs, 2, "{r:?}"); // a's data pack and its tree pack
        assert_eq!(r.deleted.packs, 0);
        assert_eq!(r.pending.packs, 2);
        assert!(r.next_deletion.unwrap() > Utc::now());
        assert_eq!(pack_count(&be), before);
        let c = check_ok(&be).await;
        assert_eq!(c.pending_packs, 2);
        assert!(c.notes.iter().any(|n| n.contains("pending deletion")));

        // Within the grace period a second run deletes nothing and keeps the marks.
        let r = prune(&be, &opts(3600)).await;
        assert_eq!((r.deleted.packs, r.pending.packs), (0, 2));

        // Phase 2: the grace period is over.
        let r = prune(&be, &opts(0)).await;
        assert_eq!(r.deleted.packs, 2, "{r:?}");
        assert_eq!(r.pending.packs, 0);
        assert_eq!(pack_count(&be), before - 2);
        let c = check_ok(&be).await;
        assert_eq!(c.pending_packs, 0);
        assert_eq!(restore_all(&be).await, vec![vec![b.clone()]]);
        // Nothing left to do.
        let r = prune(&be, &opts(0)).await;
        assert_eq!((r.deleted.packs, r.unused_bytes), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn partly_used_packs_are_repacked_and_the_rest_is_freed() {
        let be = new_repo().await;
        let a = data(400_000, 3);
        let b = data(400_000, 4);
        let c = data(400_000, 5);
        let first = backup(&be, &[&a, &b, &c]).await;
        backup(&be, &[&b]).await;
        reopen(&be).await.delete_snapshot(&first).await.unwrap();
        let r = prune(&be, &opts(0)).await;
        assert_eq!(r.repacked_packs.packs, 1, "{r:?}");
        assert!(r.repacked_blobs >= 1);
        assert!(r.new_packs.packs >= 1);
        assert_eq!(r.unused_bytes_after, 0);
        check_ok(&be).await;
        assert_eq!(restore_all(&be).await, vec![vec![b.clone()]]);
        // With --max-unused unlimited nothing would have been repacked.
        let r = prune(
            &be,
            &PruneOptions {
                max_unused: MaxUnused::Unlimited,
                ..opts(0)
            },
        )
        .await;
        assert_eq!(r.repacked_packs.packs, 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_dry_run_changes_nothing() {
        let be = new_repo().await;
        let first = backup(&be, &[&data(200_000, 6)]).await;
        backup(&be, &[&data(200_000, 7)]).await;
        reopen(&be).await.delete_snapshot(&first).await.unwrap();
        let objects = |be: &MemoryBackend| {
            let mut v = Vec::new();
            for ft in [FileType::Pack, FileType::Index] {
                v.extend(futures::executor::block_on(be.list(ft)).unwrap());
            }
            v.sort();
            v
        };
        let before = objects(&be);
        let r = prune(
            &be,
            &PruneOptions {
                dry_run: true,
                ..opts(0)
            },
        )
        .await;
        assert!(r.dry_run);
        assert_eq!(r.deleted.packs, 2);
        assert_eq!(objects(&be), before);
    }

    /// A backup that loaded its index before a prune's mark (its lock went stale) finishes
    /// between the two phases and uses a blob of a pending pack: that pack goes back into the
    /// index instead of being deleted.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_pending_blob_reused_by_a_concurrent_backup_survives() {
        let be = new_repo().await;
        let a = data(300_000, 8);
        let first = backup(&be, &[&a]).await;
        // The late backup opens the repository now, sees `a` in the index...
        let late = reopen(&be).await;
        reopen(&be).await.delete_snapshot(&first).await.unwrap();
        // ...prune marks a's packs...
        let r = prune(&be, &opts(3600)).await;
        assert_eq!(r.pending.packs, 2);
        // ...and the late backup deduplicates against them.
        let s = Arc::new(late.start_backup(BackupOptions::default()));
        let s2 = s.clone();
        let a2 = a.clone();
        let tree = tokio::task::spawn_blocking(move || store_files(&s2, &[&a2]))
            .await
            .unwrap();
        let s = Arc::into_inner(s).unwrap();
        assert_eq!(
            s.counters()
                .blobs_added
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        s.finish(snapshot(tree)).await.unwrap();

        // Phase 2 finds the snapshot using the pending packs and re-indexes them.
        let r = prune(&be, &opts(0)).await;
        assert_eq!(r.reindexed_packs.packs, 2, "{r:?}");
        assert_eq!(r.deleted.packs, 0);
        check_ok(&be).await;
        assert_eq!(restore_all(&be).await, vec![vec![a.clone()]]);
    }

    /// A kill at each stage leaves a repository check passes, and the next prune finishes.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_crash_at_any_stage_leaves_a_sound_repository() {
        for stage in PruneStage::ALL {
            let be = new_repo().await;
            let a = data(300_000, 9);
            let b = data(300_000, 10);
            let first = backup(&be, &[&a, &b]).await;
            backup(&be, &[&b]).await;
            backup(&be, &[&data(100_000, 11)]).await;
            reopen(&be).await.delete_snapshot(&first).await.unwrap();
            let o = PruneOptions {
                hook: Some(Arc::new(move |s| {
                    if s == stage {
                        panic!("crash at {}", s.name());
                    }
                })),
                ..opts(0)
            };
            let repo = reopen(&be).await;
            let crashed = tokio::spawn(async move { repo.prune(&o).await }).await;
            assert!(crashed.is_err(), "the hook stops the run at {stage:?}");
            check_ok(&be).await;
            let r = prune(&be, &opts(0)).await;
            assert_eq!(r.pending.packs, 0, "{stage:?}: {r:?}");
            check_ok(&be).await;
            let r = prune(&be, &opts(0)).await;
            assert_eq!(
                (r.deleted.packs, r.repacked_packs.packs, r.unused_bytes),
                (0, 0, 0),
                "{stage:?}: {r:?}"
            );
            let restored = restore_all(&be).await;
            assert!(restored.contains(&vec![b.clone()]), "{stage:?}");
            assert_eq!(restored.len(), 2);
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn index_compaction_keeps_pending_packs_pending() {
        let be = new_repo().await;
        let first = backup(&be, &[&data(200_000, 12)]).await;
        backup(&be, &[&data(200_000, 13)]).await;
        backup(&be, &[&data(200_000, 14)]).await;
        reopen(&be).await.delete_snapshot(&first).await.unwrap();
        prune(&be, &opts(3600)).await;
        let repo = reopen(&be).await;
        assert_eq!(repo.pending_packs().len(), 2);
        let (before, after) = repo.compact_index().await.unwrap();
        assert!(before > 1 && after == 1);
        assert_eq!(reopen(&be).await.pending_packs().len(), 2);
        let r = prune(&be, &opts(0)).await;
        assert_eq!(r.deleted.packs, 2);
        check_ok(&be).await;
    }
}
