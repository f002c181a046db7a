//! `verify`: read every blob one snapshot needs, authenticate it, and check each file's SHA-256.

use crate::check::CheckReport;
use crate::error::Result;
use crate::id::Id;
use crate::repository::{Indexed, Repository};
use crate::snapshot::Snapshot;
use crate::tree::NodeKind;
use futures::StreamExt;
use sha2::Digest;

struct FileToCheck {
    path: Vec<u8>,
    chunks: Vec<Id>,
    sha256: Option<String>,
    size: u64,
}

impl Repository<Indexed> {
    /// Verifies one snapshot completely.
    pub async fn verify_snapshot(&self, snap: &Snapshot) -> Result<CheckReport> {
        let reader = self.blob_reader();
        let mut files: Vec<FileToCheck> = Vec::new();
        let mut r = CheckReport {
            snapshots: 1,
            ..Default::default()
        };
        let mut visit = |p: &[u8], n: &crate::tree::Node| {
            if n.kind == NodeKind::File {
                files.push(FileToCheck {
                    path: p.to_vec(),
                    chunks: n.content.clone(),
                    sha256: n.sha256.clone(),
                    size: n.size,
                });
            }
            Ok(())
        };
        if let Err(e) = crate::walk::walk_tree(&reader, snap.tree, &mut visit).await {
            r.errors
                .push(format!("snapshot {}: {e:#}", snap.id.short()));
        }
        let results: Vec<Option<String>> = futures::stream::iter(files.into_iter().map(
            |FileToCheck {
                 path,
                 chunks,
                 sha256: want,
                 size,
             }| {
                let reader = reader.clone();
                async move {
                    let name = String::from_utf8_lossy(&path).into_owned();
                    let mut sha = sha2::Sha256::new();
                    let mut total = 0u64;
                    for c in &chunks {
                        match reader.read_blob(c).await {
                            Ok(b) => {
                                total += b.len() as u64;
                                sha.update(&b);
                            }
                            Err(e) => return Some(format!("{name}: {e:#}")),
                        }
                    }
                    let got = hex::encode(sha.finalize());
                    if total != size {
                        Some(format!(
                            "{name}: content is {total} bytes, the tree says {size}"
                        ))
                    } else if want.as_deref() != Some(got.as_str()) {
                        Some(format!(
                            "{name}: SHA-256 mismatch (stored {}, read {got})",
                            want.unwrap_or_default()
                        ))
                    } else {
                        None
                    }
                }
            },
        ))
        .buffer_unordered(4)
        .collect()
        .await;
        r.errors.extend(results.into_iter().flatten());
        r.ok = r.errors.is_empty();
        Ok(r)
    }
}
