//! Reading blobs back: index lookup, ranged read of the pack, open, decompress.

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{BlobLocation, Index};
use crate::pack::open_blob;
use crate::repository::Keyring;
use crate::tree::Tree;
use std::sync::{Arc, RwLock};

/// Reads blobs; cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct BlobReader {
    keys: Arc<Keyring>,
    index: Arc<RwLock<Index>>,
}

impl BlobReader {
    pub(crate) fn new(keys: Arc<Keyring>, index: Arc<RwLock<Index>>) -> Self {
        BlobReader { keys, index }
    }

    /// Where a blob is stored.
    pub fn locate(&self, id: &Id) -> Result<BlobLocation> {
        self.index.read().unwrap().get(id).ok_or_else(|| {
            Error::corrupt(format!(
                "blob {} is referenced but missing from the index",
                id.to_hex()
            ))
        })
    }

    /// Reads, authenticates and decompresses one blob.
    pub async fn read_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.locate(id)?;
        let e = &loc.entry;
        let sealed = self
            .keys
            .backend
            .read_range(FileType::Pack, &loc.pack, e.offset as u64, e.length as u64)
            .await
            .map_err(|err| {
                err.context(format!(
                    "reading blob {} from pack {}",
                    id.short(),
                    loc.pack.to_hex()
                ))
            })?;
        self.open_located(&loc, &sealed)
    }

    /// Reads raw bytes of a pack (several neighbouring blobs in one request); open each blob of
    /// the range with [`BlobReader::open_located`].
    pub async fn read_pack_range(
        &self,
        pack: &Id,
        offset: u64,
        length: u64,
    ) -> Result<bytes::Bytes> {
        self.keys
            .backend
            .read_range(FileType::Pack, pack, offset, length)
            .await
            .map_err(|err| err.context(format!("reading pack {}", pack.to_hex())))
    }

    /// Opens a blob whose sealed bytes were read already.
    pub fn open_located(&self, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>> {
        open_blob(
            &self.keys.key,
            self.keys.encryption,
            &loc.salt,
            &loc.entry,
            sealed,
        )
        .map_err(|err| {
            err.context(format!(
                "blob {} in pack {}",
                loc.entry.id.to_hex(),
                loc.pack.to_hex()
            ))
        })
    }

    /// [`BlobReader::read_blob`] for worker threads (not inside the async runtime).
    pub fn read_blob_blocking(&self, handle: &tokio::runtime::Handle, id: &Id) -> Result<Vec<u8>> {
        handle.block_on(self.read_blob(id))
    }

    /// Loads a tree.
    pub async fn load_tree(&self, id: &Id) -> Result<Tree> {
        Tree::from_bytes(&self.read_blob(id).await?)
            .map_err(|e| e.context(format!("tree {}", id.short())))
    }

    /// Verifies that content has the id it is stored under (check --read-data).
    pub fn id_matches(&self, id: &Id, content: &[u8]) -> bool {
        self.keys.key.blob_id(content) == *id
    }
}
