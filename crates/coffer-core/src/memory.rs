//! An in-memory [`Backend`], for the engine's own unit tests and for the shared backend suite's
//! self-test. Users never store a repository in memory; every real backend is in `coffer-storage`.

use crate::backend::{Backend, FileType};
use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Objects kept in a map, keyed by type and id.
#[derive(Default)]
pub struct MemoryBackend {
    objects: Mutex<HashMap<(FileType, Id), Bytes>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces an object's bytes (tests use it to simulate damage).
    pub fn tamper(&self, ft: FileType, id: &Id, f: impl FnOnce(&mut Vec<u8>)) {
        let mut map = self.objects.lock().unwrap();
        if let Some(b) = map.get_mut(&(ft, norm(ft, id))) {
            let mut v = b.to_vec();
            f(&mut v);
            *b = Bytes::from(v);
        }
    }
}

fn norm(ft: FileType, id: &Id) -> Id {
    if ft == FileType::Config {
        Id::ZERO
    } else {
        *id
    }
}

fn missing(ft: FileType, id: &Id) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("{} {} does not exist", ft.name(), id.short()),
    )
}

#[async_trait]
impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory:".into()
    }
    async fn create(&self) -> Result<()> {
        Ok(())
    }
    async fn list(&self, ft: FileType) -> Result<Vec<(Id, u64)>> {
        let map = self.objects.lock().unwrap();
        Ok(map
            .iter()
            .filter(|((t, _), _)| *t == ft)
            .map(|((_, id), b)| (*id, b.len() as u64))
            .collect())
    }
    async fn read(&self, ft: FileType, id: &Id) -> Result<Bytes> {
        let map = self.objects.lock().unwrap();
        map.get(&(ft, norm(ft, id)))
            .cloned()
            .ok_or_else(|| missing(ft, id))
    }
    async fn read_range(&self, ft: FileType, id: &Id, offset: u64, length: u64) -> Result<Bytes> {
        let b = self.read(ft, id).await?;
        let (s, e) = (offset as usize, (offset + length) as usize);
        if e > b.len() {
            return Err(Error::new(
                ErrorKind::Storage,
                format!("{} {} is shorter than {e} bytes", ft.name(), id.short()),
            ));
        }
        Ok(b.slice(s..e))
    }
    async fn write(&self, ft: FileType, id: &Id, data: Bytes) -> Result<()> {
        self.objects
            .lock()
            .unwrap()
            .insert((ft, norm(ft, id)), data);
        Ok(())
    }
    async fn remove(&self, ft: FileType, id: &Id) -> Result<()> {
        self.objects.lock().unwrap().remove(&(ft, norm(ft, id)));
        Ok(())
    }
    async fn stat(&self, ft: FileType, id: &Id) -> Result<Option<u64>> {
        let map = self.objects.lock().unwrap();
        Ok(map.get(&(ft, norm(ft, id))).map(|b| b.len() as u64))
    }
}
