//! Trees: a directory's entries, stored as a JSON blob. Names are bytes (not only UTF-8): a name
//! that is valid UTF-8 is stored as a string, any other as `{"b64": "..."}`.

use crate::error::{Error, Result};
use crate::id::Id;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A file name or symlink target as raw bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteName(pub Vec<u8>);

impl ByteName {
    /// A lossy UTF-8 rendering for messages and listings.
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl std::fmt::Debug for ByteName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.lossy())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum NameRepr {
    Text(String),
    Bytes { b64: String },
}

impl Serialize for ByteName {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(t) => NameRepr::Text(t.to_string()),
            Err(_) => NameRepr::Bytes {
                b64: base64::engine::general_purpose::STANDARD.encode(&self.0),
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ByteName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(ByteName(match NameRepr::deserialize(d)? {
            NameRepr::Text(t) => t.into_bytes(),
            NameRepr::Bytes { b64 } => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(serde::de::Error::custom)?,
        }))
    }
}

/// The kind of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file (content in `content`).
    File,
    /// A directory (entries in the tree `subtree`).
    Dir,
    /// A symbolic link (target in `link_target`).
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device (`rdev`).
    CharDevice,
    /// A block device (`rdev`).
    BlockDevice,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The entry's name.
    pub name: ByteName,
    /// File, directory, symlink, ...
    pub kind: NodeKind,
    /// Permission bits and set-id/sticky bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Owner's user name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Owner's group name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the Unix epoch (used to detect changes).
    #[serde(default)]
    pub ctime_ns: i64,
    /// Inode number (used to detect changes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inode: u64,
    /// Device id of the file system holding the entry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub device: u64,
    /// Content size in bytes (files).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Symlink target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<ByteName>,
    /// Device number (devices).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    /// Entries sharing a hardlink group number are links to one file (numbered per snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardlink: Option<u64>,
    /// Content chunks, in order (files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// SHA-256 of the whole content (files), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The directory's tree (directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
}

impl Node {
    /// A node with the given name and kind and every other field empty.
    pub fn new(name: impl Into<Vec<u8>>, kind: NodeKind) -> Node {
        Node {
            name: ByteName(name.into()),
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            device: 0,
            size: 0,
            link_target: None,
            rdev: 0,
            hardlink: None,
            content: Vec::new(),
            sha256: None,
            subtree: None,
        }
    }
}

/// A directory listing: nodes sorted by name bytes, each name once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// The entries.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts the nodes by name (the canonical order, so equal directories give equal blobs).
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Serializes to the blob form.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("trees serialize")
    }

    /// Parses the blob form.
    pub fn from_bytes(b: &[u8]) -> Result<Tree> {
        serde_json::from_slice(b).map_err(|e| Error::corrupt(format!("tree does not parse: {e}")))
    }

    /// The node with this name.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.0.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_names_round_trip() {
        let mut t = Tree::default();
        t.nodes.push(Node::new(b"z".to_vec(), NodeKind::File));
        t.nodes
            .push(Node::new(vec![0xff, 0xfe, b'\n', b' '], NodeKind::Symlink));
        t.nodes[1].link_target = Some(ByteName(vec![0x80]));
        t.sort();
        let back = Tree::from_bytes(&t.to_bytes()).unwrap();
        assert_eq!(back, t);
        assert!(back.find(&[0xff, 0xfe, b'\n', b' ']).is_some());
    }
}
