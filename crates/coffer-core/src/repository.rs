//! The repository and its lifecycle, as types: a [`Repository<Closed>`] can only be created or
//! opened; a [`Repository<Open>`] knows its key and can list snapshots and manage keys; only a
//! [`Repository<Indexed>`] has loaded the index and can back up, read blobs, restore and check.

use crate::backend::{Backend, FileType};
use crate::chunker::ChunkerParams;
use crate::compression::Compression;
use crate::config::{RepoConfig, FORMAT_VERSION};
use crate::crypto::{open_object, seal_object, Encryption, MasterKey};
use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use crate::index::{Index, IndexFile, PendingPack};
use crate::keyfile::{KdfParams, KeyFile};
use crate::snapshot::Snapshot;
use bytes::Bytes;
use chrono::Utc;
use std::sync::{Arc, RwLock};

/// State: nothing is known but where the repository is.
pub struct Closed;

/// State: the master key and config are known.
pub struct Open {
    pub(crate) keys: Arc<Keyring>,
}

/// State: the index is loaded too.
pub struct Indexed {
    pub(crate) keys: Arc<Keyring>,
    pub(crate) index: Arc<RwLock<Index>>,
    pub(crate) index_files: Vec<Id>,
    /// Packs pending deletion, as listed by the index files in use (see `crate::prune`).
    pub(crate) pending: Vec<PendingPack>,
}

/// What an opened repository knows: backend, master key, settings.
pub struct Keyring {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) key: MasterKey,
    pub(crate) key_id: Id,
    pub(crate) config: RepoConfig,
    pub(crate) compression: Compression,
    pub(crate) encryption: Encryption,
}

impl Keyring {
    /// Seals an object of type `ft` (aad = type name and id).
    pub(crate) fn seal(&self, ft: FileType, id: &Id, plaintext: &[u8]) -> Vec<u8> {
        let framed = Compression::Zstd(3).encode(plaintext);
        seal_object(&self.key, self.encryption, &object_aad(ft, id), &framed)
    }

    /// Writes a snapshot manifest.
    pub(crate) async fn save_snapshot(&self, snap: &Snapshot) -> Result<()> {
        let plain = serde_json::to_vec(snap).expect("snapshot serializes");
        let sealed = self.seal(FileType::Snapshot, &snap.id, &plain);
        self.backend
            .write(FileType::Snapshot, &snap.id, Bytes::from(sealed))
            .await
    }

    /// Writes an index file, named by the SHA-256 of its sealed bytes (so the name cannot be
    /// bound as associated data); returns its id.
    pub(crate) async fn write_index_file(&self, file: &IndexFile) -> Result<Id> {
        let sealed = self.seal(FileType::Index, &Id::ZERO, &file.encode());
        let id = Id::sha256(&sealed);
        self.backend
            .write(FileType::Index, &id, Bytes::from(sealed))
            .await?;
        Ok(id)
    }

    /// Opens an object of type `ft` sealed by [`Keyring::seal`].
    pub(crate) fn open(&self, ft: FileType, id: &Id, data: &[u8]) -> Result<Vec<u8>> {
        let framed = open_object(&self.key, self.encryption, &object_aad(ft, id), data)
            .map_err(|e| e.context(format!("{} {}", ft.name(), id.short())))?;
        crate::compression::decode(&framed, None, 1 << 31)
    }
}

fn object_aad(ft: FileType, id: &Id) -> Vec<u8> {
    // Index files are named by their SHA-256, which already proves their bytes; binding the name
    // as well would be circular. Snapshots and locks bind their random id.
    let mut a = ft.name().as_bytes().to_vec();
    if ft != FileType::Index {
        a.extend_from_slice(&id.0);
    }
    a
}

/// Options for `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Compression for new blobs.
    pub compression: Compression,
    /// AEAD.
    pub encryption: Encryption,
    /// Argon2id costs of the first key.
    pub kdf: KdfParams,
    /// Chunk sizes.
    pub chunker: ChunkerParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            compression: Compression::default(),
            encryption: Encryption::Aes256Gcm,
            kdf: KdfParams::default(),
            chunker: ChunkerParams::default(),
        }
    }
}

/// A repository in state `S`.
pub struct Repository<S> {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) state: S,
}

/// This host's name, for manifests, keys and locks.
pub fn hostname() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The current user's name, for keys and locks.
pub fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

impl Repository<Closed> {
    /// A handle on the repository stored in `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Repository {
            backend,
            state: Closed,
        }
    }

    /// Whether a repository exists there (a `config` object is present).
    pub async fn exists(&self) -> Result<bool> {
        Ok(self
            .backend
            .stat(FileType::Config, &Id::ZERO)
            .await?
            .is_some())
    }

    /// Creates a new repository with one key for `password`.
    pub async fn init(self, password: &[u8], opts: InitOptions) -> Result<Repository<Open>> {
        if self.exists().await? {
            return Err(Error::new(
                ErrorKind::RepositoryExists,
                format!("a repository already exists at {}", self.backend.location()),
            ));
        }
        self.backend.create().await?;
        let key = MasterKey::generate();
        let config = RepoConfig {
            format_version: FORMAT_VERSION,
            id: Id::random(),
            compression: opts.compression.to_string(),
            encryption: opts.encryption.to_string(),
            chunker: opts.chunker,
            created: Utc::now(),
        };
        let kf = KeyFile::create(&key, password, opts.kdf, &hostname(), &username())?;
        let key_id = Id::random();
        // The key first, then the config: a repository whose config exists can always be opened.
        self.backend
            .write(FileType::Key, &key_id, Bytes::from(kf.to_bytes()))
            .await?;
        self.backend
            .write(
                FileType::Config,
                &Id::ZERO,
                Bytes::from(config.to_bytes(&key)),
            )
            .await?;
        let keys = Keyring {
            backend: self.backend.clone(),
            key,
            key_id,
            compression: opts.compression,
            encryption: opts.encryption,
            config,
        };
        Ok(Repository {
            backend: self.backend,
            state: Open {
                keys: Arc::new(keys),
            },
        })
    }

    /// Opens the repository with `password`, trying every key file.
    pub async fn open(self, password: &[u8]) -> Result<Repository<Open>> {
        let raw = match self.backend.read(FileType::Config, &Id::ZERO).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::new(
                    ErrorKind::RepositoryNotFound,
                    format!(
                        "there is no repository at {} (create one with `coffer init`)",
                        self.backend.location()
                    ),
                ))
            }
            Err(e) => return Err(e),
        };
        let config = RepoConfig::parse_unverified(&raw)?;
        let mut keys = self.backend.list(FileType::Key).await?;
        keys.sort();
        if keys.is_empty() {
            return Err(Error::corrupt(
                "the repository has no key files (keys/ is empty)",
            ));
        }
        let mut damaged = Vec::new();
        for (kid, _) in keys {
            let data = self.backend.read(FileType::Key, &kid).await?;
            let kf = match KeyFile::parse(&data) {
                Ok(k) => k,
                Err(e) => {
                    damaged.push(format!("keys/{}: {e:#}", kid.to_hex()));
                    continue;
                }
            };
            match kf.open(password) {
                Ok(key) => {
                    RepoConfig::verify(&raw, &key)?;
                    let keys = Keyring {
                        backend: self.backend.clone(),
                        compression: config.compression()?,
                        encryption: config.encryption()?,
                        key,
                        key_id: kid,
                        config,
                    };
                    return Ok(Repository {
                        backend: self.backend,
                        state: Open {
                            keys: Arc::new(keys),
                        },
                    });
                }
                Err(e) if e.kind() == ErrorKind::WrongPassword => continue,
                Err(e) => damaged.push(format!("keys/{}: {e:#}", kid.to_hex())),
            }
        }
        if !damaged.is_empty() {
            return Err(Error::corrupt(format!(
                "no key file opened with this password, and some are damaged: {}",
                damaged.join("; ")
            )));
        }
        Err(Error::new(
            ErrorKind::WrongPassword,
            "wrong password: no key file of the repository opens with it",
        ))
    }
}

/// Implemented by the states that hold the key: `Open` and `Indexed`.
pub trait Opened {
    /// The key ring.
    fn keyring(&self) -> &Arc<Keyring>;
}
impl Opened for Open {
    fn keyring(&self) -> &Arc<Keyring> {
        &self.keys
    }
}
impl Opened for Indexed {
    fn keyring(&self) -> &Arc<Keyring> {
        &self.keys
    }
}

/// One key file as listed by `key list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    /// The key file's id.
    pub id: Id,
    /// Whether this is the key the repository was opened with.
    pub current: bool,
    /// Host it was made on.
    pub hostname: String,
    /// User who made it.
    pub username: String,
    /// When it was made.
    pub created: chrono::DateTime<Utc>,
}

impl<S: Opened> Repository<S> {
    /// The settings.
    pub fn config(&self) -> &RepoConfig {
        &self.state.keyring().config
    }

    /// The storage backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The compression for new blobs.
    pub fn compression(&self) -> Compression {
        self.state.keyring().compression
    }

    /// The AEAD.
    pub fn encryption(&self) -> Encryption {
        self.state.keyring().encryption
    }

    /// Every snapshot, oldest first. A snapshot that cannot be read is an error, never skipped.
    pub async fn list_snapshots(&self) -> Result<Vec<Snapshot>> {
        let ids = self.backend.list(FileType::Snapshot).await?;
        let mut out = Vec::with_capacity(ids.len());
        let mut futs = futures::stream::iter(ids.into_iter().map(|(id, _)| self.load_snapshot(id)))
            .buffer_unordered(16);
        use futures::StreamExt;
        while let Some(s) = futs.next().await {
            out.push(s?);
        }
        out.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Loads one snapshot by full id.
    pub async fn load_snapshot(&self, id: Id) -> Result<Snapshot> {
        let data = self.backend.read(FileType::Snapshot, &id).await?;
        let plain = self.state.keyring().open(FileType::Snapshot, &id, &data)?;
        let snap: Snapshot = serde_json::from_slice(&plain)
            .map_err(|e| Error::corrupt(format!("snapshot {} does not parse: {e}", id.short())))?;
        if snap.id != id {
            return Err(Error::corrupt(format!(
                "snapshot file {} holds snapshot {}",
                id.short(),
                snap.id.short()
            )));
        }
        Ok(snap)
    }

    /// Resolves a full id, a unique prefix, or `latest` among `candidates` (already filtered).
    pub fn resolve_snapshot<'a>(spec: &str, candidates: &'a [Snapshot]) -> Result<&'a Snapshot> {
        if spec == "latest" {
            return candidates
                .iter()
                .max_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)))
                .ok_or_else(|| {
                    Error::not_found(
                        "there is no snapshot (matching the filters) to take as latest",
                    )
                });
        }
        let spec_l = spec.to_ascii_lowercase();
        if spec_l.is_empty() || !spec_l.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "{spec:?} is not a snapshot id, an id prefix or `latest`"
            )));
        }
        let found: Vec<&Snapshot> = candidates
            .iter()
            .filter(|s| s.id.to_hex().starts_with(&spec_l))
            .collect();
        match found.len() {
            0 => Err(Error::not_found(format!(
                "no snapshot has an id starting with {spec}"
            ))),
            1 => Ok(found[0]),
            n => {
                // The matches, newest first (at most ten), so the user can pick one.
                let mut found = found;
                found.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
                let shown: Vec<String> = found
                    .iter()
                    .take(10)
                    .map(|s| format!("{} ({})", s.id.short(), s.time.format("%Y-%m-%d %H:%M:%S")))
                    .collect();
                let more = if n > 10 { ", ..." } else { "" };
                Err(Error::new(
                    ErrorKind::Ambiguous,
                    format!(
                        "snapshot prefix {spec} is ambiguous: it matches {n} snapshots ({}{more}); give more digits",
                        shown.join(", ")
                    ),
                ))
            }
        }
    }

    /// Writes a snapshot manifest (the last step of a backup).
    pub async fn save_snapshot(&self, snap: &Snapshot) -> Result<()> {
        self.state.keyring().save_snapshot(snap).await
    }

    /// Deletes a snapshot manifest. Its data stays until a prune.
    pub async fn delete_snapshot(&self, id: &Id) -> Result<()> {
        self.backend.remove(FileType::Snapshot, id).await
    }

    /// Lists key files.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for (id, _) in self.backend.list(FileType::Key).await? {
            let kf = KeyFile::parse(&self.backend.read(FileType::Key, &id).await?)?;
            out.push(KeyInfo {
                id,
                current: id == self.state.keyring().key_id,
                hostname: kf.hostname,
                username: kf.username,
                created: kf.created,
            });
        }
        out.sort_by_key(|k| k.created);
        Ok(out)
    }

    /// Adds a key file for another password; returns its id.
    pub async fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        let kf = KeyFile::create(
            &self.state.keyring().key,
            password,
            kdf,
            &hostname(),
            &username(),
        )?;
        let id = Id::random();
        self.backend
            .write(FileType::Key, &id, Bytes::from(kf.to_bytes()))
            .await?;
        Ok(id)
    }

    /// Removes a key file. The key in use cannot be removed (use `passwd` to replace it).
    pub async fn remove_key(&self, id: &Id) -> Result<()> {
        if *id == self.state.keyring().key_id {
            return Err(Error::invalid(
                "refusing to remove the key this command was opened with: open with another key, or use `key passwd`",
            ));
        }
        if self.backend.stat(FileType::Key, id).await?.is_none() {
            return Err(Error::not_found(format!("there is no key {}", id.short())));
        }
        self.backend.remove(FileType::Key, id).await
    }

    /// Replaces the current key file by one for `new_password`; returns the new key's id.
    pub async fn change_password(&self, new_password: &[u8], kdf: KdfParams) -> Result<Id> {
        let id = self.add_key(new_password, kdf).await?;
        self.backend
            .remove(FileType::Key, &self.state.keyring().key_id)
            .await?;
        Ok(id)
    }

    /// The id of the key this repository was opened with.
    pub fn key_id(&self) -> Id {
        self.state.keyring().key_id
    }
}

use futures::StreamExt;

/// Reads, authenticates and decodes one index file.
pub(crate) async fn read_index_file(keys: &Keyring, id: &Id) -> Result<IndexFile> {
    let data = keys.backend.read(FileType::Index, id).await?;
    if Id::sha256(&data) != *id {
        return Err(Error::corrupt(format!(
            "index file {} does not match its name (damaged)",
            id.to_hex()
        )));
    }
    let plain = keys.open(FileType::Index, id, &data)?;
    IndexFile::decode(&plain).map_err(|e| e.context(format!("index {}", id.short())))
}

/// Reads and merges every index file, each added as soon as it is read (peak memory: the index
/// plus the files in flight). Entries of superseded files are contained in the files that
/// supersede them, or belong to packs a prune moved to its pending list (which stay stored
/// until every superseded file is gone), so merging them too is harmless; they are only left out
/// of the list of files in use. Packs pending deletion are never added to the index; those
/// listed by the files in use are returned.
pub(crate) async fn load_index(keys: &Keyring) -> Result<(Index, Vec<Id>, Vec<PendingPack>)> {
    let ids: Vec<Id> = keys
        .backend
        .list(FileType::Index)
        .await?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    // Owned ids, not `ids.iter()`: a closure over borrowed items makes this future's `Send`
    // depend on a higher-ranked lifetime that rustc cannot prove (rust-lang/rust#102211), and
    // the daemon runs it on spawned tasks.
    let mut files = futures::stream::iter(
        ids.into_iter()
            .map(move |id| async move { read_index_file(keys, &id).await.map(|f| (id, f)) }),
    )
    .buffer_unordered(8);
    let mut index = Index::new();
    let mut superseded = std::collections::HashSet::new();
    let mut seen = Vec::new();
    let mut pending: Vec<(Id, Vec<PendingPack>)> = Vec::new();
    while let Some(f) = files.next().await {
        let (id, f) = f?;
        for p in &f.packs {
            index.add_pack(p.id, p.salt, &p.entries);
        }
        superseded.extend(f.supersedes.iter().copied());
        seen.push(id);
        if !f.pending.is_empty() {
            pending.push((id, f.pending));
        }
    }
    index.compact();
    let used = seen
        .into_iter()
        .filter(|i| !superseded.contains(i))
        .collect();
    let pending = pending
        .into_iter()
        .filter(|(i, _)| !superseded.contains(i))
        .flat_map(|(_, p)| p)
        .collect();
    Ok((index, used, pending))
}

impl Clone for Repository<Open> {
    /// Another handle on the same open repository (the key is shared, not derived again).
    fn clone(&self) -> Self {
        Repository {
            backend: self.backend.clone(),
            state: Open {
                keys: self.state.keys.clone(),
            },
        }
    }
}

impl Repository<Open> {
    /// Loads the index; the repository can then read and write data.
    pub async fn load_index(self) -> Result<Repository<Indexed>> {
        let keys = self.state.keys;
        let (index, files, pending) = load_index(&keys).await?;
        Ok(Repository {
            backend: self.backend,
            state: Indexed {
                keys,
                index: Arc::new(RwLock::new(index)),
                index_files: files,
                pending,
            },
        })
    }
}

impl Repository<Indexed> {
    /// A cheap, cloneable, thread-safe reader of blobs.
    pub fn blob_reader(&self) -> crate::read::BlobReader {
        crate::read::BlobReader::new(self.state.keys.clone(), self.state.index.clone())
    }

    /// The index (read-locked while the guard lives).
    pub fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.state.index.read().unwrap()
    }

    /// Ids of the index files in use.
    pub fn index_files(&self) -> &[Id] {
        &self.state.index_files
    }

    /// Packs pending deletion (taken out of the index by a prune, deleted by a later one), as
    /// listed by the index files in use.
    pub fn pending_packs(&self) -> &[PendingPack] {
        &self.state.pending
    }

    /// The key ring (for engine modules).
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.state.keys
    }

    /// Merges every index file in use into one (plus more if it is very large) that supersedes
    /// them, then removes them; packs pending deletion stay pending. Take an exclusive lock
    /// first. Returns (files before, after).
    pub async fn compact_index(&self) -> Result<(usize, usize)> {
        let before = self.state.index_files.clone();
        if before.len() <= 1 {
            return Ok((before.len(), before.len()));
        }
        let keys = &self.state.keys;
        let mut by_pack: std::collections::BTreeMap<Id, crate::index::PackRecord> =
            Default::default();
        for loc in self.index().iter() {
            by_pack
                .entry(loc.pack)
                .or_insert_with(|| crate::index::PackRecord {
                    id: loc.pack,
                    salt: loc.salt,
                    entries: Vec::new(),
                })
                .entries
                .push(loc.entry);
        }
        let mut packs: Vec<_> = by_pack.into_values().collect();
        for p in &mut packs {
            p.entries.sort_by_key(|e| e.offset);
        }
        // The new file is written before anything is removed: a crash in between leaves the
        // old files superseded (ignored by readers) or still in use, never an entry lost.
        keys.write_index_file(&IndexFile {
            supersedes: before.clone(),
            packs,
            pending: self.state.pending.clone(),
        })
        .await?;
        for old in &before {
            self.backend.remove(FileType::Index, old).await?;
        }
        Ok((before.len(), 1))
    }

    /// The shared index (for engine modules).
    pub(crate) fn shared_index(&self) -> &Arc<RwLock<Index>> {
        &self.state.index
    }
}
