//! Walking a snapshot's trees depth-first, with paths as bytes.

use crate::error::Result;
use crate::id::Id;
use crate::read::BlobReader;
use crate::tree::{Node, NodeKind};

/// Visits every node under `root`, parents before children, in name order. `path` is the
/// node's path relative to the root, components joined by `/`.
pub async fn walk_tree(
    reader: &BlobReader,
    root: Id,
    visit: &mut (dyn FnMut(&[u8], &Node) -> Result<()> + Send),
) -> Result<()> {
    let mut stack: Vec<(Vec<u8>, Id)> = vec![(Vec::new(), root)];
    while let Some((prefix, tree_id)) = stack.pop() {
        let tree = reader.load_tree(&tree_id).await.map_err(|e| {
            e.context(format!(
                "directory {:?}",
                String::from_utf8_lossy(if prefix.is_empty() { b"/" } else { &prefix })
            ))
        })?;
        let mut subdirs = Vec::new();
        for node in &tree.nodes {
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&node.name.0);
            visit(&path, node)?;
            if node.kind == NodeKind::Dir {
                if let Some(sub) = node.subtree {
                    subdirs.push((path, sub));
                }
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}
