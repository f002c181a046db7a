//! `check`: the repository's structure (every index entry points into an existing pack, every
//! snapshot's trees are complete) and, with `read_data`, every byte of the chosen packs. Packs a
//! prune marked for deletion (see `crate::prune`) are reported as pending, never as errors, and
//! are not read: no snapshot depends on them.

use crate::backend::FileType;
use crate::error::{ErrorKind, Result};
use crate::id::Id;
use crate::index::BlobLocation;
use crate::pack::{decode_trailer, parse_footer, read_windows, BlobType, FOOTER_LEN, READ_WINDOW};
use crate::repository::{Indexed, Repository};
use crate::tree::NodeKind;
use serde::Serialize;
use sha2::Digest;
use std::collections::{HashMap, HashSet};

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Read and authenticate pack data.
    pub read_data: bool,
    /// Read only this fraction (0..=1] of the packs, chosen at random.
    pub subset: Option<f64>,
}

/// The findings of `check` or `verify`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Whether nothing was damaged or missing.
    pub ok: bool,
    /// Damage and missing data, each naming the objects involved.
    pub errors: Vec<String>,
    /// Harmless findings (such as packs left by an interrupted backup).
    pub notes: Vec<String>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Packs in the repository.
    pub packs: usize,
    /// Packs read (with `read_data`).
    pub packs_read: usize,
    /// Blobs in the index.
    pub blobs: usize,
    /// Packs on storage that a prune marked for deletion (not in the index).
    pub pending_packs: usize,
    /// Damaged or missing blob ids.
    #[serde(skip)]
    pub bad_blobs: HashSet<Id>,
    /// Snapshots affected by damage.
    pub affected_snapshots: Vec<String>,
}

impl Repository<Indexed> {
    /// Checks the repository and every snapshot it lists now. Snapshots written after this
    /// repository's index was loaded (by a backup running meanwhile) may use blobs the loaded
    /// index lacks: callers that run beside backups list the snapshots first, then load the
    /// index, and call [`Repository::check_snapshots`] (restic's order).
    pub async fn check(&self, opts: &CheckOptions) -> Result<CheckReport> {
        let snaps = self.list_snapshots().await?;
        self.check_snapshots(opts, snaps).await
    }

    /// Checks the repository and the snapshots `snaps`, which must have been listed before this
    /// repository's index was loaded: a backup writes its index files before its snapshot, so
    /// every blob such a snapshot uses is then in the index.
    pub async fn check_snapshots(
        &self,
        opts: &CheckOptions,
        snaps: Vec<crate::snapshot::Snapshot>,
    ) -> Result<CheckReport> {
        let mut r = CheckReport::default();
        let packs: HashMap<Id, u64> = self
            .backend()
            .list(FileType::Pack)
            .await?
            .into_iter()
            .collect();
        r.packs = packs.len();
        // 1. The index against the packs.
        let mut by_pack: HashMap<Id, Vec<BlobLocation>> = HashMap::new();
        {
            let index = self.index();
            r.blobs = index.len();
            for loc in index.iter() {
                by_pack.entry(loc.pack).or_default().push(loc);
            }
        }
        let mut missing_packs = 0;
        for (pack, locs) in &by_pack {
            match packs.get(pack) {
                None => {
                    missing_packs += 1;
                    r.errors.push(format!(
                        "pack {} is in the index but missing from the repository ({} blobs lost)",
                        pack.to_hex(),
                        locs.len()
                    ));
                    r.bad_blobs.extend(locs.iter().map(|l| l.entry.id));
                }
                Some(size) => {
                    for l in locs {
                        if l.entry.offset as u64 + l.entry.length as u64 + FOOTER_LEN as u64 > *size
                        {
                            r.errors.push(format!(
                                "pack {}: blob {} lies beyond the pack's end (pack truncated)",
                                pack.to_hex(),
                                l.entry.id.to_hex()
                            ));
                            r.bad_blobs.insert(l.entry.id);
                        }
                    }
                }
            }
        }
        let _ = missing_packs;
        // Packs pending deletion: out of the index, kept on storage until a later prune deletes
        // them. Normal, not damage.
        let pending: HashMap<Id, i64> = self
            .pending_packs()
            .iter()
            .map(|p| (p.pack.id, p.marked))
            .collect();
        let (mut stored_pending, mut pending_bytes, mut gone, mut reused) = (0, 0u64, 0, 0);
        let mut oldest_mark = i64::MAX;
        for (id, marked) in &pending {
            match packs.get(id) {
                None => gone += 1,
                Some(_) if by_pack.contains_key(id) => reused += 1,
                Some(size) => {
                    stored_pending += 1;
                    pending_bytes += size;
                    oldest_mark = oldest_mark.min(*marked);
                }
            }
        }
        r.pending_packs = stored_pending;
        if stored_pending > 0 {
            let since = chrono::DateTime::from_timestamp(oldest_mark, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| oldest_mark.to_string());
            r.notes.push(format!(
                "{stored_pending} pack(s) ({pending_bytes} bytes) are pending deletion (marked by prune since {since}); a prune deletes them once its grace period has passed"
            ));
        }
        if gone > 0 {
            r.notes.push(format!(
                "{gone} pack(s) marked for deletion are already deleted; the next prune forgets them"
            ));
        }
        if reused > 0 {
            r.notes.push(format!(
                "{reused} pack(s) marked for deletion are in the index again; prune keeps them"
            ));
        }
        let unindexed: Vec<&Id> = packs
            .keys()
            .filter(|p| !by_pack.contains_key(*p) && !pending.contains_key(*p))
            .collect();
        if !unindexed.is_empty() {
            r.notes.push(format!(
                "{} pack(s) are not in the index (left by an interrupted backup); they are harmless and a later prune removes them",
                unindexed.len()
            ));
        }
        if self.index_files().len() > 64 {
            r.notes.push(format!(
                "{} index files: `coffer index compact` merges them and makes opening faster",
                self.index_files().len()
            ));
        }
        // The shared settings must open: a damaged one would stop `forget` and mirroring.
        if let Err(e) = self.load_settings().await {
            r.errors.push(format!("settings: {e:#}"));
        }
        // 2. Every snapshot's trees, and every blob they reference.
        let reader = self.blob_reader();
        r.snapshots = snaps.len();
        let mut seen_trees: HashSet<Id> = HashSet::new();
        let mut tree_errors: Vec<String> = Vec::new();
        for s in &snaps {
            let mut stack = vec![(String::from("/"), s.tree)];
            while let Some((path, tid)) = stack.pop() {
                if !seen_trees.insert(tid) {
                    continue;
                }
                let tree = match reader.load_tree(&tid).await {
                    Ok(t) => t,
                    Err(e) => {
                        tree_errors.push(format!(
                            "snapshot {}: directory {path}: {e:#}",
                            s.id.short()
                        ));
                        r.bad_blobs.insert(tid);
                        continue;
                    }
                };
                for n in &tree.nodes {
                    let p = format!(
                        "{}{}{}",
                        path,
                        if path.ends_with('/') { "" } else { "/" },
                        n.name.lossy()
                    );
                    if n.kind == NodeKind::Dir {
                        if let Some(sub) = n.subtree {
                            stack.push((p.clone(), sub));
                        }
                    }
                    for c in &n.content {
                        if !self.index().contains(c) {
                            tree_errors.push(format!(
                                "snapshot {}: {p}: chunk {} is missing from the index",
                                s.id.short(),
                                c.to_hex()
                            ));
                            r.bad_blobs.insert(*c);
                        }
                    }
                }
            }
        }
        r.errors.extend(tree_errors);
        // 3. The data itself.
        if opts.read_data {
            // Pending packs hold nothing the index or a snapshot uses: not read.
            // Owned pairs: a stream over borrowed items makes the future's `Send` depend on a
            // higher-ranked lifetime rustc cannot prove (rust-lang/rust#102211).
            let mut chosen: Vec<(Id, u64)> = packs
                .iter()
                .filter(|(id, _)| by_pack.contains_key(*id) || !pending.contains_key(*id))
                .map(|(id, size)| (*id, *size))
                .collect();
            chosen.sort();
            if let Some(f) = opts.subset {
                let n = ((chosen.len() as f64) * f).ceil() as usize;
                use rand::seq::SliceRandom;
                chosen.shuffle(&mut rand::rng());
                chosen.truncate(n.max(1).min(chosen.len()));
            }
            use futures::StreamExt;
            let results: Vec<(Vec<String>, Vec<Id>)> = futures::stream::iter(
                chosen
                    .into_iter()
                    .map(|(id, size)| self.read_pack(id, size, by_pack.get(&id))),
            )
            .buffer_unordered(4)
            .collect()
            .await;
            r.packs_read = results.len();
            for (errs, bad) in results {
                r.errors.extend(errs);
                r.bad_blobs.extend(bad);
            }
        }
        if !r.bad_blobs.is_empty() {
            r.affected_snapshots = self.snapshots_using(&r.bad_blobs, &snaps).await;
            for a in &r.affected_snapshots {
                r.errors.push(format!("affected: {a}"));
            }
        }
        r.ok = r.errors.is_empty();
        Ok(r)
    }

    /// Reads one pack whole (blob by blob, never all at once), authenticates every blob and the
    /// trailer, and checks the pack's SHA-256 against its name.
    async fn read_pack(
        &self,
        id: Id,
        size: u64,
        indexed: Option<&Vec<BlobLocation>>,
    ) -> (Vec<String>, Vec<Id>) {
        let mut errs = Vec::new();
        let mut bad = Vec::new();
        let be = self.backend();
        let keys = self.keyring();
        let name = id.to_hex();
        if size < FOOTER_LEN as u64 {
            errs.push(format!(
                "pack {name} is too short to be a pack ({size} bytes)"
            ));
            bad.extend(indexed.into_iter().flatten().map(|l| l.entry.id));
            return (errs, bad);
        }
        let footer = match be
            .read_range(
                FileType::Pack,
                &id,
                size - FOOTER_LEN as u64,
                FOOTER_LEN as u64,
            )
            .await
        {
            Ok(f) => f,
            Err(e) => {
                return (
                    vec![format!("pack {name}: cannot read: {e:#}")],
                    indexed.into_iter().flatten().map(|l| l.entry.id).collect(),
                )
            }
        };
        let mut sha = sha2::Sha256::new();
        let trailer = match parse_footer(&footer) {
            Ok((salt, tlen)) if (tlen as u64) + FOOTER_LEN as u64 <= size => {
                let start = size - FOOTER_LEN as u64 - tlen as u64;
                match be.read_range(FileType::Pack, &id, start, tlen as u64).await {
                    Ok(t) => decode_trailer(&keys.key, keys.encryption, &salt, &t)
                        .map(|e| (salt, e, t, start)),
                    Err(e) => Err(e),
                }
            }
            Ok(_) => Err(crate::Error::corrupt("trailer length exceeds the pack")),
            Err(e) => Err(e),
        };
        let reader = self.blob_reader();
        match trailer {
            Err(e) => {
                errs.push(format!("pack {name}: trailer is damaged: {e:#}"));
                // Fall back on the index to test each blob.
                for l in indexed.into_iter().flatten() {
                    match be
                        .read_range(
                            FileType::Pack,
                            &id,
                            l.entry.offset as u64,
                            l.entry.length as u64,
                        )
                        .await
                    {
                        Ok(b)
                            if reader
                                .open_located(l, &b)
                                .map(|c| reader.id_matches(&l.entry.id, &c))
                                .unwrap_or(false) => {}
                        _ => {
                            errs.push(format!(
                                "pack {name}: blob {} is damaged",
                                l.entry.id.to_hex()
                            ));
                            bad.push(l.entry.id);
                        }
                    }
                }
            }
            Ok((salt, mut entries, tbytes, tstart)) => {
                entries.sort_by_key(|e| e.offset);
                let mut pos = 0u64;
                // Read neighbouring blobs in windows of up to 8 MiB (one request each), never the
                // whole pack at once.
                for (run, start, end) in read_windows(&entries, READ_WINDOW) {
                    let window = be.read_range(FileType::Pack, &id, start, end - start).await;
                    for e in &entries[run] {
                        if e.offset as u64 != pos {
                            errs.push(format!(
                                "pack {name}: blobs are not contiguous at offset {pos}"
                            ));
                        }
                        pos = e.offset as u64 + e.length as u64;
                        let loc = BlobLocation {
                            pack: id,
                            salt,
                            entry: *e,
                        };
                        let b = match &window {
                            Ok(w) => {
                                let s = (e.offset as u64 - start) as usize;
                                &w[s..s + e.length as usize]
                            }
                            Err(err) => {
                                errs.push(format!(
                                    "pack {name}: cannot read blob {}: {err:#}",
                                    e.id.to_hex()
                                ));
                                bad.push(e.id);
                                continue;
                            }
                        };
                        sha.update(b);
                        match reader.open_located(&loc, b) {
                            Ok(c) if reader.id_matches(&e.id, &c) => {}
                            Ok(_) => {
                                errs.push(format!(
                                    "pack {name}: blob {} does not match its id",
                                    e.id.to_hex()
                                ));
                                bad.push(e.id);
                            }
                            Err(err) => {
                                errs.push(format!(
                                    "pack {name}: {} blob {} is damaged: {err:#}",
                                    if e.blob_type == BlobType::Tree {
                                        "tree"
                                    } else {
                                        "data"
                                    },
                                    e.id.to_hex()
                                ));
                                bad.push(e.id);
                            }
                        }
                    }
                }
                if pos != tstart {
                    errs.push(format!(
                        "pack {name}: {} unexplained bytes before the trailer",
                        tstart.saturating_sub(pos)
                    ));
                }
                sha.update(&tbytes);
                sha.update(&footer);
                if pos == tstart && Id(sha.finalize().into()) != id {
                    errs.push(format!(
                        "pack {name}: content does not match its name (SHA-256 mismatch)"
                    ));
                }
                if let Some(idx) = indexed {
                    let inpack: HashSet<Id> = entries.iter().map(|e| e.id).collect();
                    for l in idx {
                        if !inpack.contains(&l.entry.id) {
                            errs.push(format!(
                                "pack {name}: the index lists blob {} that the pack does not hold",
                                l.entry.id.to_hex()
                            ));
                            bad.push(l.entry.id);
                        }
                    }
                }
            }
        }
        (errs, bad)
    }

    /// Names the snapshots (and first paths) that use any of `bad`.
    pub async fn snapshots_using(
        &self,
        bad: &HashSet<Id>,
        snaps: &[crate::snapshot::Snapshot],
    ) -> Vec<String> {
        let reader = self.blob_reader();
        let mut out = Vec::new();
        for s in snaps {
            let mut hits: Vec<String> = Vec::new();
            if bad.contains(&s.tree) {
                hits.push("/".into());
            }
            let mut visit = |p: &[u8], n: &crate::tree::Node| {
                if n.content.iter().any(|c| bad.contains(c))
                    || n.subtree.is_some_and(|t| bad.contains(&t))
                {
                    hits.push(String::from_utf8_lossy(p).into_owned());
                }
                Ok(())
            };
            let walked = crate::walk::walk_tree(&reader, s.tree, &mut visit).await;
            if let Err(e) = walked {
                if e.kind() != ErrorKind::Corrupt || hits.is_empty() {
                    hits.push(format!("(tree unreadable: {e:#})"));
                }
            }
            if !hits.is_empty() {
                let more = if hits.len() > 5 {
                    format!(" and {} more", hits.len() - 5)
                } else {
                    String::new()
                };
                hits.truncate(5);
                out.push(format!(
                    "snapshot {} ({}): {}{more}",
                    s.id.short(),
                    s.time.format("%Y-%m-%d %H:%M:%S"),
                    hits.join(", ")
                ));
            }
        }
        out
    }
}
