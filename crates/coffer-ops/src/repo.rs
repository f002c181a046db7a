//! Opening a repository and holding its lock for the length of an operation.
//!
//! Rules, enforced here:
//! - The password is read only once the repository is known to exist, so a wrong location is
//!   reported as such and not as a missing password.
//! - A lock is taken before the index is loaded: a prune (which holds the exclusive lock) can
//!   then neither remove index files while they are read nor delete packs the operation relies
//!   on.
//! - Every exit path releases the lock: operations run their body through [`Locked::run`],
//!   which releases the lock whatever the body returned.
//! - A repository this user may only read (a read-only mount, read-only credentials) is read
//!   without a lock after a warning naming the risk: a restore must work there.

use crate::password::PasswordSource;
use crate::progress::Progress;
use coffer_core::lock::LockGuard;
use coffer_core::snapshot::Snapshot;
use coffer_core::{Closed, Error, ErrorKind, Indexed, Open, Opened, Repository, Result};
use coffer_storage::StorageOptions;
use std::future::Future;
use std::sync::Arc;

/// Where a repository is and how to open it.
#[derive(Debug, Clone)]
pub struct RepoSpec {
    /// A path, `file://`, `s3://`, `gs://`, `az://` or `sftp://` URL.
    pub url: String,
    /// Storage options (connections, limits, cache, service options).
    pub options: StorageOptions,
    /// Where its password comes from.
    pub password: PasswordSource,
}

/// Which lock an operation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Shared: backups, restores and checks run side by side.
    Shared,
    /// Exclusive: nothing else runs (forget, prune).
    Exclusive,
}

impl RepoSpec {
    /// A closed handle (nothing is read yet).
    pub async fn closed(&self) -> Result<Repository<Closed>> {
        Ok(Repository::new(
            coffer_storage::open(&self.url, &self.options).await?,
        ))
    }

    /// Opens the repository (config and key); fails with
    /// [`ErrorKind::RepositoryNotFound`] before asking for the password when there is none.
    pub async fn open(&self) -> Result<Repository<Open>> {
        let repo = self.closed().await?;
        if !repo.exists().await? {
            return Err(Error::new(
                ErrorKind::RepositoryNotFound,
                format!(
                    "there is no repository at {} (create one with `coffer init`)",
                    self.url
                ),
            ));
        }
        let pw = self.password.read()?;
        repo.open(&pw).await
    }

    /// Opens the repository, takes a lock, then loads the index; a failed load releases the
    /// lock.
    pub async fn open_locked(&self, mode: LockMode, command: &str) -> Result<Locked> {
        let repo = self.open().await?;
        let lock = repo.lock(mode == LockMode::Exclusive, command).await?;
        Locked::load(repo, Some(lock)).await
    }

    /// [`RepoSpec::open_for_reading`], also listing the snapshots, before the index is loaded:
    /// every blob a listed snapshot uses is then in the index, even while backups run (a
    /// backup writes its index files before its snapshot). Operations that pick a snapshot and
    /// read it (restore, verify, dump) or check all of them use this order (restic's).
    pub async fn open_listed(
        &self,
        command: &str,
        no_lock: bool,
        progress: &dyn Progress,
    ) -> Result<(Locked, Vec<Snapshot>)> {
        let repo = self.open().await?;
        let lock = read_lock(&repo, command, no_lock, progress).await?;
        let snapshots = match repo.list_snapshots().await {
            Ok(s) => s,
            Err(e) => {
                release(lock).await;
                return Err(e);
            }
        };
        Ok((Locked::load(repo, lock).await?, snapshots))
    }

    /// Opens the repository for an operation that only reads: with a shared lock when it can
    /// be taken (see [`read_lock`]), without one when `no_lock`.
    pub async fn open_for_reading(
        &self,
        command: &str,
        no_lock: bool,
        progress: &dyn Progress,
    ) -> Result<Locked> {
        let repo = self.open().await?;
        let lock = read_lock(&repo, command, no_lock, progress).await?;
        Locked::load(repo, lock).await
    }
}

/// An open, indexed repository and the lock an operation holds on it (none when reading
/// without one).
pub struct Locked {
    /// The repository.
    pub repo: Arc<Repository<Indexed>>,
    lock: Option<LockGuard>,
}

impl Locked {
    /// Loads `repo`'s index under `lock`; releases the lock if that fails.
    pub async fn load(repo: Repository<Open>, lock: Option<LockGuard>) -> Result<Locked> {
        match repo.load_index().await {
            Ok(repo) => Ok(Locked {
                repo: Arc::new(repo),
                lock,
            }),
            Err(e) => {
                release(lock).await;
                Err(e)
            }
        }
    }

    /// Runs `body` on the repository, then releases the lock, whatever `body` returned.
    pub async fn run<T, F, Fut>(self, body: F) -> Result<T>
    where
        F: FnOnce(Arc<Repository<Indexed>>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let result = body(self.repo.clone()).await;
        release(self.lock).await;
        result
    }

    /// Releases the lock now.
    pub async fn release(self) {
        release(self.lock).await;
    }
}

/// Removes a lock; a failure only leaves a lock that goes stale (logged, not fatal: the
/// operation's own result matters more).
async fn release(lock: Option<LockGuard>) {
    if let Some(lock) = lock {
        if let Err(e) = lock.release().await {
            tracing::warn!("cannot remove the lock: {e:#}");
        }
    }
}

/// Runs `body` with a lock of `mode` held on an open (not indexed) repository, then releases
/// it whatever `body` returned. For operations that load the index themselves, later (forget).
pub async fn with_lock<S: Opened, T, F, Fut>(
    repo: &Repository<S>,
    mode: LockMode,
    command: &str,
    body: F,
) -> Result<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let lock = repo.lock(mode == LockMode::Exclusive, command).await?;
    let result = body().await;
    release(Some(lock)).await;
    result
}

/// Takes the shared lock for reading, unless `no_lock`. A repository this user may only read
/// cannot hold a lock: a restore must still work there, so it goes on without one after a
/// warning naming the risk, as restic's `--no-lock` would but without having to know the flag
/// at 3 a.m. Any other failure to lock (the storage unreachable, another process's exclusive
/// lock) stops.
pub async fn read_lock<S: Opened>(
    repo: &Repository<S>,
    command: &str,
    no_lock: bool,
    progress: &dyn Progress,
) -> Result<Option<LockGuard>> {
    if no_lock {
        return Ok(None);
    }
    match repo.lock(false, command).await {
        Ok(lock) => Ok(Some(lock)),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            progress.warn(format!(
                "cannot write a lock to {}: the storage refuses this user's writes, so {command} \
                 reads without a lock; a prune run meanwhile from elsewhere could remove data it \
                 needs (--no-lock skips the attempt)",
                repo.backend().location()
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
