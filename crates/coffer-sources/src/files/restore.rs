//! Restoring file trees: contents checked against their SHA-256, written under a temporary
//! name and renamed into place; then modes, owners (as root) and times; hardlinks as hardlinks.
//! Damaged data costs only the files that use it: the rest is restored and each failure named.

use super::exclude::Excludes;
use coffer_core::index::BlobLocation;
use coffer_core::tree::{Node, NodeKind};
use coffer_core::walk::walk_tree;
use coffer_core::{BlobReader, Error, ErrorKind, Id, Result};
use crossbeam_channel::bounded;
use sha2::Digest;
use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What to restore where.
#[derive(Clone)]
pub struct RestoreOptions {
    /// The folder to restore into.
    pub target: PathBuf,
    /// Only these paths (relative to the snapshot root) and what is below them.
    pub includes: Vec<Vec<u8>>,
    /// Skip what matches.
    pub excludes: Excludes,
    /// Allow a target that is not empty (existing files are replaced).
    pub overwrite: bool,
    /// Writing threads.
    pub workers: usize,
    /// Live counters and the stop flag, shared with the caller.
    pub watch: RestoreWatch,
}

/// What a caller can see of a running restore, and how it stops one: files and bytes written
/// so far, the totals once the plan is made, and a flag that, once set, starts no new file
/// (files being written are finished) so that the restore ends with
/// [`ErrorKind::Interrupted`], naming what it left in the target.
#[derive(Debug, Clone, Default)]
pub struct RestoreWatch(Arc<WatchInner>);

#[derive(Debug, Default)]
struct WatchInner {
    files: AtomicU64,
    bytes: AtomicU64,
    files_total: AtomicU64,
    bytes_total: AtomicU64,
    stop: std::sync::atomic::AtomicBool,
}

impl RestoreWatch {
    /// Files written so far.
    pub fn files(&self) -> u64 {
        self.0.files.load(Ordering::Relaxed)
    }
    /// Content bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.0.bytes.load(Ordering::Relaxed)
    }
    /// Regular files to write in all (0 until the plan is made).
    pub fn files_total(&self) -> u64 {
        self.0.files_total.load(Ordering::Relaxed)
    }
    /// Content bytes to write in all (0 until the plan is made).
    pub fn bytes_total(&self) -> u64 {
        self.0.bytes_total.load(Ordering::Relaxed)
    }
    /// Asks the restore to stop (see [`RestoreWatch`]).
    pub fn stop(&self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
    /// Whether [`RestoreWatch::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.stop.load(Ordering::SeqCst)
    }
}

/// What a restore did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RestoreReport {
    /// Files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Other entries restored.
    pub others: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Entries that could not be restored, with the reason.
    pub failed: Vec<(String, String)>,
    /// Things done differently than asked (e.g. owners kept because not root).
    pub warnings: Vec<String>,
}

fn wanted(path: &[u8], includes: &[Vec<u8>]) -> (bool, bool) {
    // (restore this entry, descend into it)
    if includes.is_empty() {
        return (true, true);
    }
    for inc in includes {
        if path == inc.as_slice() || (path.starts_with(inc) && path.get(inc.len()) == Some(&b'/')) {
            return (true, true);
        }
        if inc.starts_with(path) && inc.get(path.len()) == Some(&b'/') {
            return (true, true); // an ancestor of an included path
        }
    }
    (false, false)
}

/// Which `--include` paths matched an entry of the snapshot (the path itself, not only its
/// parent folders), and the entries beside the deepest folder each one reached, to suggest.
struct IncludeMatches<'a> {
    includes: &'a [Vec<u8>],
    matched: Vec<bool>,
    /// Per include: (depth of the deepest folder of its path found, entries in that folder).
    near: Vec<(usize, Vec<Vec<u8>>)>,
}

/// At most this many entries of one folder are kept to suggest from.
const NEAR_MAX: usize = 10_000;

impl<'a> IncludeMatches<'a> {
    fn new(includes: &'a [Vec<u8>]) -> Self {
        IncludeMatches {
            includes,
            matched: vec![false; includes.len()],
            near: vec![(0, Vec::new()); includes.len()],
        }
    }

    /// Notes the entry `p` (a path below the snapshot root) of the walk.
    fn see(&mut self, p: &[u8]) {
        let parent = match p.iter().rposition(|b| *b == b'/') {
            Some(i) => &p[..i],
            None => &p[..0],
        };
        for (i, inc) in self.includes.iter().enumerate() {
            if p == inc.as_slice() || (p.starts_with(inc) && p.get(inc.len()) == Some(&b'/')) {
                self.matched[i] = true;
                continue;
            }
            // `p` is beside the include's path: its folder is one of the include's folders.
            let beside = parent.is_empty()
                || (inc.starts_with(parent) && inc.get(parent.len()) == Some(&b'/'));
            if !beside {
                continue;
            }
            let depth = if parent.is_empty() {
                0
            } else {
                parent.len() + 1
            };
            let near = &mut self.near[i];
            if depth > near.0 {
                *near = (depth, Vec::new());
            }
            if depth == near.0 && near.1.len() < NEAR_MAX {
                near.1.push(p.to_vec());
            }
        }
    }

    /// A usage error naming each include that matched nothing, with the closest paths.
    fn check(&self) -> Result<()> {
        let mut problems = Vec::new();
        for (i, inc) in self.includes.iter().enumerate() {
            if self.matched[i] {
                continue;
            }
            let (depth, entries) = &self.near[i];
            // The component of the include at the depth reached, compared with what is there.
            let want = inc[*depth..]
                .split(|b| *b == b'/')
                .next()
                .unwrap_or_default();
            let want = String::from_utf8_lossy(want);
            let mut ranked: Vec<(usize, String)> = entries
                .iter()
                .map(|p| {
                    let name = String::from_utf8_lossy(&p[*depth..]).into_owned();
                    (
                        strsim::levenshtein(&want, &name),
                        format!("/{}", String::from_utf8_lossy(p)),
                    )
                })
                .collect();
            ranked.sort();
            let closest: Vec<String> = ranked.into_iter().take(3).map(|(_, p)| p).collect();
            let hint = if closest.is_empty() {
                String::new()
            } else {
                format!(" (closest: {})", closest.join(", "))
            };
            problems.push(format!(
                "--include /{} matches nothing in the snapshot{hint}",
                String::from_utf8_lossy(inc)
            ));
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::usage(format!(
            "{}; nothing was restored (`coffer ls SNAPSHOT` lists the snapshot's paths)",
            problems.join("; ")
        )))
    }
}

fn to_path(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// Sets a path's access and modification times to the node's mtime without opening it
/// (opening a fifo would block until a writer comes; a symlink is not followed).
fn set_times(path: &Path, node: &Node) -> std::io::Result<()> {
    let t = nix::sys::time::TimeSpec::new(
        node.mtime_ns.div_euclid(1_000_000_000),
        node.mtime_ns.rem_euclid(1_000_000_000),
    );
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(std::io::Error::from)
}

fn chown(path: &Path, node: &Node, follow: bool) -> std::io::Result<()> {
    let (u, g) = (
        Some(nix::unistd::Uid::from_raw(node.uid)),
        Some(nix::unistd::Gid::from_raw(node.gid)),
    );
    let flag = if follow {
        nix::fcntl::AtFlags::empty()
    } else {
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW
    };
    nix::unistd::fchownat(nix::fcntl::AT_FDCWD, path, u, g, flag).map_err(std::io::Error::from)
}

struct FileJob {
    path: PathBuf,
    node: Node,
    display: String,
}

/// Writes one file's content under a temporary name, checks its size and SHA-256, sets its
/// metadata, then renames it into place; on any failure the temporary file is removed.
fn write_file<'a>(
    job: &FileJob,
    as_root: bool,
    chunks: impl Iterator<Item = Result<Cow<'a, [u8]>>>,
) -> Result<u64> {
    let dir = job.path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = b".coffer-restore-".to_vec();
    tmp_name.extend_from_slice(hex::encode(&Id::random().0[..6]).as_bytes());
    let tmp = dir.join(OsStr::from_bytes(&tmp_name));
    let result = (|| -> Result<u64> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
        let mut sha = sha2::Sha256::new();
        let mut n = 0u64;
        for data in chunks {
            let data = data?;
            sha.update(&data);
            n += data.len() as u64;
            f.write_all(&data)
                .map_err(|e| Error::io(format!("cannot write {}", job.path.display()), e))?;
        }
        let got = hex::encode(sha.finalize());
        if n != job.node.size || job.node.sha256.as_deref() != Some(got.as_str()) {
            return Err(Error::corrupt(format!(
                "content does not match the snapshot (SHA-256 {got}, expected {})",
                job.node.sha256.as_deref().unwrap_or("none")
            )));
        }
        if as_root {
            nix::unistd::fchown(
                &f,
                Some(nix::unistd::Uid::from_raw(job.node.uid)),
                Some(nix::unistd::Gid::from_raw(job.node.gid)),
            )
            .map_err(|e| {
                Error::io(
                    format!("cannot set the owner of {}", job.path.display()),
                    e.into(),
                )
            })?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(job.node.mode))
            .map_err(|e| Error::io(format!("cannot set the mode of {}", job.path.display()), e))?;
        let t = filetime::FileTime::from_unix_time(
            job.node.mtime_ns.div_euclid(1_000_000_000),
            job.node.mtime_ns.rem_euclid(1_000_000_000) as u32,
        );
        filetime::set_file_handle_times(&f, Some(t), Some(t))
            .map_err(|e| Error::io(format!("cannot set the times of {}", job.path.display()), e))?;
        drop(f);
        std::fs::rename(&tmp, &job.path)
            .map_err(|e| Error::io(format!("cannot move {} into place", job.path.display()), e))?;
        Ok(n)
    })();
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result
}

/// Neighbouring blobs of one pack read in one request, and the single-chunk files they feed.
struct RangeJob {
    pack: Id,
    start: u64,
    end: u64,
    blobs: Vec<(BlobLocation, Vec<FileJob>)>,
}

/// Work for the writing threads: a multi-chunk file (read chunk by chunk), or a range.
enum Work {
    Large(Box<FileJob>),
    Range(RangeJob),
}

/// Ranges are at most this long, and blobs further apart than the gap start a new range.
const RANGE_MAX: u64 = 8 * 1024 * 1024;
const RANGE_GAP: u64 = 256 * 1024;

/// Splits files into multi-chunk files and pack ranges covering the single-chunk ones, so a
/// tree of many small files costs a few large reads instead of one request per file.
fn plan(
    reader: &BlobReader,
    jobs: Vec<FileJob>,
    failed: &mut Vec<(String, PathBuf, String)>,
) -> Vec<Work> {
    let mut work = Vec::new();
    let mut by_blob: HashMap<Id, (BlobLocation, Vec<FileJob>)> = HashMap::new();
    for job in jobs {
        if job.node.content.len() != 1 {
            work.push(Work::Large(Box::new(job)));
            continue;
        }
        let id = job.node.content[0];
        if let Some(e) = by_blob.get_mut(&id) {
            e.1.push(job);
            continue;
        }
        match reader.locate(&id) {
            Ok(loc) => {
                by_blob.insert(id, (loc, vec![job]));
            }
            Err(e) => failed.push((job.display, job.path, format!("{e:#}"))),
        }
    }
    let mut by_pack: HashMap<Id, Vec<(BlobLocation, Vec<FileJob>)>> = HashMap::new();
    for (_, (loc, jobs)) in by_blob {
        by_pack.entry(loc.pack).or_default().push((loc, jobs));
    }
    for (pack, mut blobs) in by_pack {
        blobs.sort_by_key(|(l, _)| l.entry.offset);
        let mut cur: Option<RangeJob> = None;
        for (loc, jobs) in blobs {
            let (s, e) = (
                loc.entry.offset as u64,
                loc.entry.offset as u64 + loc.entry.length as u64,
            );
            if let Some(r) = &cur {
                if s > r.end + RANGE_GAP || e - r.start > RANGE_MAX {
                    work.push(Work::Range(cur.take().unwrap()));
                }
            }
            let r = cur.get_or_insert(RangeJob {
                pack,
                start: s,
                end: e,
                blobs: Vec::new(),
            });
            r.end = r.end.max(e);
            r.blobs.push((loc, jobs));
        }
        work.extend(cur.map(Work::Range));
    }
    work
}

type Failures = Arc<Mutex<Vec<(String, PathBuf, String)>>>;

/// Chunks of a multi-chunk file read (and opened) ahead of the writer at most: the next ones
/// come off the disk or the network while one is checked and written.
const CHUNKS_AHEAD: usize = 3;

/// A file's chunks in order, each read on the runtime's tasks up to [`CHUNKS_AHEAD`] ahead.
struct ChunksAhead<'a> {
    reader: &'a BlobReader,
    handle: &'a tokio::runtime::Handle,
    ids: std::slice::Iter<'a, Id>,
    reading: std::collections::VecDeque<tokio::task::JoinHandle<Result<Vec<u8>>>>,
}

impl<'a> ChunksAhead<'a> {
    fn new(reader: &'a BlobReader, handle: &'a tokio::runtime::Handle, ids: &'a [Id]) -> Self {
        ChunksAhead {
            reader,
            handle,
            ids: ids.iter(),
            reading: std::collections::VecDeque::new(),
        }
    }
}

impl Iterator for ChunksAhead<'_> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.reading.len() <= CHUNKS_AHEAD {
            let Some(id) = self.ids.next().copied() else {
                break;
            };
            let r = self.reader.clone();
            self.reading
                .push_back(self.handle.spawn(async move { r.read_blob(&id).await }));
        }
        let next = self.reading.pop_front()?;
        Some(self.handle.block_on(next).unwrap_or_else(|e| {
            Err(Error::new(
                ErrorKind::Storage,
                format!("reading a chunk failed: {e}"),
            ))
        }))
    }
}

impl Drop for ChunksAhead<'_> {
    /// A file abandoned half-way (damaged chunk, full disk) stops the reads started for it.
    fn drop(&mut self) {
        for h in &self.reading {
            h.abort();
        }
    }
}

/// Does one piece of work; counts what was restored and records what failed.
fn do_work(
    reader: &BlobReader,
    handle: &tokio::runtime::Handle,
    w: Work,
    as_root: bool,
    done: &RestoreWatch,
    failed: &Failures,
) {
    let ok = |n: u64| {
        done.0.files.fetch_add(1, Ordering::Relaxed);
        done.0.bytes.fetch_add(n, Ordering::Relaxed);
    };
    match w {
        Work::Large(job) => {
            let chunks =
                ChunksAhead::new(reader, handle, &job.node.content).map(|r| r.map(Cow::Owned));
            match write_file(&job, as_root, chunks) {
                Ok(n) => ok(n),
                Err(e) => failed
                    .lock()
                    .unwrap()
                    .push((job.display, job.path, format!("{e:#}"))),
            }
        }
        Work::Range(r) => {
            let bytes = handle.block_on(reader.read_pack_range(&r.pack, r.start, r.end - r.start));
            for (loc, jobs) in r.blobs {
                let content = bytes.as_ref().map_err(|e| format!("{e:#}")).and_then(|b| {
                    let s = (loc.entry.offset as u64 - r.start) as usize;
                    reader
                        .open_located(&loc, &b[s..s + loc.entry.length as usize])
                        .map_err(|e| format!("{e:#}"))
                });
                for job in jobs {
                    let res = match &content {
                        Ok(c) => write_file(
                            &job,
                            as_root,
                            std::iter::once(Ok(Cow::Borrowed(c.as_slice()))),
                        ),
                        Err(e) => Err(Error::corrupt(e.clone())),
                    };
                    match res {
                        Ok(n) => ok(n),
                        Err(e) => {
                            failed
                                .lock()
                                .unwrap()
                                .push((job.display, job.path, format!("{e:#}")))
                        }
                    }
                }
            }
        }
    }
}

/// Restores the tree `root` into `opts.target`. Blocking: call from a worker thread. The report
/// names every entry that could not be restored; an error means nothing could be done at all.
pub fn restore_files(
    reader: BlobReader,
    handle: tokio::runtime::Handle,
    root: Id,
    opts: RestoreOptions,
) -> Result<RestoreReport> {
    let target = &opts.target;
    // A missing target is created once the plan is known to restore something.
    let target_missing = match std::fs::read_dir(target) {
        Ok(mut rd) => {
            if rd.next().is_some() && !opts.overwrite {
                return Err(Error::invalid(format!(
                    "the target {} is not empty: choose an empty or new folder, or pass --overwrite to replace what is there",
                    target.display()
                )));
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            return Err(Error::io(
                format!("cannot use the target {}", target.display()),
                e,
            ))
        }
    };
    // 1. Plan: every entry to restore, parents before children.
    let mut entries: Vec<(Vec<u8>, Node)> = Vec::new();
    let mut skip_prefixes: Vec<Vec<u8>> = Vec::new();
    let includes = opts.includes.clone();
    let excludes = opts.excludes.clone();
    let mut matches = IncludeMatches::new(&includes);
    let mut visit = |p: &[u8], n: &Node| {
        matches.see(p);
        if skip_prefixes
            .iter()
            .any(|s| p.starts_with(s) && p.get(s.len()) == Some(&b'/'))
        {
            return Ok(());
        }
        let (take, _) = wanted(p, &includes);
        let abs = Path::new("/").join(OsStr::from_bytes(p));
        if !take || excludes.is_excluded(&abs, Path::new(OsStr::from_bytes(p))) {
            skip_prefixes.push(p.to_vec());
            return Ok(());
        }
        entries.push((p.to_vec(), n.clone()));
        Ok(())
    };
    handle.block_on(walk_tree(&reader, root, &mut visit))?;
    matches.check()?;
    if !opts.includes.is_empty() && entries.is_empty() {
        return Err(Error::usage(
            "no entry of the snapshot matches the --include paths",
        ));
    }
    if target_missing {
        std::fs::create_dir_all(target)
            .map_err(|e| Error::io(format!("cannot create the target {}", target.display()), e))?;
    }
    let as_root = nix::unistd::geteuid().is_root();
    let mut report = RestoreReport::default();
    if !as_root {
        report
            .warnings
            .push("not running as root: files are owned by the current user".into());
    }
    // 2. Directories (writable for now), symlinks and special files; queue regular files.
    let mut dirs: Vec<(PathBuf, Node)> = Vec::new();
    let mut jobs: Vec<FileJob> = Vec::new();
    let mut links: Vec<(PathBuf, u64, String)> = Vec::new();
    let mut groups: HashMap<u64, PathBuf> = HashMap::new();
    let mut failed_dirs: Vec<Vec<u8>> = Vec::new();
    for (rel, node) in entries {
        let display = format!("/{}", String::from_utf8_lossy(&rel));
        if failed_dirs
            .iter()
            .any(|d| rel.starts_with(d) && rel.get(d.len()) == Some(&b'/'))
        {
            report
                .failed
                .push((display, "its directory could not be created".into()));
            continue;
        }
        let path = to_path(target, &rel);
        let res: std::io::Result<()> = match node.kind {
            NodeKind::Dir => {
                let r = match std::fs::create_dir(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {
                        Ok(())
                    }
                    r => r,
                };
                if r.is_err() {
                    failed_dirs.push(rel.clone());
                } else {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).ok();
                    dirs.push((path.clone(), node.clone()));
                }
                r
            }
            NodeKind::File => {
                if let Some(g) = node.hardlink {
                    if groups.contains_key(&g) {
                        links.push((path, g, display));
                        continue;
                    }
                    groups.insert(g, path.clone());
                }
                jobs.push(FileJob {
                    path,
                    node,
                    display,
                });
                continue;
            }
            NodeKind::Symlink => {
                if opts.overwrite {
                    std::fs::remove_file(&path).ok();
                }
                let target_bytes = node.link_target.clone().unwrap_or_default().0;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target_bytes), &path).and_then(|_| {
                    if as_root {
                        chown(&path, &node, false)?;
                    }
                    set_times(&path, &node)
                })
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                if opts.overwrite {
                    std::fs::remove_file(&path).ok();
                }
                let kind = match node.kind {
                    NodeKind::Fifo => nix::sys::stat::SFlag::S_IFIFO,
                    NodeKind::CharDevice => nix::sys::stat::SFlag::S_IFCHR,
                    _ => nix::sys::stat::SFlag::S_IFBLK,
                };
                if node.kind != NodeKind::Fifo && !as_root {
                    report.warnings.push(format!(
                        "{display}: devices can only be created by root (skipped)"
                    ));
                    continue;
                }
                nix::sys::stat::mknod(
                    &path,
                    kind,
                    nix::sys::stat::Mode::from_bits_truncate(node.mode),
                    node.rdev as nix::libc::dev_t,
                )
                .map_err(std::io::Error::from)
                .and_then(|_| {
                    if as_root {
                        chown(&path, &node, false)?;
                    }
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(node.mode))?;
                    set_times(&path, &node)
                })
            }
        };
        match res {
            Ok(()) => match node.kind {
                NodeKind::Dir => report.dirs += 1,
                _ => report.others += 1,
            },
            Err(e) => report.failed.push((display, e.to_string())),
        }
    }
    // 3. File contents, on every core: multi-chunk files first (the longest jobs), then ranges.
    let mut early_failures = Vec::new();
    let mut work = plan(&reader, jobs, &mut early_failures);
    work.sort_by_key(|w| match w {
        Work::Large(j) => (0, u64::MAX - j.node.size),
        Work::Range(r) => (1, r.start),
    });
    let failed: Failures = Arc::new(Mutex::new(early_failures));
    let counters = opts.watch.clone();
    let (files_total, bytes_total) = work.iter().fold((0u64, 0u64), |(f, b), w| match w {
        Work::Large(j) => (f + 1, b + j.node.size),
        Work::Range(r) => r
            .blobs
            .iter()
            .flat_map(|(_, jobs)| jobs)
            .fold((f, b), |(f, b), j| (f + 1, b + j.node.size)),
    });
    counters.0.files_total.store(files_total, Ordering::Relaxed);
    counters.0.bytes_total.store(bytes_total, Ordering::Relaxed);
    let mut bad_groups: Vec<PathBuf> = Vec::new();
    {
        let (tx, rx) = bounded::<Work>(64);
        let mut threads = Vec::new();
        for _ in 0..opts.workers.max(1) {
            let (rx, reader, handle, failed, counters) = (
                rx.clone(),
                reader.clone(),
                handle.clone(),
                failed.clone(),
                counters.clone(),
            );
            threads.push(std::thread::spawn(move || {
                for w in rx {
                    if counters.is_stopped() {
                        break;
                    }
                    do_work(&reader, &handle, w, as_root, &counters, &failed);
                }
            }));
        }
        for w in work {
            if opts.watch.is_stopped() || tx.send(w).is_err() {
                break;
            }
        }
        drop(tx);
        for t in threads {
            t.join()
                .map_err(|_| Error::new(ErrorKind::Storage, "a restore thread panicked"))?;
        }
    }
    for (display, path, err) in std::mem::take(&mut *failed.lock().unwrap()) {
        bad_groups.push(path);
        report.failed.push((display, err));
    }
    report.files = counters.files();
    report.bytes = counters.bytes();
    if opts.watch.is_stopped() {
        return Err(Error::new(
            ErrorKind::Interrupted,
            format!(
                "the restore was interrupted: {} holds a partial restore ({} of {} files, without \
                 the directories' permissions and times); restore again into an empty folder, \
                 or with --overwrite into this one",
                target.display(),
                report.files,
                files_total
            ),
        ));
    }
    // 4. Hardlinks to the files just written.
    for (path, g, display) in links {
        let first = &groups[&g];
        if bad_groups.contains(first) {
            report.failed.push((
                display,
                "the file it is a hardlink of could not be restored".into(),
            ));
            continue;
        }
        if opts.overwrite {
            std::fs::remove_file(&path).ok();
        }
        match std::fs::hard_link(first, &path) {
            Ok(()) => report.files += 1,
            Err(e) => report.failed.push((display, e.to_string())),
        }
    }
    // 5. Directory metadata, deepest first (writing into a directory changes its mtime).
    for (path, node) in dirs.iter().rev() {
        let r = (|| -> std::io::Result<()> {
            if as_root {
                chown(path, node, true)?;
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode))?;
            set_times(path, node)
        })();
        if let Err(e) = r {
            report.failed.push((
                format!("{}", path.display()),
                format!("cannot set metadata: {e}"),
            ));
        }
    }
    report.failed.sort();
    Ok(report)
}
