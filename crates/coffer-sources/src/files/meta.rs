//! File metadata to tree nodes, with user and group names looked up once each.

use coffer_core::tree::{Node, NodeKind};
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Caches uid and gid to name lookups.
#[derive(Default)]
pub(crate) struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Names {
    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }
    fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
}

/// The node kind of a file type, or `None` for sockets (which cannot be restored).
pub(crate) fn kind_of(md: &Metadata) -> Option<NodeKind> {
    let ft = md.file_type();
    Some(if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_file() {
        NodeKind::File
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else {
        return None;
    })
}

/// A node carrying everything `lstat` tells, without content.
pub(crate) fn node_from(name: &[u8], kind: NodeKind, md: &Metadata, names: &mut Names) -> Node {
    let mut n = Node::new(name.to_vec(), kind);
    n.mode = md.mode() & 0o7777;
    n.uid = md.uid();
    n.gid = md.gid();
    n.user = names.user(n.uid);
    n.group = names.group(n.gid);
    n.mtime_ns = md.mtime() * 1_000_000_000 + md.mtime_nsec();
    n.ctime_ns = md.ctime() * 1_000_000_000 + md.ctime_nsec();
    n.inode = md.ino();
    n.device = md.dev();
    if kind == NodeKind::File {
        n.size = md.len();
    }
    if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
        n.rdev = md.rdev();
    }
    n
}
