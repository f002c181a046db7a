//! Build file trees that exercise every corner a backup tool must get right, take a precise
//! picture of a tree (`snapshot_tree`), and compare two pictures with a readable diff
//! (`assert_trees_equal`).
//!
//! Everything here is Unix-only: modes, owners, inodes, fifos and non-UTF-8 names are the point.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The name (relative to the tree root) of the tricky tree's file whose name is not UTF-8.
pub const NON_UTF8_NAME: &[u8] = b"nonutf8-\xff\xfe-name.txt";

/// The uid/gid given to `owned-by-1234.txt` when the tree is built by root.
pub const FOREIGN_OWNER: u32 = 1234;

/// What kind of file system object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

/// Everything about one entry that a faithful restore must reproduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Size in bytes for files and symlinks; 0 for directories (their size is file-system noise).
    pub size: u64,
    /// Modification time: whole seconds since the epoch.
    pub mtime_secs: i64,
    /// Modification time: nanoseconds within the second.
    pub mtime_nanos: i64,
    /// Hex SHA-256 of the content, for regular files.
    pub sha256: Option<String>,
    /// The raw target, for symlinks.
    pub symlink_target: Option<Vec<u8>>,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// For regular files whose inode is shared by more than one path *inside the tree*: the
    /// smallest such relative path. Two trees with equal groups have the same hard-link structure.
    pub hardlink_group: Option<Vec<u8>>,
}

/// A picture of a tree: relative path (raw bytes, `/`-separated, no leading `/`) to entry. The
/// root itself is not included.
pub type TreeSnapshot = BTreeMap<Vec<u8>, EntryInfo>;

/// Paths and facts about a tree built by [`make_tricky_tree`].
#[derive(Debug, Clone)]
pub struct TrickyTree {
    /// The tree's root folder.
    pub root: PathBuf,
    /// Relative path of the file whose name is not UTF-8.
    pub non_utf8_file: PathBuf,
    /// Relative paths of the three names of the hard-linked file.
    pub hardlinks: Vec<PathBuf>,
    /// Relative path of the fifo.
    pub fifo: PathBuf,
    /// Whether a file owned by [`FOREIGN_OWNER`] was made (only when running as root).
    pub has_foreign_owner: bool,
}

/// Deterministic pseudo-random (incompressible) bytes: the same `(n, seed)` always gives the same
/// bytes, different seeds give unrelated bytes.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; n];
    fill_random(&mut out, &mut SplitMix64::new(seed));
    out
}

/// Highly compressible bytes (a repeated line of text), `n` long.
pub fn compressible_bytes(n: usize) -> Vec<u8> {
    let line = b"Coffer keeps your data safe; this line repeats to compress well. 0123456789\n";
    line.iter().copied().cycle().take(n).collect()
}

/// Write `size` deterministic random bytes to `path` without holding them all in memory.
pub fn write_random_file(path: &Path, size: u64, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        fill_random(&mut buf[..n], &mut rng);
        f.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn fill_random(buf: &mut [u8], rng: &mut SplitMix64) {
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&rng.next().to_le_bytes());
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let last = rng.next().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

/// `path` and everything below it (symlinks not followed), parents before children; nothing
/// when `path` does not exist.
pub fn all_paths(path: &Path) -> Vec<PathBuf> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Vec::new();
    };
    let mut out = vec![path.to_path_buf()];
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .map(|e| e.expect("a folder entry").path())
            .collect();
        entries.sort();
        for e in entries {
            out.extend(all_paths(&e));
        }
    }
    out
}

/// Whether the current process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Create a fifo at `path` with mode `mode`.
pub fn mkfifo(path: &Path, mode: u32) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path has no NUL");
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) };
    if rc != 0 {
        panic!(
            "mkfifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
}

/// Change the owner of `path` without following symlinks.
pub fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("lchown {}: {e}", path.display()));
}

/// Set the permission bits of `path` (follows symlinks; don't call it on one).
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn mkdirs(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// Build, under `dir` (created if missing; it should be empty), a tree with:
///
/// * nested directories (`nested/a/b/c/deep.txt`), an empty directory (`empty-dir`);
/// * regular files of 0, 1 and 4095 bytes, 1 MiB + 7 and 5 MiB of random (incompressible) bytes,
///   and 3 MiB of highly compressible text;
/// * names with spaces, with a newline, with non-ASCII UTF-8, and one that is not UTF-8
///   ([`NON_UTF8_NAME`], bytes 0xff 0xfe);
/// * symlinks to a file, to a directory, to an absolute path, and a dangling one;
/// * one file with three names: `hard/first.txt`, `hard/second.txt`, `other-dir/third.txt`;
/// * a fifo (`special/fifo`);
/// * files with modes 0600, 0755 and 0444 and a directory with mode 0700 (under `modes/`);
/// * when run as root, a file owned by uid/gid [`FOREIGN_OWNER`];
/// * explicit, distinct mtimes (with nanoseconds) on every file, symlink and directory.
pub fn make_tricky_tree(dir: &Path) -> TrickyTree {
    mkdirs(dir);
    let p = |rel: &str| dir.join(rel);

    // Sizes.
    write(&p("empty-file"), b"");
    write(&p("one-byte"), b"x");
    write(&p("page-minus-one.bin"), &random_bytes(4095, 11));
    write(&p("mib-plus-seven.bin"), &random_bytes((1 << 20) + 7, 12));
    write(&p("random-5mib.bin"), &random_bytes(5 << 20, 13));
    write(&p("compressible-3mib.txt"), &compressible_bytes(3 << 20));

    // Names.
    write(&p("name with spaces.txt"), b"spaces in the name\n");
    write(&p("line\nbreak.txt"), b"a newline in the name\n");
    write(
        &p("caf\u{e9} \u{fc}n\u{ef}c\u{f6}d\u{e9} \u{1f4be}.txt"),
        b"unicode name\n",
    );
    let non_utf8 = dir.join(os(NON_UTF8_NAME));
    write(&non_utf8, b"the name of this file is not UTF-8\n");

    // Nesting.
    write(&p("nested/a/b/c/deep.txt"), b"deep\n");
    write(&p("nested/a/sibling.txt"), &random_bytes(10_000, 14));
    write(&p("nested/a/b/another file"), b"another\n");
    mkdirs(&p("empty-dir"));

    // Symlinks.
    write(&p("docs/readme.txt"), b"the target of a symlink\n");
    write(&p("docs/more/notes.txt"), b"notes\n");
    mkdirs(&p("links"));
    symlink("../docs/readme.txt", p("links/to-file")).unwrap();
    symlink("../docs", p("links/to-dir")).unwrap();
    symlink("does/not/exist", p("links/dangling")).unwrap();
    symlink("/etc/hostname", p("links/absolute")).unwrap();

    // Hard links: one inode, three names, two folders.
    write(&p("hard/first.txt"), &random_bytes(20_000, 15));
    mkdirs(&p("other-dir"));
    fs::hard_link(p("hard/first.txt"), p("hard/second.txt")).unwrap();
    fs::hard_link(p("hard/first.txt"), p("other-dir/third.txt")).unwrap();

    // Special files.
    mkdirs(&p("special"));
    mkfifo(&p("special/fifo"), 0o644);

    // Modes.
    write(&p("modes/private-0600.txt"), b"private\n");
    write(&p("modes/exec-0755.sh"), b"#!/bin/sh\necho hi\n");
    write(&p("modes/readonly-0444.txt"), b"read only\n");
    write(
        &p("modes/private-dir-0700/inner.txt"),
        b"inside a 0700 dir\n",
    );
    chmod(&p("modes/private-0600.txt"), 0o600);
    chmod(&p("modes/exec-0755.sh"), 0o755);
    chmod(&p("modes/readonly-0444.txt"), 0o444);
    chmod(&p("modes/private-dir-0700"), 0o700);

    // Owners.
    let has_foreign_owner = is_root();
    if has_foreign_owner {
        write(&p("owned-by-1234.txt"), b"owned by someone else\n");
        lchown(&p("owned-by-1234.txt"), FOREIGN_OWNER, FOREIGN_OWNER);
    }

    set_distinct_mtimes(dir);

    TrickyTree {
        root: dir.to_path_buf(),
        non_utf8_file: PathBuf::from(os(NON_UTF8_NAME)),
        hardlinks: vec![
            PathBuf::from("hard/first.txt"),
            PathBuf::from("hard/second.txt"),
            PathBuf::from("other-dir/third.txt"),
        ],
        fifo: PathBuf::from("special/fifo"),
        has_foreign_owner,
    }
}

/// Set the mtime (and atime) of `path` with `utimensat(2)`, without opening it (so it works on
/// fifos and unreadable files); `follow`: whether to follow a symlink or set the link's own times.
pub fn set_times(path: &Path, secs: i64, nanos: u32, follow: bool) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path has no NUL");
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nanos as _,
    };
    let times = [ts, ts];
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: `c` is NUL-terminated and `times` holds two timespecs, as utimensat requires.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), flags) };
    if rc != 0 {
        panic!(
            "utimensat {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
}

/// Set the mtime (and atime) of `path`, following symlinks.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    set_times(path, secs, nanos, true);
}

/// Give every entry under `dir` (not `dir` itself) an explicit, distinct mtime with a nanosecond
/// part: non-directories first, then directories deepest first (so setting a child does not
/// disturb its parent afterwards).
pub fn set_distinct_mtimes(dir: &Path) {
    let mut entries = Vec::new();
    collect(dir, &mut entries);
    // Deterministic order.
    entries.sort();
    let mut i: i64 = 0;
    let mut next_time = || {
        i += 1;
        (
            1_500_000_000 + i * 86_400 + i * 37,
            (i as u32 * 7_919_113) % 1_000_000_000,
        )
    };
    for (path, is_dir, is_link) in &entries {
        if *is_dir {
            continue;
        }
        let (secs, nanos) = next_time();
        set_times(path, secs, nanos, !is_link);
    }
    let mut dirs: Vec<&PathBuf> = entries.iter().filter(|e| e.1).map(|e| &e.0).collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let (secs, nanos) = next_time();
        set_times(d, secs, nanos, true);
    }
}

fn collect(dir: &Path, out: &mut Vec<(PathBuf, bool, bool)>) {
    let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for e in rd {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        let path = e.path();
        if ft.is_dir() {
            collect(&path, out);
        }
        out.push((path, ft.is_dir(), ft.is_symlink()));
    }
}

fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Hex SHA-256 of a byte slice.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Take a picture of the tree under `dir` (not following symlinks; the root itself is left out).
/// Regular files are read to hash them, which needs read permission on them.
pub fn snapshot_tree(dir: &Path) -> TreeSnapshot {
    let mut out = TreeSnapshot::new();
    let mut inodes: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    walk(dir, b"", &mut out, &mut inodes);
    for paths in inodes.values() {
        if paths.len() > 1 {
            let group = paths.iter().min().unwrap().clone();
            for p in paths {
                out.get_mut(p).unwrap().hardlink_group = Some(group.clone());
            }
        }
    }
    out
}

fn walk(
    dir: &Path,
    prefix: &[u8],
    out: &mut TreeSnapshot,
    inodes: &mut HashMap<(u64, u64), Vec<Vec<u8>>>,
) {
    let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    let mut names: Vec<_> = rd.map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let mut rel = prefix.to_vec();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        let md =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else if ft.is_socket() {
            EntryKind::Socket
        } else if ft.is_char_device() {
            EntryKind::CharDevice
        } else {
            EntryKind::BlockDevice
        };
        let info = EntryInfo {
            kind,
            mode: md.mode() & 0o7777,
            size: if kind == EntryKind::Dir { 0 } else { md.size() },
            mtime_secs: md.mtime(),
            mtime_nanos: md.mtime_nsec(),
            sha256: (kind == EntryKind::File).then(|| sha256_file(&path)),
            symlink_target: (kind == EntryKind::Symlink).then(|| {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .as_bytes()
                    .to_vec()
            }),
            uid: md.uid(),
            gid: md.gid(),
            hardlink_group: None,
        };
        if kind == EntryKind::File {
            inodes
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(rel.clone());
        }
        out.insert(rel.clone(), info);
        if kind == EntryKind::Dir {
            walk(&path, &rel, out, inodes);
        }
    }
}

/// A relative path as printable text (`\xNN` escapes for bytes that are not UTF-8, and `\n`).
pub fn show_path(p: &[u8]) -> String {
    let mut s = String::from("\"");
    for c in p.utf8_chunks() {
        s.extend(c.valid().escape_debug());
        for b in c.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s.push('"');
    s
}

struct Field<'a>(&'a str, String, String);

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: expected {}, got {}", self.0, self.1, self.2)
    }
}

/// The differences between two pictures, one readable line each; empty when they are equal.
///
/// Compared: the set of paths, kind, mode (not for symlinks), size (not for directories), mtime
/// to the nanosecond (directories and symlinks included), content hash, symlink target, owner,
/// group and hard-link structure. Not compared: atime, ctime, inode numbers.
pub fn diff_trees(expected: &TreeSnapshot, actual: &TreeSnapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (path, e) in expected {
        let Some(a) = actual.get(path) else {
            out.push(format!("missing:    {} ({:?})", show_path(path), e.kind));
            continue;
        };
        let mut fields = Vec::new();
        if e.kind != a.kind {
            fields.push(Field(
                "kind",
                format!("{:?}", e.kind),
                format!("{:?}", a.kind),
            ));
        } else {
            if e.kind != EntryKind::Symlink && e.mode != a.mode {
                fields.push(Field(
                    "mode",
                    format!("{:04o}", e.mode),
                    format!("{:04o}", a.mode),
                ));
            }
            if e.kind != EntryKind::Dir && e.size != a.size {
                fields.push(Field("size", e.size.to_string(), a.size.to_string()));
            }
            if e.sha256 != a.sha256 && e.size == a.size {
                fields.push(Field(
                    "content sha256",
                    format!("{:?}", e.sha256),
                    format!("{:?}", a.sha256),
                ));
            }
            if e.symlink_target != a.symlink_target {
                let t = |t: &Option<Vec<u8>>| t.as_deref().map(show_path).unwrap_or_default();
                fields.push(Field(
                    "symlink target",
                    t(&e.symlink_target),
                    t(&a.symlink_target),
                ));
            }
            if e.hardlink_group != a.hardlink_group {
                let g = |g: &Option<Vec<u8>>| match g {
                    Some(g) => format!("hard link of {}", show_path(g)),
                    None => "not hard-linked".to_string(),
                };
                fields.push(Field(
                    "hard links",
                    g(&e.hardlink_group),
                    g(&a.hardlink_group),
                ));
            }
        }
        if (e.mtime_secs, e.mtime_nanos) != (a.mtime_secs, a.mtime_nanos) {
            fields.push(Field(
                "mtime",
                format!("{}.{:09}", e.mtime_secs, e.mtime_nanos),
                format!("{}.{:09}", a.mtime_secs, a.mtime_nanos),
            ));
        }
        if e.uid != a.uid {
            fields.push(Field("uid", e.uid.to_string(), a.uid.to_string()));
        }
        if e.gid != a.gid {
            fields.push(Field("gid", e.gid.to_string(), a.gid.to_string()));
        }
        for f in fields {
            out.push(format!(
                "different:  {} ({:?}) {f}",
                show_path(path),
                e.kind
            ));
        }
    }
    for (path, a) in actual {
        if !expected.contains_key(path) {
            out.push(format!("unexpected: {} ({:?})", show_path(path), a.kind));
        }
    }
    out
}

/// Panic with a readable list of differences unless the two pictures are equal (see
/// [`diff_trees`] for what is compared).
#[track_caller]
pub fn assert_trees_equal(expected: &TreeSnapshot, actual: &TreeSnapshot) {
    let diffs = diff_trees(expected, actual);
    if !diffs.is_empty() {
        panic!(
            "trees differ ({} difference(s); expected has {} entries, actual has {}):\n  {}",
            diffs.len(),
            expected.len(),
            actual.len(),
            diffs.join("\n  ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_deterministic_and_seeded() {
        assert!(random_bytes(1000, 1) == random_bytes(1000, 1));
        assert!(random_bytes(1000, 1) != random_bytes(1000, 2));
        assert_eq!(random_bytes(13, 5).len(), 13);
        assert_eq!(&random_bytes(1003, 9)[..1000], &random_bytes(1000, 9)[..]);
    }

    #[test]
    fn write_random_file_matches_random_bytes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("r");
        write_random_file(&f, (3 << 20) + 5, 42);
        assert!(fs::read(&f).unwrap() == random_bytes((3 << 20) + 5, 42));
    }

    #[test]
    fn tricky_tree_snapshots_equal_to_itself_and_a_change_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let t = make_tricky_tree(&d.path().join("src"));
        let a = snapshot_tree(&t.root);
        assert_trees_equal(&a, &snapshot_tree(&t.root));

        let non_utf8 = a.get(NON_UTF8_NAME).expect("non-UTF-8 name present");
        assert_eq!(non_utf8.kind, EntryKind::File);
        assert_eq!(a[&b"special/fifo"[..]].kind, EntryKind::Fifo);
        assert_eq!(a[&b"links/to-dir"[..]].kind, EntryKind::Symlink);
        assert_eq!(
            a[&b"links/dangling"[..]].symlink_target.as_deref(),
            Some(&b"does/not/exist"[..])
        );
        assert_eq!(a[&b"modes/private-dir-0700"[..]].mode, 0o700);
        assert_eq!(a[&b"modes/readonly-0444.txt"[..]].mode, 0o444);
        assert_eq!(a[&b"random-5mib.bin"[..]].size, 5 << 20);
        assert_eq!(a[&b"mib-plus-seven.bin"[..]].size, (1 << 20) + 7);
        assert!(a.contains_key(&b"empty-dir"[..]));
        assert!(a.contains_key(&b"line\nbreak.txt"[..]));
        let g = Some(b"hard/first.txt".to_vec());
        assert_eq!(a[&b"hard/second.txt"[..]].hardlink_group, g);
        assert_eq!(a[&b"other-dir/third.txt"[..]].hardlink_group, g);
        assert_eq!(a[&b"docs/readme.txt"[..]].hardlink_group, None);
        // Every mtime is distinct (directories included), so a restore that misses one shows.
        let mut times: Vec<_> = a
            .values()
            .filter(|e| e.hardlink_group.is_none())
            .map(|e| (e.mtime_secs, e.mtime_nanos))
            .collect();
        let n = times.len();
        times.sort();
        times.dedup();
        assert_eq!(times.len(), n);

        // A copy with changes is reported, one line per change.
        let mut b = a.clone();
        b.get_mut(&b"nested"[..]).unwrap().mtime_nanos += 1;
        b.get_mut(&b"one-byte"[..]).unwrap().mode = 0o600;
        b.remove(&b"links/to-file"[..]);
        b.get_mut(&b"other-dir/third.txt"[..])
            .unwrap()
            .hardlink_group = None;
        let diffs = diff_trees(&a, &b);
        assert_eq!(diffs.len(), 4, "{diffs:#?}");
        assert!(diffs
            .iter()
            .any(|d| d.contains("\"nested\"") && d.contains("mtime")));
        assert!(diffs
            .iter()
            .any(|d| d.contains("missing") && d.contains("links/to-file")));
    }

    #[test]
    fn symlink_modes_and_directory_sizes_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        let t = make_tricky_tree(&d.path().join("src"));
        let a = snapshot_tree(&t.root);
        let mut b = a.clone();
        b.get_mut(&b"links/to-file"[..]).unwrap().mode = 0o7777;
        assert!(diff_trees(&a, &b).is_empty());
    }
}
