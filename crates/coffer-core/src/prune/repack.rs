//! The copy of a repack: the used blobs of the packs to repack go into new packs, opened and
//! sealed again under the new packs' keys (blob ids and compression stay).

use super::report::PackCount;
use crate::backend::FileType;
use crate::error::Result;
use crate::index::PackRecord;
use crate::pack::{
    blob_aad, blob_nonce, read_windows, BlobType, PackEntry, PackWriter, PACK_TARGET_SIZE,
    READ_WINDOW,
};
use crate::repository::Keyring;
use std::sync::Arc;

/// Builds the new packs of a repack, data and trees apart (as backups do).
pub(super) struct Repacker {
    keys: Arc<Keyring>,
    writers: [Option<PackWriter>; 2],
    done: Vec<PackRecord>,
    /// The new packs written.
    pub new_packs: PackCount,
    /// Blobs copied.
    pub blobs: u64,
    /// Sealed bytes copied.
    pub bytes: u64,
}

impl Repacker {
    /// A repacker writing with `keys`.
    pub(super) fn new(keys: Arc<Keyring>) -> Repacker {
        Repacker {
            keys,
            writers: [None, None],
            done: Vec::new(),
            new_packs: PackCount::default(),
            blobs: 0,
            bytes: 0,
        }
    }

    /// Copies the blobs of `pack` that `keep` selects into new packs.
    pub(super) async fn copy(
        &mut self,
        pack: &PackRecord,
        keep: impl Fn(&PackEntry) -> bool,
    ) -> Result<()> {
        let mut entries: Vec<PackEntry> =
            pack.entries.iter().filter(|e| keep(e)).copied().collect();
        entries.sort_by_key(|e| e.offset);
        let cipher = self.keys.key.cipher(self.keys.encryption, &pack.salt);
        for (run, start, end) in read_windows(&entries, READ_WINDOW) {
            let window = self
                .keys
                .backend
                .read_range(FileType::Pack, &pack.id, start, end - start)
                .await
                .map_err(|e| e.context(format!("repacking pack {}", pack.id.to_hex())))?;
            for e in &entries[run] {
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
        }
        Ok(())
    }

    /// Stores a finished pack.
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
    pub(super) async fn flush(&mut self) -> Result<Vec<PackRecord>> {
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
