//! End-to-end tests of a prune on a repository in memory: marks, grace periods, repacks, dry
//! runs, plans, re-indexing for a late backup, and a crash at every stage.

use super::*;
use crate::backend::FileType;
use crate::check::CheckOptions;
use crate::error::ErrorKind;
use crate::id::Id;
use crate::keyfile::KdfParams;
use crate::memory::MemoryBackend;
use crate::repository::{Indexed, Repository};
use crate::snapshot::{Snapshot, SourceInfo};
use crate::tree::NodeKind;
use crate::tree::{Node, Tree};
use crate::{Backend, BackupOptions, BackupSession, InitOptions};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;

fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
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

/// Stores each content as one file of a one-level tree; returns the root tree id.
fn store_files(s: &BackupSession, contents: &[&[u8]]) -> Id {
    let nodes = contents
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let sc = s.save_stream(*c).unwrap();
            let mut n = Node::new(format!("f{i}").into_bytes(), NodeKind::File);
            n.content = sc.chunks;
            n.size = sc.size;
            n
        })
        .collect();
    s.save_tree(&Tree { nodes }).unwrap()
}

async fn new_repo() -> Arc<MemoryBackend> {
    let be = Arc::new(MemoryBackend::new());
    Repository::new(be.clone())
        .init(
            b"pw",
            InitOptions {
                kdf: KdfParams {
                    m_cost: 64,
                    t_cost: 1,
                    p_cost: 1,
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    be
}

async fn reopen(be: &Arc<MemoryBackend>) -> Repository<Indexed> {
    Repository::new(be.clone())
        .open(b"pw")
        .await
        .unwrap()
        .load_index()
        .await
        .unwrap()
}

/// Backs up `contents` as one snapshot; returns its id.
async fn backup(be: &Arc<MemoryBackend>, contents: &[&[u8]]) -> Id {
    let repo = reopen(be).await;
    let s = Arc::new(repo.start_backup(BackupOptions::default()));
    let s2 = s.clone();
    let contents: Vec<Vec<u8>> = contents.iter().map(|c| c.to_vec()).collect();
    let tree = tokio::task::spawn_blocking(move || {
        let refs: Vec<&[u8]> = contents.iter().map(|c| c.as_slice()).collect();
        store_files(&s2, &refs)
    })
    .await
    .unwrap();
    let s = Arc::into_inner(s).unwrap();
    s.finish(snapshot(tree)).await.unwrap().id
}

async fn check_ok(be: &Arc<MemoryBackend>) -> crate::check::CheckReport {
    let r = reopen(be)
        .await
        .check(&CheckOptions {
            read_data: true,
            subset: None,
        })
        .await
        .unwrap();
    assert!(r.ok, "check failed: {:?}", r.errors);
    r
}

async fn restore_all(be: &Arc<MemoryBackend>) -> Vec<Vec<Vec<u8>>> {
    let repo = reopen(be).await;
    let reader = repo.blob_reader();
    let mut out = Vec::new();
    for s in repo.list_snapshots().await.unwrap() {
        let t = reader.load_tree(&s.tree).await.unwrap();
        let mut files = Vec::new();
        for n in t.nodes {
            let mut v = Vec::new();
            for c in n.content {
                v.extend(reader.read_blob(&c).await.unwrap());
            }
            files.push(v);
        }
        out.push(files);
    }
    out
}

fn opts(grace: u64) -> PruneOptions {
    PruneOptions {
        grace: Duration::from_secs(grace),
        ..PruneOptions::new()
    }
}

async fn prune(be: &Arc<MemoryBackend>, o: &PruneOptions) -> PruneReport {
    reopen(be).await.prune(o).await.unwrap()
}

fn pack_count(be: &MemoryBackend) -> usize {
    futures::executor::block_on(be.list(FileType::Pack))
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn unused_packs_are_marked_then_deleted_after_the_grace_period() {
    let be = new_repo().await;
    let a = data(300_000, 1);
    let b = data(300_000, 2);
    let first = backup(&be, &[&a]).await;
    backup(&be, &[&b]).await;
    reopen(&be).await.delete_snapshot(&first).await.unwrap();
    let before = pack_count(&be);

    // Phase 1: marked, nothing deleted; check is happy and says so.
    let r = prune(&be, &opts(3600)).await;
    assert_eq!(r.unused_packs.packs, 2, "{r:?}"); // a's data pack and its tree pack
    assert_eq!(r.deleted.packs, 0);
    assert_eq!(r.pending.packs, 2);
    assert!(r.next_deletion.unwrap() > Utc::now());
    assert_eq!(pack_count(&be), before);
    let c = check_ok(&be).await;
    assert_eq!(c.pending_packs, 2);
    assert!(c.notes.iter().any(|n| n.contains("pending deletion")));

    // Within the grace period a second run deletes nothing and keeps the marks.
    let r = prune(&be, &opts(3600)).await;
    assert_eq!((r.deleted.packs, r.pending.packs), (0, 2));

    // Phase 2: the grace period is over.
    let r = prune(&be, &opts(0)).await;
    assert_eq!(r.deleted.packs, 2, "{r:?}");
    assert_eq!(r.pending.packs, 0);
    assert_eq!(pack_count(&be), before - 2);
    let c = check_ok(&be).await;
    assert_eq!(c.pending_packs, 0);
    assert_eq!(restore_all(&be).await, vec![vec![b.clone()]]);
    // Nothing left to do.
    let r = prune(&be, &opts(0)).await;
    assert_eq!((r.deleted.packs, r.unused_bytes), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn partly_used_packs_are_repacked_and_the_rest_is_freed() {
    let be = new_repo().await;
    let a = data(400_000, 3);
    let b = data(400_000, 4);
    let c = data(400_000, 5);
    let first = backup(&be, &[&a, &b, &c]).await;
    backup(&be, &[&b]).await;
    reopen(&be).await.delete_snapshot(&first).await.unwrap();
    let r = prune(&be, &opts(0)).await;
    assert_eq!(r.repacked_packs.packs, 1, "{r:?}");
    assert!(r.repacked_blobs >= 1);
    assert!(r.new_packs.packs >= 1);
    assert_eq!(r.unused_bytes_after, 0);
    check_ok(&be).await;
    assert_eq!(restore_all(&be).await, vec![vec![b.clone()]]);
    // With --max-unused unlimited nothing would have been repacked.
    let r = prune(
        &be,
        &PruneOptions {
            max_unused: MaxUnused::Unlimited,
            ..opts(0)
        },
    )
    .await;
    assert_eq!(r.repacked_packs.packs, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_changes_nothing() {
    let be = new_repo().await;
    let first = backup(&be, &[&data(200_000, 6)]).await;
    backup(&be, &[&data(200_000, 7)]).await;
    reopen(&be).await.delete_snapshot(&first).await.unwrap();
    let objects = |be: &MemoryBackend| {
        let mut v = Vec::new();
        for ft in [FileType::Pack, FileType::Index] {
            v.extend(futures::executor::block_on(be.list(ft)).unwrap());
        }
        v.sort();
        v
    };
    let before = objects(&be);
    let r = prune(
        &be,
        &PruneOptions {
            dry_run: true,
            ..opts(0)
        },
    )
    .await;
    assert!(r.dry_run);
    assert_eq!(r.deleted.packs, 2);
    assert_eq!(objects(&be), before);
}

/// A backup that loaded its index before a prune's mark (its lock went stale) finishes
/// between the two phases and uses a blob of a pending pack: that pack goes back into the
/// index instead of being deleted.
#[tokio::test(flavor = "multi_thread")]
async fn a_pending_blob_reused_by_a_concurrent_backup_survives() {
    let be = new_repo().await;
    let a = data(300_000, 8);
    let first = backup(&be, &[&a]).await;
    // The late backup opens the repository now, sees `a` in the index...
    let late = reopen(&be).await;
    reopen(&be).await.delete_snapshot(&first).await.unwrap();
    // ...prune marks a's packs...
    let r = prune(&be, &opts(3600)).await;
    assert_eq!(r.pending.packs, 2);
    // ...and the late backup deduplicates against them.
    let s = Arc::new(late.start_backup(BackupOptions::default()));
    let s2 = s.clone();
    let a2 = a.clone();
    let tree = tokio::task::spawn_blocking(move || store_files(&s2, &[&a2]))
        .await
        .unwrap();
    let s = Arc::into_inner(s).unwrap();
    assert_eq!(
        s.counters()
            .blobs_added
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    s.finish(snapshot(tree)).await.unwrap();

    // Phase 2 finds the snapshot using the pending packs and re-indexes them.
    let r = prune(&be, &opts(0)).await;
    assert_eq!(r.reindexed_packs.packs, 2, "{r:?}");
    assert_eq!(r.deleted.packs, 0);
    check_ok(&be).await;
    assert_eq!(restore_all(&be).await, vec![vec![a.clone()]]);
}

/// A kill at each stage leaves a repository check passes, and the next prune finishes.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_at_any_stage_leaves_a_sound_repository() {
    for stage in PruneStage::ALL {
        let be = new_repo().await;
        let a = data(300_000, 9);
        let b = data(300_000, 10);
        let first = backup(&be, &[&a, &b]).await;
        backup(&be, &[&b]).await;
        backup(&be, &[&data(100_000, 11)]).await;
        reopen(&be).await.delete_snapshot(&first).await.unwrap();
        let o = PruneOptions {
            hook: Some(Arc::new(move |s| {
                if s == stage {
                    panic!("crash at {}", s.name());
                }
            })),
            ..opts(0)
        };
        let repo = reopen(&be).await;
        let crashed = tokio::spawn(async move { repo.prune(&o).await }).await;
        assert!(crashed.is_err(), "the hook stops the run at {stage:?}");
        check_ok(&be).await;
        let r = prune(&be, &opts(0)).await;
        assert_eq!(r.pending.packs, 0, "{stage:?}: {r:?}");
        check_ok(&be).await;
        let r = prune(&be, &opts(0)).await;
        assert_eq!(
            (r.deleted.packs, r.repacked_packs.packs, r.unused_bytes),
            (0, 0, 0),
            "{stage:?}: {r:?}"
        );
        let restored = restore_all(&be).await;
        assert!(restored.contains(&vec![b.clone()]), "{stage:?}");
        assert_eq!(restored.len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn index_compaction_keeps_pending_packs_pending() {
    let be = new_repo().await;
    let first = backup(&be, &[&data(200_000, 12)]).await;
    backup(&be, &[&data(200_000, 13)]).await;
    backup(&be, &[&data(200_000, 14)]).await;
    reopen(&be).await.delete_snapshot(&first).await.unwrap();
    prune(&be, &opts(3600)).await;
    let repo = reopen(&be).await;
    assert_eq!(repo.pending_packs().len(), 2);
    let (before, after) = repo.compact_index().await.unwrap();
    assert!(before > 1 && after == 1);
    assert_eq!(reopen(&be).await.pending_packs().len(), 2);
    let r = prune(&be, &opts(0)).await;
    assert_eq!(r.deleted.packs, 2);
    check_ok(&be).await;
}

/// The pack and index files on storage.
fn objects(be: &MemoryBackend) -> Vec<(Id, u64)> {
    let mut v = Vec::new();
    for ft in [FileType::Pack, FileType::Index] {
        v.extend(futures::executor::block_on(be.list(ft)).unwrap());
    }
    v.sort();
    v
}

/// A plan writes nothing and says what its execution then does.
#[tokio::test(flavor = "multi_thread")]
async fn a_plan_writes_nothing_and_its_execution_does_what_it_said() {
    let be = new_repo().await;
    let (a, b, c) = (data(400_000, 15), data(400_000, 16), data(300_000, 17));
    let first = backup(&be, &[&a, &b]).await;
    backup(&be, &[&b]).await;
    let third = backup(&be, &[&c]).await;
    for s in [first, third] {
        reopen(&be).await.delete_snapshot(&s).await.unwrap();
    }
    let before = objects(&be);
    let repo = reopen(&be).await;
    let plan = repo.plan_prune(&opts(3600)).await.unwrap();
    assert_eq!(objects(&be), before);
    // c's data and tree packs, and the first snapshot's tree pack, are unused; the pack of a
    // and b is repacked.
    assert_eq!(plan.unused_packs().len(), 3, "{plan:?}");
    assert_eq!(plan.repacked_packs().len(), 1, "{plan:?}");
    assert!(plan.deleted_packs().is_empty() && plan.expired_pending_packs().is_empty());
    assert!(plan.reindexed_packs().is_empty() && plan.unindexed_packs().is_empty());
    assert!(plan.warnings().is_empty());
    let shown = plan.dry_run_report();
    assert!(shown.dry_run);
    assert_eq!(shown.pending.packs, 4);

    let done = repo.execute_prune(plan).await.unwrap();
    assert!(!done.dry_run);
    assert_eq!(
        (
            done.unused_packs,
            done.repacked_packs,
            done.pending,
            done.deleted
        ),
        (
            shown.unused_packs,
            shown.repacked_packs,
            shown.pending,
            shown.deleted
        )
    );
    assert_eq!(
        (done.repacked_blobs, done.repacked_bytes),
        (shown.repacked_blobs, shown.repacked_bytes)
    );
    assert!(done.next_deletion >= shown.next_deletion);
    assert_eq!(done.new_packs.packs, 1);
    check_ok(&be).await;
    assert_eq!(restore_all(&be).await, vec![vec![b.clone()]]);

    // With the grace period over, the four marked packs are planned for deletion, then gone.
    let repo = reopen(&be).await;
    let plan = repo.plan_prune(&opts(0)).await.unwrap();
    assert_eq!(plan.expired_pending_packs().len(), 4);
    assert_eq!(plan.deleted_packs(), &plan.expired_pending_packs()[..]);
    let gone = plan.deleted_packs().to_vec();
    let r = repo.execute_prune(plan).await.unwrap();
    assert_eq!(r.deleted.packs, 4);
    let left = objects(&be);
    assert!(gone.iter().all(|g| left.iter().all(|(id, _)| id != g)));
    check_ok(&be).await;
}

/// A dry run's plan, or a plan made from other index files than the handle's, is refused
/// before anything is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_plan_is_carried_out_only_as_it_was_made() {
    let be = new_repo().await;
    let first = backup(&be, &[&data(200_000, 18)]).await;
    backup(&be, &[&data(200_000, 19)]).await;
    reopen(&be).await.delete_snapshot(&first).await.unwrap();
    let repo = reopen(&be).await;
    let dry = PruneOptions {
        dry_run: true,
        ..opts(0)
    };
    let plan = repo.plan_prune(&dry).await.unwrap();
    assert_eq!(plan.unused_packs().len(), 2);
    let before = objects(&be);
    let e = repo.execute_prune(plan).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage, "{e:#}");
    assert_eq!(objects(&be), before);

    let plan = repo.plan_prune(&opts(0)).await.unwrap();
    backup(&be, &[&data(200_000, 20)]).await;
    let before = objects(&be);
    let e = reopen(&be).await.execute_prune(plan).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage, "{e:#}");
    assert_eq!(objects(&be), before);
}
