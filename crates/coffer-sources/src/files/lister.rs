//! Directory listings (names and `lstat` of every entry) made ahead of the walker by a small
//! pool of threads, so that several directories' inodes are read from disk at once.
//!
//! The walker asks for a directory with [`Lister::take`]: if a pool thread has listed it, the
//! walker gets the result; if the request is still queued, the walker claims it and lists the
//! directory itself (never waiting behind queued work); if a thread is listing it, the walker
//! waits for that thread. Each directory listed (by the walker or the pool) has its
//! subdirectories queued, up to [`MAX_AHEAD`] directories not yet taken.

use super::exclude::Excludes;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One entry as its directory listing saw it: name and `lstat` (an `fstatat` relative to the
/// open directory, without following symlinks).
pub(crate) type Listed = (OsString, std::io::Result<Metadata>);

/// A directory's entries sorted by name, and errors met while reading it.
pub(crate) struct Listing {
    /// The entries, sorted by name (bytes).
    pub entries: Vec<Listed>,
    /// Errors reading entries (the directory itself was readable).
    pub errors: Vec<std::io::Error>,
}

/// Directories listed (or being listed) ahead of the walker at most.
pub(crate) const MAX_AHEAD: usize = 512;

/// Lists one directory, sorted by name.
pub(crate) fn list_dir(abs: &Path) -> std::io::Result<Listing> {
    let rd = std::fs::read_dir(abs)?;
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for e in rd {
        match e {
            // DirEntry::metadata does not follow symlinks (fstatat, AT_SYMLINK_NOFOLLOW).
            Ok(e) => entries.push((e.file_name(), e.metadata())),
            Err(err) => errors.push(err),
        }
    }
    entries.sort_unstable_by(|a: &Listed, b: &Listed| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(Listing { entries, errors })
}

struct Request {
    path: PathBuf,
    claimed: Arc<AtomicBool>,
    reply: Sender<std::io::Result<Listing>>,
}

struct Ticket {
    claimed: Arc<AtomicBool>,
    reply: Receiver<std::io::Result<Listing>>,
}

/// What the walker and the pool share.
struct Shared {
    /// Directories queued or listed and not yet taken by the walker.
    tickets: Mutex<HashMap<PathBuf, Ticket>>,
    /// The request queue; `None` once the lister is dropped (which ends the pool).
    requests: Mutex<Option<Sender<Request>>>,
    excludes: Excludes,
    /// The source root, for path patterns of the excludes.
    root: PathBuf,
}

impl Shared {
    /// Queues `dirs` (skipping excluded ones) while fewer than [`MAX_AHEAD`] are pending.
    fn ahead(&self, dirs: impl IntoIterator<Item = PathBuf>) {
        let requests = self.requests.lock().unwrap();
        let Some(tx) = requests.as_ref() else { return };
        let mut tickets = self.tickets.lock().unwrap();
        for path in dirs {
            if tickets.len() >= MAX_AHEAD {
                return;
            }
            if tickets.contains_key(&path)
                || (!self.excludes.is_empty()
                    && self
                        .excludes
                        .is_excluded(&path, path.strip_prefix(&self.root).unwrap_or(&path)))
            {
                continue;
            }
            let claimed = Arc::new(AtomicBool::new(false));
            let (reply, rx) = bounded(1);
            let request = Request {
                path: path.clone(),
                claimed: claimed.clone(),
                reply,
            };
            if tx.send(request).is_err() {
                return;
            }
            tickets.insert(path, Ticket { claimed, reply: rx });
        }
    }
}

/// The subdirectories of a listed directory.
pub(crate) fn subdirs(abs: &Path, listing: &Listing) -> Vec<PathBuf> {
    listing
        .entries
        .iter()
        .filter(|(_, md)| md.as_ref().is_ok_and(|m| m.is_dir()))
        .map(|(n, _)| abs.join(n))
        .collect()
}

/// Lists directories ahead of the walker. Dropping it stops the pool.
pub(crate) struct Lister {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Lister {
    /// Starts `threads` listing threads (none: every listing is made by the caller). Each
    /// directory a thread lists has its subdirectories queued in turn, so the pool walks the
    /// tree breadth-first ahead of the walker, at most [`MAX_AHEAD`] directories ahead.
    pub(crate) fn new(threads: usize, excludes: Excludes, root: PathBuf) -> Lister {
        let (tx, rx) = unbounded::<Request>();
        let shared = Arc::new(Shared {
            tickets: Mutex::new(HashMap::new()),
            requests: Mutex::new(if threads > 0 { Some(tx) } else { None }),
            excludes,
            root,
        });
        let threads = (0..threads)
            .map(|i| {
                let (rx, shared) = (rx.clone(), shared.clone());
                std::thread::Builder::new()
                    .name(format!("coffer-list-{i}"))
                    .spawn(move || {
                        for r in rx {
                            if r.claimed.swap(true, Ordering::AcqRel) {
                                continue; // the walker got there first
                            }
                            let listing = list_dir(&r.path);
                            if let Ok(l) = &listing {
                                shared.ahead(subdirs(&r.path, l));
                            }
                            let _ = r.reply.send(listing);
                        }
                    })
                    .expect("spawn")
            })
            .collect();
        Lister { shared, threads }
    }

    /// Queues directories the walker will soon need (excluded ones are skipped).
    pub(crate) fn ahead(&self, dirs: impl IntoIterator<Item = PathBuf>) {
        self.shared.ahead(dirs);
    }

    /// The listing of `abs`: from the pool if it got there, otherwise made now.
    pub(crate) fn take(&self, abs: &Path) -> std::io::Result<Listing> {
        let ticket = self.shared.tickets.lock().unwrap().remove(abs);
        if let Some(t) = ticket {
            if t.claimed.swap(true, Ordering::AcqRel) {
                // A pool thread has it (done or under way).
                if let Ok(r) = t.reply.recv() {
                    return r;
                }
            }
        }
        list_dir(abs)
    }
}

impl Drop for Lister {
    fn drop(&mut self) {
        // Dropping the only sender ends the pool once the queue is drained (and stops the pool
        // from queueing more); queued requests are claimed so that nothing more is listed.
        self.shared.requests.lock().unwrap().take();
        for t in self.shared.tickets.lock().unwrap().drain() {
            t.1.claimed.store(true, Ordering::Release);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A scan of the source trees started early, typically while the repository is being opened
/// (key derivation, index loading), so that their directories are read from disk meanwhile.
/// Hand it to [`super::backup_files_with`]; dropping it stops the scan.
pub struct ScanAhead {
    pub(crate) lister: Lister,
    pub(crate) paths: Vec<PathBuf>,
}

impl ScanAhead {
    /// Starts listing `paths` (absolute, as given to the backup) and their subdirectories in
    /// the background, skipping `excludes`.
    pub fn start(paths: &[PathBuf], excludes: &Excludes) -> ScanAhead {
        let root = if single_dir(paths) {
            paths[0].clone()
        } else {
            PathBuf::from("/")
        };
        let lister = Lister::new(super::backup::LISTING_THREADS, excludes.clone(), root);
        lister.ahead(paths.iter().filter(|p| is_real_dir(p)).cloned());
        ScanAhead {
            lister,
            paths: paths.to_vec(),
        }
    }
}

/// Whether `p` is a directory and not a symlink to one.
pub(crate) fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// Whether the sources are one directory, which becomes the snapshot's root.
pub(crate) fn single_dir(paths: &[PathBuf]) -> bool {
    paths.len() == 1 && is_real_dir(&paths[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_inline_listings_agree() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["b", "a", "c"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
            for f in ["z", "y", "x"] {
                std::fs::write(dir.path().join(d).join(f), d).unwrap();
            }
        }
        let names =
            |l: &Listing| -> Vec<OsString> { l.entries.iter().map(|e| e.0.clone()).collect() };
        let lister = Lister::new(2, Excludes::default(), dir.path().to_path_buf());
        let top = lister.take(dir.path()).unwrap();
        assert_eq!(names(&top), ["a", "b", "c"]);
        lister.ahead(top.entries.iter().map(|e| dir.path().join(&e.0)));
        // Taken at once (maybe still queued: listed inline) or later (listed by the pool).
        let a = lister.take(&dir.path().join("a")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        for d in ["b", "c"] {
            let l = lister.take(&dir.path().join(d)).unwrap();
            assert_eq!(names(&l), ["x", "y", "z"]);
            assert!(l.entries.iter().all(|e| e.1.as_ref().unwrap().len() == 1));
        }
        assert_eq!(names(&a), ["x", "y", "z"]);
        assert!(lister.take(&dir.path().join("missing")).is_err());
        let none = Lister::new(0, Excludes::default(), dir.path().to_path_buf());
        none.ahead([dir.path().join("a")]);
        assert_eq!(
            names(&none.take(&dir.path().join("a")).unwrap()),
            ["x", "y", "z"]
        );
    }
}
