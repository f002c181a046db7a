//! Repository locks. Backups, restores and checks take shared locks, so any number run at once;
//! commands that delete data take an exclusive lock. A lock is an encrypted object refreshed
//! every few minutes; one whose process is gone (same host) or that was not refreshed for
//! 30 minutes is stale and ignored.

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use crate::repository::{hostname, username, Keyring, Opened, Repository};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A lock's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    /// Whether it excludes every other lock.
    pub exclusive: bool,
    /// Host of the process.
    pub hostname: String,
    /// User of the process.
    pub username: String,
    /// Process id.
    pub pid: u32,
    /// When it was written (refreshing writes a new one).
    pub time: DateTime<Utc>,
    /// What the process is doing.
    pub command: String,
}

const STALE_AFTER_MINUTES: i64 = 30;
const REFRESH_SECONDS: u64 = 5 * 60;

impl LockInfo {
    /// Whether this lock no longer protects anything.
    pub fn is_stale(&self) -> bool {
        if Utc::now() - self.time > Duration::minutes(STALE_AFTER_MINUTES) {
            return true;
        }
        if self.hostname == hostname() {
            // SAFETY: kill with signal 0 only checks that the process exists.
            let r = unsafe { libc::kill(self.pid as libc::pid_t, 0) };
            if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                return true;
            }
        }
        false
    }
}

/// A held lock. It refreshes itself; call [`LockGuard::release`] to remove it.
pub struct LockGuard {
    keys: Arc<Keyring>,
    id: Arc<std::sync::Mutex<Id>>,
    refresher: tokio::task::JoinHandle<()>,
}

async fn write_lock(keys: &Keyring, info: &LockInfo) -> Result<Id> {
    let id = Id::random();
    let sealed = keys.seal(
        FileType::Lock,
        &id,
        &serde_json::to_vec(info).expect("lock serializes"),
    );
    keys.backend
        .write(FileType::Lock, &id, Bytes::from(sealed))
        .await?;
    Ok(id)
}

/// Reads every lock except `except`; locks that cannot be read are reported as such.
pub(crate) async fn read_locks(
    keys: &Keyring,
    except: Option<Id>,
) -> Result<Vec<(Id, Option<LockInfo>)>> {
    let mut out = Vec::new();
    for (id, _) in keys.backend.list(FileType::Lock).await? {
        if Some(id) == except {
            continue;
        }
        let info = match keys.backend.read(FileType::Lock, &id).await {
            Ok(d) => keys
                .open(FileType::Lock, &id, &d)
                .ok()
                .and_then(|p| serde_json::from_slice(&p).ok()),
            Err(e) if e.kind() == ErrorKind::NotFound => continue, // released meanwhile
            Err(e) => return Err(e),
        };
        out.push((id, info));
    }
    Ok(out)
}

impl<S: Opened> Repository<S> {
    /// Takes a lock; fails with [`ErrorKind::Locked`] if a live lock conflicts.
    pub async fn lock(&self, exclusive: bool, command: &str) -> Result<LockGuard> {
        let keys = self.state.keyring().clone();
        let info = LockInfo {
            exclusive,
            hostname: hostname(),
            username: username(),
            pid: std::process::id(),
            time: Utc::now(),
            command: command.into(),
        };
        let conflict = |others: &[(Id, Option<LockInfo>)]| -> Option<String> {
            others.iter().find_map(|(id, o)| match o {
                Some(o) if !o.is_stale() && (exclusive || o.exclusive) => Some(format!(
                    "the repository is locked by `{}` (pid {} on {}, user {}, since {}, lock {}); if that process is gone, run `coffer unlock`",
                    o.command, o.pid, o.hostname, o.username, o.time.format("%Y-%m-%d %H:%M:%S UTC"), id.short()
                )),
                _ => None,
            })
        };
        if let Some(msg) = conflict(&read_locks(&keys, None).await?) {
            return Err(Error::new(ErrorKind::Locked, msg));
        }
        let id = write_lock(&keys, &info).await?;
        // Check again after writing: of two racing lockers at least one sees the other.
        if let Some(msg) = conflict(&read_locks(&keys, Some(id)).await?) {
            keys.backend.remove(FileType::Lock, &id).await.ok();
            return Err(Error::new(ErrorKind::Locked, msg));
        }
        let id = Arc::new(std::sync::Mutex::new(id));
        let refresher = {
            let (keys, id) = (keys.clone(), id.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(REFRESH_SECONDS)).await;
                    let mut fresh = info.clone();
                    fresh.time = Utc::now();
                    if let Ok(new) = write_lock(&keys, &fresh).await {
                        let old = std::mem::replace(&mut *id.lock().unwrap(), new);
                        keys.backend.remove(FileType::Lock, &old).await.ok();
                    }
                }
            })
        };
        Ok(LockGuard {
            keys,
            id,
            refresher,
        })
    }

    /// Removes stale locks (or every lock with `all`); returns how many were removed.
    pub async fn unlock(&self, all: bool) -> Result<usize> {
        let keys = self.state.keyring();
        let mut n = 0;
        for (id, info) in read_locks(keys, None).await? {
            if all || info.map(|i| i.is_stale()).unwrap_or(true) {
                keys.backend.remove(FileType::Lock, &id).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

impl LockGuard {
    /// Removes the lock.
    pub async fn release(self) -> Result<()> {
        self.refresher.abort();
        let id = *self.id.lock().unwrap();
        self.keys.backend.remove(FileType::Lock, &id).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}
