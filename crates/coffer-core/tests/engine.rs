//! The engine end to end on the in-memory backend: lifecycle, backup sessions, crash safety,
//! locks, damage detection.

use coffer_core::check::CheckOptions;
use coffer_core::keyfile::KdfParams;
use coffer_core::memory::MemoryBackend;
use coffer_core::pack::BlobType;
use coffer_core::snapshot::{Snapshot, SourceInfo};
use coffer_core::tree::{Node, NodeKind, Tree};
use coffer_core::{Backend, BackupOptions, ErrorKind, FileType, Id, InitOptions, Repository};
use std::sync::Arc;

fn opts() -> InitOptions {
    InitOptions {
        kdf: KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        },
        ..Default::default()
    }
}

fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn snapshot(tree: Id) -> Snapshot {
    let source = SourceInfo {
        kind: "test".into(),
        location: "memory".into(),
        paths: vec![],
    };
    Snapshot::new(source, tree)
}

/// Stores `content` as one file in a one-entry tree; returns the root tree id.
fn store_file(s: &coffer_core::BackupSession, content: &[u8]) -> Id {
    let c = s.save_stream(content).unwrap();
    let mut n = Node::new(b"f".to_vec(), NodeKind::File);
    n.content = c.chunks;
    n.size = c.size;
    n.sha256 = Some(hex::encode(c.sha256));
    s.save_tree(&Tree { nodes: vec![n] }).unwrap()
}

/// Opens the repository in `be` afresh, as a new process would.
async fn reopen(be: &Arc<MemoryBackend>) -> Repository<coffer_core::Indexed> {
    Repository::new(be.clone())
        .open(b"pw")
        .await
        .unwrap()
        .load_index()
        .await
        .unwrap()
}

async fn new_repo() -> (Arc<MemoryBackend>, Repository<coffer_core::Indexed>) {
    let be = Arc::new(MemoryBackend::new());
    let repo = Repository::new(be.clone())
        .init(b"pw", opts())
        .await
        .unwrap();
    (be, repo.load_index().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn init_open_and_bad_passwords() {
    let be = Arc::new(MemoryBackend::new());
    let closed = Repository::new(be.clone());
    assert_eq!(
        closed.open(b"pw").await.err().unwrap().kind(),
        ErrorKind::RepositoryNotFound
    );
    Repository::new(be.clone())
        .init(b"pw", opts())
        .await
        .unwrap();
    let again = Repository::new(be.clone()).init(b"pw", opts()).await;
    assert_eq!(again.err().unwrap().kind(), ErrorKind::RepositoryExists);
    assert_eq!(
        Repository::new(be.clone())
            .open(b"nope")
            .await
            .err()
            .unwrap()
            .kind(),
        ErrorKind::WrongPassword
    );
    let repo = Repository::new(be.clone()).open(b"pw").await.unwrap();
    let k2 = repo
        .add_key(
            b"second",
            KdfParams {
                m_cost: 64,
                t_cost: 1,
                p_cost: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(repo.list_keys().await.unwrap().len(), 2);
    let via2 = Repository::new(be.clone()).open(b"second").await.unwrap();
    assert_eq!(via2.key_id(), k2);
    assert_eq!(
        via2.remove_key(&k2).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_config_is_refused() {
    let be = Arc::new(MemoryBackend::new());
    Repository::new(be.clone())
        .init(b"pw", opts())
        .await
        .unwrap();
    be.tamper(FileType::Config, &Id::ZERO, |v| {
        let s = String::from_utf8(v.clone())
            .unwrap()
            .replace("aes256-gcm", "chacha20-poly1305");
        *v = s.into_bytes();
    });
    let err = Repository::new(be.clone()).open(b"pw").await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_round_trip_and_dedup() {
    let (_be, repo) = new_repo().await;
    let content = data(3_000_000, 7);
    let s = repo.start_backup(BackupOptions::default());
    let tree = tokio::task::block_in_place(|| store_file(&s, &content));
    let snap = s.finish(snapshot(tree)).await.unwrap();
    assert!(snap.stats.bytes_added > 2_900_000);
    let listed = repo.list_snapshots().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, snap.id);
    // Read back through the tree.
    let r = repo.blob_reader();
    let t = r.load_tree(&tree).await.unwrap();
    let mut back = Vec::new();
    for c in &t.nodes[0].content {
        back.extend(r.read_blob(c).await.unwrap());
    }
    assert_eq!(back, content);
    // The same content again adds nothing but a snapshot.
    let s = repo.start_backup(BackupOptions::default());
    let tree2 = tokio::task::block_in_place(|| store_file(&s, &content));
    assert_eq!(tree2, tree);
    let snap2 = s.finish(snapshot(tree2)).await.unwrap();
    assert_eq!(snap2.stats.bytes_added, 0);
    assert!(
        repo.check(&CheckOptions {
            read_data: true,
            subset: None
        })
        .await
        .unwrap()
        .ok
    );
    assert!(repo.verify_snapshot(&snap2).await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfinished_backup_lists_nothing_and_its_data_is_reused() {
    let (be, repo) = new_repo().await;
    let content = data(40_000_000, 9); // more than two packs
    let s = repo.start_backup(BackupOptions::default());
    tokio::task::block_in_place(|| s.save_stream(&content[..]).unwrap());
    s.abort().await.unwrap();
    assert!(repo.list_snapshots().await.unwrap().is_empty());
    assert!(
        !be.list(FileType::Index).await.unwrap().is_empty(),
        "abort indexes what was uploaded"
    );
    // A fresh open sees the uploaded blobs and does not store them again.
    let repo = reopen(&be).await;
    let s = repo.start_backup(BackupOptions::default());
    let tree = tokio::task::block_in_place(|| store_file(&s, &content));
    let snap = s.finish(snapshot(tree)).await.unwrap();
    assert!(
        snap.stats.bytes_added < 100_000,
        "re-added {} bytes",
        snap.stats.bytes_added
    );
    assert!(repo.check(&CheckOptions::default()).await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_session_leaves_a_checkable_repository() {
    let (be, repo) = new_repo().await;
    let s = repo.start_backup(BackupOptions::default());
    tokio::task::block_in_place(|| s.save_stream(&data(20_000_000, 3)[..]).unwrap());
    drop(s); // as if killed: no index for the in-memory pack, no snapshot
    let repo = reopen(&be).await;
    assert!(repo.list_snapshots().await.unwrap().is_empty());
    let r = repo
        .check(&CheckOptions {
            read_data: true,
            subset: None,
        })
        .await
        .unwrap();
    assert!(r.ok, "{:?}", r.errors);
}

#[tokio::test(flavor = "multi_thread")]
async fn damage_is_found_and_named() {
    let (be, repo) = new_repo().await;
    let s = repo.start_backup(BackupOptions::default());
    let tree = tokio::task::block_in_place(|| store_file(&s, &data(1_000_000, 5)));
    let snap = s.finish(snapshot(tree)).await.unwrap();
    let packs = be.list(FileType::Pack).await.unwrap();
    let (big, _) = packs.iter().max_by_key(|(_, n)| *n).unwrap();
    be.tamper(FileType::Pack, big, |v| v[100] ^= 0x40);
    let r = repo.check(&CheckOptions::default()).await.unwrap();
    assert!(r.ok, "structure alone is intact");
    let r = repo
        .check(&CheckOptions {
            read_data: true,
            subset: None,
        })
        .await
        .unwrap();
    assert!(!r.ok);
    let all = r.errors.join("\n");
    assert!(all.contains(&big.to_hex()), "{all}");
    assert!(
        all.contains(&snap.id.short()),
        "names the affected snapshot: {all}"
    );
    let v = repo.verify_snapshot(&snap).await.unwrap();
    assert!(!v.ok);
    assert!(v.errors.join("\n").contains('f'));
}

#[tokio::test(flavor = "multi_thread")]
async fn locks_conflict_as_documented() {
    let (_be, repo) = new_repo().await;
    let a = repo.lock(false, "backup").await.unwrap();
    let b = repo.lock(false, "backup").await.unwrap();
    let ex = repo.lock(true, "delete").await;
    assert_eq!(ex.err().unwrap().kind(), ErrorKind::Locked);
    a.release().await.unwrap();
    b.release().await.unwrap();
    let ex = repo.lock(true, "delete").await.unwrap();
    assert_eq!(
        repo.lock(false, "backup").await.err().unwrap().kind(),
        ErrorKind::Locked
    );
    ex.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_ids_resolve() {
    let (_be, repo) = new_repo().await;
    let s = repo.start_backup(BackupOptions::default());
    let tree = tokio::task::block_in_place(|| {
        s.save_blob(BlobType::Tree, &Tree::default().to_bytes())
            .unwrap()
            .0
    });
    s.finish(snapshot(tree)).await.unwrap();
    let mut all = repo.list_snapshots().await.unwrap();
    let one = all[0].clone();
    type R = Repository<coffer_core::Indexed>;
    assert_eq!(
        R::resolve_snapshot(&one.id.short(), &all).unwrap().id,
        one.id
    );
    assert_eq!(R::resolve_snapshot("latest", &all).unwrap().id, one.id);
    assert_eq!(
        R::resolve_snapshot("ffffffffff", &all).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let mut twin = one.clone();
    twin.id.0[4] ^= 1; // same 8-digit prefix
    all.push(twin);
    assert_eq!(
        R::resolve_snapshot(&one.id.short(), &all)
            .unwrap_err()
            .kind(),
        ErrorKind::Ambiguous
    );
    assert_eq!(
        R::resolve_snapshot("zz", &all).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn index_compaction_keeps_every_entry_and_supersedes_the_old_files() {
    let (be, repo) = new_repo().await;
    let mut snaps = Vec::new();
    for seed in 0..3 {
        let s = repo.start_backup(BackupOptions::default());
        let tree = tokio::task::block_in_place(|| store_file(&s, &data(2_000_000, 100 + 2 * seed)));
        snaps.push(s.finish(snapshot(tree)).await.unwrap());
    }
    let repo = reopen(&be).await;
    assert_eq!(repo.index_files().len(), 3);
    let blobs = repo.index().len();
    assert_eq!(repo.compact_index().await.unwrap(), (3, 1));
    assert_eq!(be.list(FileType::Index).await.unwrap().len(), 1);
    let repo = reopen(&be).await;
    assert_eq!(repo.index().len(), blobs);
    assert!(
        repo.check(&CheckOptions {
            read_data: true,
            subset: None
        })
        .await
        .unwrap()
        .ok
    );
    for s in &snaps {
        assert!(repo.verify_snapshot(s).await.unwrap().ok);
    }
}
