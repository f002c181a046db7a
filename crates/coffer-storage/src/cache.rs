//! A local cache of a remote repository's index files and snapshot manifests, so listing,
//! backing up and restoring never download them twice. Both kinds are immutable (index files
//! are named by the SHA-256 of their bytes, snapshots by a fresh random id), so a cached copy
//! never goes stale; it only goes away. Rules:
//!
//! * index files are verified on every use (SHA-256 of the cached bytes against the name); a
//!   mismatch deletes the copy and reads the repository;
//! * snapshots are authenticated by the repository layer when opened, like any object;
//! * every listing drops cached copies of objects the repository no longer has;
//! * copies are written to a temporary file and renamed, so a crash leaves no half file;
//! * the cache is an optimisation only: any failure to use it is logged and ignored, and the
//!   folder is safe to delete at any time (`--no-cache` does without it).

use async_trait::async_trait;
use bytes::Bytes;
use coffer_core::{Backend, FileType, Id, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A backend with a local cache of index files and snapshots.
pub(crate) struct Cached {
    inner: Arc<dyn Backend>,
    dir: PathBuf,
}

fn cacheable(ft: FileType) -> bool {
    matches!(ft, FileType::Index | FileType::Snapshot)
}

impl Cached {
    /// Wraps `inner`, caching under `root/<hash of the location>/`.
    pub(crate) fn wrap(inner: Arc<dyn Backend>, root: &Path) -> Arc<dyn Backend> {
        let key = Id::sha256(inner.location().as_bytes()).to_hex()[..32].to_string();
        Arc::new(Cached {
            dir: root.join(key),
            inner,
        })
    }

    fn path(&self, ft: FileType, id: &Id) -> PathBuf {
        self.dir.join(ft.dir()).join(id.to_hex())
    }

    fn load(&self, ft: FileType, id: &Id) -> Option<Bytes> {
        let path = self.path(ft, id);
        let data = std::fs::read(&path).ok()?;
        if ft == FileType::Index && Id::sha256(&data) != *id {
            tracing::warn!(
                "cached index file {} is damaged; reading it again",
                id.short()
            );
            std::fs::remove_file(&path).ok();
            return None;
        }
        Some(Bytes::from(data))
    }

    fn store(&self, ft: FileType, id: &Id, data: &[u8]) {
        let path = self.path(ft, id);
        let result = (|| -> std::io::Result<()> {
            let dir = path.parent().expect("cache paths have a folder");
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{}.tmp-{}", id.to_hex(), std::process::id()));
            std::fs::write(&tmp, data)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            tracing::warn!("cannot write the cache at {}: {e}", path.display());
        }
    }

    fn forget(&self, ft: FileType, id: &Id) {
        std::fs::remove_file(self.path(ft, id)).ok();
    }

    /// Drops cached copies the listing does not have.
    fn sweep(&self, ft: FileType, listed: &[(Id, u64)]) {
        let Ok(rd) = std::fs::read_dir(self.dir.join(ft.dir())) else {
            return;
        };
        let live: HashSet<String> = listed.iter().map(|(id, _)| id.to_hex()).collect();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                std::fs::remove_file(e.path()).ok();
            }
        }
    }
}

#[async_trait]
impl Backend for Cached {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn create(&self) -> Result<()> {
        self.inner.create().await
    }

    async fn list(&self, ft: FileType) -> Result<Vec<(Id, u64)>> {
        let listed = self.inner.list(ft).await?;
        if cacheable(ft) {
            self.sweep(ft, &listed);
        }
        Ok(listed)
    }

    async fn read(&self, ft: FileType, id: &Id) -> Result<Bytes> {
        if !cacheable(ft) {
            return self.inner.read(ft, id).await;
        }
        if let Some(data) = self.load(ft, id) {
            return Ok(data);
        }
        let data = self.inner.read(ft, id).await?;
        self.store(ft, id, &data);
        Ok(data)
    }

    async fn read_range(&self, ft: FileType, id: &Id, offset: u64, length: u64) -> Result<Bytes> {
        self.inner.read_range(ft, id, offset, length).await
    }

    async fn write(&self, ft: FileType, id: &Id, data: Bytes) -> Result<()> {
        self.inner.write(ft, id, data.clone()).await?;
        if cacheable(ft) {
            self.store(ft, id, &data);
        }
        Ok(())
    }

    async fn remove(&self, ft: FileType, id: &Id) -> Result<()> {
        if cacheable(ft) {
            self.forget(ft, id);
        }
        self.inner.remove(ft, id).await
    }

    async fn stat(&self, ft: FileType, id: &Id) -> Result<Option<u64>> {
        self.inner.stat(ft, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A real local repository folder, counting the reads that reach it.
    struct Counting {
        inner: Arc<dyn Backend>,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl Backend for Counting {
        fn location(&self) -> String {
            self.inner.location()
        }
        async fn create(&self) -> Result<()> {
            self.inner.create().await
        }
        async fn list(&self, ft: FileType) -> Result<Vec<(Id, u64)>> {
            self.inner.list(ft).await
        }
        async fn read(&self, ft: FileType, id: &Id) -> Result<Bytes> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.read(ft, id).await
        }
        async fn read_range(&self, ft: FileType, id: &Id, o: u64, l: u64) -> Result<Bytes> {
            self.inner.read_range(ft, id, o, l).await
        }
        async fn write(&self, ft: FileType, id: &Id, data: Bytes) -> Result<()> {
            self.inner.write(ft, id, data).await
        }
        async fn remove(&self, ft: FileType, id: &Id) -> Result<()> {
            self.inner.remove(ft, id).await
        }
        async fn stat(&self, ft: FileType, id: &Id) -> Result<Option<u64>> {
            self.inner.stat(ft, id).await
        }
    }

    #[tokio::test]
    async fn reads_once_verifies_index_copies_and_forgets_removed_objects() {
        let repo = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let local = crate::open(repo.path().to_str().unwrap(), &Default::default())
            .await
            .unwrap();
        local.create().await.unwrap();
        let counting = Arc::new(Counting {
            inner: local.clone(),
            reads: AtomicUsize::new(0),
        });
        let cached = Cached::wrap(counting.clone(), cache.path());

        let index = Bytes::from_static(b"an index file");
        let index_id = Id::sha256(&index);
        local
            .write(FileType::Index, &index_id, index.clone())
            .await
            .unwrap();
        let snap_id = Id::random();
        local
            .write(
                FileType::Snapshot,
                &snap_id,
                Bytes::from_static(b"sealed manifest"),
            )
            .await
            .unwrap();

        for _ in 0..3 {
            assert_eq!(
                cached.read(FileType::Index, &index_id).await.unwrap(),
                index
            );
            cached.read(FileType::Snapshot, &snap_id).await.unwrap();
        }
        assert_eq!(
            counting.reads.load(Ordering::SeqCst),
            2,
            "cached objects were read again"
        );

        // A damaged index copy is noticed and read again.
        let copy = cache
            .path()
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("index")
            .join(index_id.to_hex());
        std::fs::write(&copy, b"bit rot").unwrap();
        assert_eq!(
            cached.read(FileType::Index, &index_id).await.unwrap(),
            index
        );
        assert_eq!(counting.reads.load(Ordering::SeqCst), 3);

        // An object removed by another client disappears from the cache at the next listing.
        local.remove(FileType::Snapshot, &snap_id).await.unwrap();
        assert!(cached.list(FileType::Snapshot).await.unwrap().is_empty());
        assert!(cached.read(FileType::Snapshot, &snap_id).await.is_err());
    }
}
