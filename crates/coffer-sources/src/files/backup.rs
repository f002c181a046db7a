//! Backing up file trees.
//!
//! Three kinds of thread cooperate, joined by bounded channels so memory stays bounded:
//! - the walker lists directories depth-first, decides for each file whether the parent
//!   snapshot's chunk list can be reused (same size, mtime, ctime and inode) and otherwise
//!   queues it for reading; it emits each directory, as a list of pending entries, after its
//!   subdirectories (post-order);
//! - workers (one per core) read, chunk, hash and store queued files;
//! - the finisher takes directories in that post-order, waits for their entries, and stores
//!   each tree; the root comes last.
//!
//! Nothing waits in a cycle: workers never wait, the finisher only waits for files already
//! queued and directories already finished, and the walker only waits for queue space.

use super::exclude::Excludes;
use super::meta::{kind_of, node_from, Names};
use super::promise::Promise;
use coffer_core::tree::{ByteName, Node, NodeKind, Tree};
use coffer_core::{BackupSession, BlobReader, Error, ErrorKind, Id, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What to back up and how.
#[derive(Clone)]
pub struct FileBackupOptions {
    /// Absolute source paths. One folder becomes the snapshot root; otherwise each source is
    /// stored under its base name.
    pub paths: Vec<PathBuf>,
    /// Exclusions.
    pub excludes: Excludes,
    /// The parent snapshot's root tree, whose unchanged files are reused without reading.
    pub parent_tree: Option<Id>,
    /// Reading threads.
    pub workers: usize,
}

/// A source entry that could not be read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unreadable {
    /// Its path.
    pub path: String,
    /// Why.
    pub error: String,
}

/// The outcome of a file-tree backup.
#[derive(Debug, Default)]
pub struct FileBackupResult {
    /// The root tree.
    pub root: Id,
    /// Files, directories, other entries, bytes.
    pub stats: coffer_core::snapshot::SnapshotStats,
    /// Entries skipped because they could not be read.
    pub unreadable: Vec<Unreadable>,
    /// Other warnings (sockets skipped, files changed while read).
    pub warnings: Vec<String>,
}

#[derive(Clone)]
enum FileOutcome {
    Stored {
        chunks: Vec<Id>,
        sha256: String,
        size: u64,
    },
    Unreadable,
    Fatal(Arc<Error>),
}

type DirOutcome = std::result::Result<Option<Id>, Arc<Error>>;

enum Pending {
    Ready(Node),
    File(Node, Promise<FileOutcome>),
    Dir(Node, Promise<DirOutcome>),
}

struct PendingTree {
    entries: Vec<Pending>,
    done: Promise<DirOutcome>,
    /// The same directory in the parent snapshot: if the new listing equals it, its id is reused
    /// without serializing and hashing the tree again.
    parent: Option<ParentTree>,
}

type ParentTree = (Id, Arc<Tree>);

/// Subdirectory trees of the parent snapshot the walker will soon need, loaded in the background.
const PREFETCH_PER_DIR: usize = 256;

struct Job {
    path: PathBuf,
    done: Promise<FileOutcome>,
}

#[derive(Default)]
struct Report {
    unreadable: Vec<Unreadable>,
    warnings: Vec<String>,
}

struct Walker {
    session: Arc<BackupSession>,
    reader: BlobReader,
    handle: tokio::runtime::Handle,
    excludes: Excludes,
    jobs: Sender<Job>,
    trees: Sender<PendingTree>,
    names: Names,
    hardlinks: HashMap<(u64, u64), (u64, Promise<FileOutcome>)>,
    report: Arc<Mutex<Report>>,
    root_path: PathBuf,
    unchanged: u64,
    prefetched: HashMap<Id, Promise<Option<Arc<Tree>>>>,
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

impl Walker {
    fn unreadable(&self, path: &Path, err: impl std::fmt::Display) {
        self.report.lock().unwrap().unreadable.push(Unreadable {
            path: display(path),
            error: err.to_string(),
        });
    }

    /// The parent snapshot's tree `id`, from the prefetch or loaded now; then starts loading
    /// its subdirectories' trees. A parent tree that cannot be read only costs re-reading files.
    fn load_parent(&mut self, id: Option<Id>) -> Option<ParentTree> {
        let id = id?;
        let tree = match self.prefetched.remove(&id) {
            Some(p) => p.wait(),
            None => self
                .handle
                .block_on(self.reader.load_tree(&id))
                .ok()
                .map(Arc::new),
        }?;
        for sub in tree
            .nodes
            .iter()
            .filter_map(|n| n.subtree)
            .take(PREFETCH_PER_DIR)
        {
            if self.prefetched.contains_key(&sub) {
                continue;
            }
            let p = Promise::new();
            let (reader, done) = (self.reader.clone(), p.clone());
            self.handle
                .spawn(async move { done.set(reader.load_tree(&sub).await.ok().map(Arc::new)) });
            self.prefetched.insert(sub, p);
        }
        Some((id, tree))
    }

    /// Turns one directory entry into a pending tree entry (or nothing, if skipped).
    /// `listed` is the entry as its directory listing saw it (an `fstatat` relative to the
    /// open directory, much cheaper than `lstat` of the full path); `None` for top-level sources.
    fn entry(
        &mut self,
        abs: &Path,
        name: &[u8],
        parent: Option<&ParentTree>,
        listed: Option<std::io::Result<std::fs::Metadata>>,
    ) -> Option<Pending> {
        if !self.excludes.is_empty() {
            let rel = abs.strip_prefix(&self.root_path).unwrap_or(abs);
            if self.excludes.is_excluded(abs, rel) {
                return None;
            }
        }
        let md = match listed.unwrap_or_else(|| std::fs::symlink_metadata(abs)) {
            Ok(m) => m,
            Err(e) => {
                self.unreadable(abs, e);
                return None;
            }
        };
        let Some(kind) = kind_of(&md) else {
            self.report.lock().unwrap().warnings.push(format!(
                "{}: sockets are not backed up (skipped)",
                display(abs)
            ));
            return None;
        };
        let mut node = node_from(name, kind, &md, &mut self.names);
        let old = parent
            .and_then(|(_, t)| t.find(name))
            .filter(|o| o.kind == kind)
            .cloned();
        let old = old.as_ref();
        match kind {
            NodeKind::Dir => {
                let sub_parent = self.load_parent(old.and_then(|o| o.subtree));
                let p = self.walk_dir(abs, sub_parent);
                Some(Pending::Dir(node, p))
            }
            NodeKind::Symlink => match std::fs::read_link(abs) {
                Ok(t) => {
                    node.link_target = Some(ByteName(t.as_os_str().as_bytes().to_vec()));
                    Some(Pending::Ready(node))
                }
                Err(e) => {
                    self.unreadable(abs, e);
                    None
                }
            },
            NodeKind::File => {
                if md.nlink() > 1 {
                    let key = (md.dev(), md.ino());
                    if let Some((group, first)) = self.hardlinks.get(&key) {
                        node.hardlink = Some(*group);
                        return Some(Pending::File(node, first.clone()));
                    }
                    node.hardlink = Some(self.hardlinks.len() as u64 + 1);
                }
                if let Some(o) = old {
                    let same = o.size == node.size
                        && o.mtime_ns == node.mtime_ns
                        && o.ctime_ns == node.ctime_ns
                        && o.inode == node.inode
                        && o.sha256.is_some()
                        && o.content.iter().all(|c| self.session.has_blob(c));
                    if same {
                        self.unchanged += 1;
                        let done = Promise::ready(FileOutcome::Stored {
                            chunks: o.content.clone(),
                            sha256: o.sha256.clone().unwrap_or_default(),
                            size: o.size,
                        });
                        if let Some(g) = node.hardlink {
                            self.hardlinks
                                .insert((md.dev(), md.ino()), (g, done.clone()));
                        }
                        return Some(Pending::File(node, done));
                    }
                }
                let done = Promise::new();
                if let Some(g) = node.hardlink {
                    self.hardlinks
                        .insert((md.dev(), md.ino()), (g, done.clone()));
                }
                if self
                    .jobs
                    .send(Job {
                        path: abs.to_path_buf(),
                        done: done.clone(),
                    })
                    .is_err()
                {
                    done.set(FileOutcome::Fatal(Arc::new(Error::new(
                        ErrorKind::Interrupted,
                        "workers stopped",
                    ))));
                }
                Some(Pending::File(node, done))
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                Some(Pending::Ready(node))
            }
        }
    }

    /// Lists a directory and emits it; returns the promise of its tree id.
    fn walk_dir(&mut self, abs: &Path, parent: Option<ParentTree>) -> Promise<DirOutcome> {
        if self.session.is_cancelled() {
            return Promise::ready(Err(Arc::new(Error::new(
                ErrorKind::Interrupted,
                "interrupted",
            ))));
        }
        type Listed = (std::ffi::OsString, std::io::Result<std::fs::Metadata>);
        let mut names: Vec<Listed> = match std::fs::read_dir(abs) {
            Ok(rd) => {
                let mut v = Vec::new();
                for e in rd {
                    match e {
                        // DirEntry::metadata does not follow symlinks (fstatat, NOFOLLOW).
                        Ok(e) => v.push((e.file_name(), e.metadata())),
                        Err(err) => self.unreadable(abs, err),
                    }
                }
                v
            }
            Err(e) => {
                self.unreadable(abs, e);
                return Promise::ready(Ok(None));
            }
        };
        names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut entries = Vec::with_capacity(names.len());
        for (n, md) in names {
            let child = abs.join(&n);
            if let Some(p) = self.entry(&child, n.as_bytes(), parent.as_ref(), Some(md)) {
                entries.push(p);
            }
        }
        self.emit(entries, parent)
    }

    fn emit(&mut self, entries: Vec<Pending>, parent: Option<ParentTree>) -> Promise<DirOutcome> {
        let done = Promise::new();
        if self
            .trees
            .send(PendingTree {
                entries,
                done: done.clone(),
                parent,
            })
            .is_err()
        {
            done.set(Err(Arc::new(Error::new(
                ErrorKind::Interrupted,
                "finisher stopped",
            ))));
        }
        done
    }
}

fn worker(session: Arc<BackupSession>, jobs: Receiver<Job>, report: Arc<Mutex<Report>>) {
    for job in jobs {
        if session.is_cancelled() {
            job.done.set(FileOutcome::Fatal(Arc::new(Error::new(
                ErrorKind::Interrupted,
                "interrupted",
            ))));
            continue;
        }
        let outcome = match std::fs::File::open(&job.path) {
            Err(e) => {
                report.lock().unwrap().unreadable.push(Unreadable {
                    path: display(&job.path),
                    error: e.to_string(),
                });
                FileOutcome::Unreadable
            }
            Ok(f) => {
                let before = f
                    .metadata()
                    .ok()
                    .map(|m| (m.len(), m.mtime(), m.mtime_nsec()));
                match session.save_stream(&f) {
                    Ok(c) => {
                        let after = f
                            .metadata()
                            .ok()
                            .map(|m| (m.len(), m.mtime(), m.mtime_nsec()));
                        if before != after {
                            report.lock().unwrap().warnings.push(format!(
                                "{}: changed while it was read; the snapshot holds the bytes as read",
                                display(&job.path)
                            ));
                        }
                        FileOutcome::Stored {
                            chunks: c.chunks,
                            sha256: hex::encode(c.sha256),
                            size: c.size,
                        }
                    }
                    // Errors of the source file itself: report, skip, go on.
                    Err(e) if e.kind() != ErrorKind::Interrupted && !session_failed(&session) => {
                        report.lock().unwrap().unreadable.push(Unreadable {
                            path: display(&job.path),
                            error: e.to_string(),
                        });
                        FileOutcome::Unreadable
                    }
                    Err(e) => FileOutcome::Fatal(Arc::new(e)),
                }
            }
        };
        job.done.set(outcome);
    }
}

/// Whether an error from `save_stream` came from the repository (fatal) rather than from
/// reading the source file (reported, skipped).
fn session_failed(s: &BackupSession) -> bool {
    s.is_cancelled() || s.has_failed()
}

fn finisher(
    session: Arc<BackupSession>,
    trees: Receiver<PendingTree>,
    stats: Arc<Mutex<coffer_core::snapshot::SnapshotStats>>,
) {
    for pt in trees {
        let mut tree = Tree::default();
        let mut failure: Option<Arc<Error>> = None;
        let (mut files, mut dirs, mut others, mut bytes) = (0u64, 0u64, 0u64, 0u64);
        for p in pt.entries {
            match p {
                Pending::Ready(n) => {
                    others += 1;
                    tree.nodes.push(n);
                }
                Pending::File(mut n, done) => match done.wait() {
                    FileOutcome::Stored {
                        chunks,
                        sha256,
                        size,
                    } => {
                        n.content = chunks;
                        n.sha256 = Some(sha256);
                        n.size = size;
                        files += 1;
                        bytes += size;
                        tree.nodes.push(n);
                    }
                    FileOutcome::Unreadable => {}
                    FileOutcome::Fatal(e) => failure = Some(e),
                },
                Pending::Dir(mut n, done) => match done.wait() {
                    Ok(Some(id)) => {
                        n.subtree = Some(id);
                        dirs += 1;
                        tree.nodes.push(n);
                    }
                    Ok(None) => {}
                    Err(e) => failure = Some(e),
                },
            }
        }
        if let Some(e) = failure {
            pt.done.set(Err(e));
            continue;
        }
        tree.sort();
        let saved = match pt.parent {
            Some((id, old)) if *old == tree => Ok(id),
            _ => session.save_tree(&tree),
        };
        match saved {
            Ok(id) => {
                let mut s = stats.lock().unwrap();
                s.files += files;
                s.dirs += dirs;
                s.others += others;
                s.total_bytes += bytes;
                pt.done.set(Ok(Some(id)));
            }
            Err(e) => pt.done.set(Err(Arc::new(e))),
        }
    }
}

/// Backs up file trees into `session`. Blocking: call from a worker thread (for example inside
/// `tokio::task::spawn_blocking`). Source files that cannot be read are reported in the result,
/// not as errors; an error means the repository failed or the backup was interrupted.
pub fn backup_files(
    session: Arc<BackupSession>,
    reader: BlobReader,
    handle: tokio::runtime::Handle,
    opts: FileBackupOptions,
) -> Result<FileBackupResult> {
    for p in &opts.paths {
        std::fs::symlink_metadata(p).map_err(|e| {
            Error::io(
                format!(
                    "cannot back up {}: it does not exist or cannot be read",
                    p.display()
                ),
                e,
            )
        })?;
    }
    let single_dir = opts.paths.len() == 1
        && opts.paths[0].is_dir()
        && !std::fs::symlink_metadata(&opts.paths[0])
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
    if !single_dir {
        let mut seen = std::collections::HashSet::new();
        for p in &opts.paths {
            let base = p
                .file_name()
                .map(|b| b.as_bytes().to_vec())
                .unwrap_or_else(|| b"root".to_vec());
            if !seen.insert(base.clone()) {
                return Err(Error::invalid(format!(
                    "two sources share the base name {:?}: back them up separately or name a common parent",
                    String::from_utf8_lossy(&base)
                )));
            }
        }
    }
    let workers = opts.workers.max(1);
    let (job_tx, job_rx) = bounded::<Job>(workers * 4);
    let (tree_tx, tree_rx) = bounded::<PendingTree>(256);
    let report = Arc::new(Mutex::new(Report::default()));
    let stats = Arc::new(Mutex::new(coffer_core::snapshot::SnapshotStats::default()));
    let mut threads = Vec::new();
    for i in 0..workers {
        let (s, rx, r) = (session.clone(), job_rx.clone(), report.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("coffer-read-{i}"))
                .spawn(move || worker(s, rx, r))
                .expect("spawn"),
        );
    }
    drop(job_rx);
    {
        let (s, st) = (session.clone(), stats.clone());
        threads.push(
            std::thread::Builder::new()
                .name("coffer-trees".into())
                .spawn(move || finisher(s, tree_rx, st))
                .expect("spawn"),
        );
    }
    let mut walker = Walker {
        session: session.clone(),
        reader,
        handle,
        excludes: opts.excludes.clone(),
        jobs: job_tx,
        trees: tree_tx,
        names: Names::default(),
        hardlinks: HashMap::new(),
        report: report.clone(),
        root_path: if single_dir {
            opts.paths[0].clone()
        } else {
            PathBuf::from("/")
        },
        unchanged: 0,
        prefetched: HashMap::new(),
    };
    let parent = walker.load_parent(opts.parent_tree);
    let root = if single_dir {
        walker.walk_dir(&opts.paths[0].clone(), parent)
    } else {
        let mut entries = Vec::new();
        for p in &opts.paths {
            let name = p
                .file_name()
                .map(|b| b.as_bytes().to_vec())
                .unwrap_or_else(|| b"root".to_vec());
            if let Some(e) = walker.entry(p, &name, parent.as_ref(), None) {
                entries.push(e);
            }
        }
        walker.emit(entries, parent)
    };
    let unchanged = walker.unchanged;
    drop(walker); // closes both queues: workers and finisher end when drained
    let outcome = root.wait();
    for t in threads {
        t.join()
            .map_err(|_| Error::new(ErrorKind::Storage, "a backup thread panicked"))?;
    }
    let root = match outcome {
        Ok(Some(id)) => id,
        Ok(None) => {
            return Err(Error::invalid(
                "the source could not be read at all; nothing was backed up",
            ))
        }
        Err(e) => return Err(Error::new(e.kind(), e.to_string())),
    };
    let report = std::mem::take(&mut *report.lock().unwrap());
    let mut stats = std::mem::take(&mut *stats.lock().unwrap());
    if single_dir {
        stats.dirs += 1; // the root itself
    }
    stats.files_unchanged = unchanged;
    stats.bytes_read = session
        .counters()
        .bytes_read
        .load(std::sync::atomic::Ordering::Relaxed);
    stats.files_read = stats.files.saturating_sub(unchanged);
    Ok(FileBackupResult {
        root,
        stats,
        unreadable: report.unreadable,
        warnings: report.warnings,
    })
}
