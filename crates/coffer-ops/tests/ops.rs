//! The operations library driven as the server and the daemon drive it: a file backup and a
//! restore through `coffer_ops` on a real local repository, with a progress sink that records
//! every event, and cancellations at the start and midway. Each operation must release its lock
//! on every path (the repository's `locks/` folder is empty afterwards).

use coffer_core::keyfile::KdfParams;
use coffer_core::{ErrorKind, InitOptions, Repository};
use coffer_ops::backup::files::{backup_files, FilesBackup};
use coffer_ops::backup::BackupRequest;
use coffer_ops::password::PasswordSource;
use coffer_ops::progress::Counts;
use coffer_ops::restore::{restore, Restore, RestoreReport};
use coffer_ops::{CancellationToken, Event, Phase, Progress, RepoSpec};
use coffer_testkit::tree::{assert_trees_equal, snapshot_tree, write_random_file};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Records every event; optionally cancels a token once this many bytes are reported done.
struct Recorder {
    events: Mutex<Vec<Event>>,
    cancel_after: Option<(u64, CancellationToken)>,
}

impl Recorder {
    fn new(cancel_after: Option<(u64, CancellationToken)>) -> Arc<Recorder> {
        Arc::new(Recorder {
            events: Mutex::new(Vec::new()),
            cancel_after,
        })
    }

    fn phases(&self) -> Vec<Phase> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Phase { phase } => Some(*phase),
                _ => None,
            })
            .collect()
    }

    fn counts(&self) -> Vec<Counts> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Progress(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Progress for Recorder {
    fn event(&self, event: Event) {
        if let (Event::Progress(c), Some((limit, token))) = (&event, &self.cancel_after) {
            if c.bytes_done >= *limit {
                token.cancel();
            }
        }
        self.events.lock().unwrap().push(event);
    }
}

/// A new repository (cheap key derivation) and the spec that opens it.
async fn repository(dir: &Path) -> RepoSpec {
    let path = dir.join("repo");
    std::fs::create_dir_all(&path).unwrap();
    let spec = RepoSpec {
        url: path.to_string_lossy().into_owned(),
        options: Default::default(),
        password: PasswordSource::Given(zeroize::Zeroizing::new(b"pw".to_vec())),
    };
    let opts = InitOptions {
        kdf: KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        },
        ..Default::default()
    };
    spec.closed()
        .await
        .unwrap()
        .init(b"pw", opts)
        .await
        .unwrap();
    spec
}

/// The lock files left in the repository.
fn locks(spec: &RepoSpec) -> Vec<PathBuf> {
    match std::fs::read_dir(Path::new(&spec.url).join("locks")) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

async fn snapshot_count(spec: &RepoSpec) -> usize {
    let repo: Repository<_> = spec.open().await.unwrap();
    repo.list_snapshots().await.unwrap().len()
}

/// A source of `files` random files of `size` bytes each.
fn source(dir: &Path, files: u64, size: u64) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..files {
        let name = if i % 2 == 0 {
            format!("f{i}")
        } else {
            format!("sub/f{i}")
        };
        write_random_file(&src.join(name), size, i + 1);
    }
    src
}

fn files_backup(src: &Path) -> FilesBackup {
    FilesBackup {
        paths: vec![src.to_path_buf()],
        excludes: Vec::new(),
        request: BackupRequest::default(),
    }
}

/// Backs up `src` with no progress sink and no cancellation; the run must succeed.
async fn back_up(spec: &RepoSpec, src: &Path) -> coffer_ops::backup::BackupReport {
    backup_files(
        spec,
        files_backup(src),
        Recorder::new(None),
        &CancellationToken::new(),
    )
    .await
    .unwrap()
}

fn never(_: &coffer_ops::restore::DbRestorePlan) -> bool {
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_and_a_restore_through_the_library_report_progress_and_release_their_locks() {
    let dir = tempfile::tempdir().unwrap();
    let spec = repository(dir.path()).await;
    let src = source(dir.path(), 6, 3 << 20);
    let total: u64 = 6 * (3 << 20);

    let seen = Recorder::new(None);
    let report = backup_files(
        &spec,
        files_backup(&src),
        seen.clone(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.snapshot.stats.files, 6);
    assert_eq!(report.snapshot.stats.bytes_read, total);
    assert!(report.unreadable.is_empty() && report.mirrors.is_empty());
    assert_eq!(seen.phases(), [Phase::Opening, Phase::BackingUp]);
    // The last counts are sent when the backup ends: everything read, something stored.
    let last = seen.counts().pop().expect("progress events");
    assert_eq!(last.bytes_done, total);
    assert!(last.bytes_stored.unwrap() >= total, "{last:?}");
    assert!(locks(&spec).is_empty(), "{:?}", locks(&spec));

    let seen = Recorder::new(None);
    let target = dir.path().join("restored");
    let req = Restore {
        snapshot: "latest".into(),
        target: target.to_string_lossy().into_owned(),
        ..Default::default()
    };
    let RestoreReport::Files(r) =
        restore(&spec, req, seen.clone(), &CancellationToken::new(), &never)
            .await
            .unwrap()
    else {
        panic!("a file snapshot restored as a database")
    };
    assert_eq!((r.files, r.bytes), (6, total));
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert_eq!(seen.phases(), [Phase::Opening, Phase::Restoring]);
    let last = seen.counts().pop().expect("progress events");
    assert_eq!(
        (
            last.bytes_done,
            last.bytes_total,
            last.items_done,
            last.items_total
        ),
        (total, Some(total), 6, Some(6))
    );
    assert_trees_equal(&snapshot_tree(&src), &snapshot_tree(&target));
    assert!(locks(&spec).is_empty(), "{:?}", locks(&spec));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_backup_lists_nothing_releases_its_lock_and_its_data_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = repository(dir.path()).await;
    let src = source(dir.path(), 12, 4 << 20);

    // Cancelled before it starts: nothing is read.
    let token = CancellationToken::new();
    token.cancel();
    let e = backup_files(&spec, files_backup(&src), Recorder::new(None), &token)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Interrupted, "{e:#}");
    assert_eq!(snapshot_count(&spec).await, 0);
    assert!(locks(&spec).is_empty(), "{:?}", locks(&spec));

    // Cancelled midway, once 24 MiB of the 48 are read (more than a pack: one is uploaded).
    let token = CancellationToken::new();
    let seen = Recorder::new(Some((24 << 20, token.clone())));
    let e = backup_files(&spec, files_backup(&src), seen.clone(), &token)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Interrupted, "{e:#}");
    assert!(token.is_cancelled());
    let read = seen.counts().pop().unwrap().bytes_done;
    assert!(
        read < 160 << 20,
        "the backup read everything ({read} bytes) before stopping"
    );
    assert_eq!(
        snapshot_count(&spec).await,
        0,
        "an interrupted backup listed a snapshot"
    );
    assert!(locks(&spec).is_empty(), "{:?}", locks(&spec));

    // The next backup completes and stores less than everything: the uploaded packs were kept.
    let report = back_up(&spec, &src).await;
    assert_eq!(report.snapshot.stats.files, 12);
    assert!(
        report.snapshot.stats.bytes_added < 40 << 20,
        "the next backup added {} bytes: nothing uploaded before the cancellation was reused",
        report.snapshot.stats.bytes_added
    );
    assert_eq!(snapshot_count(&spec).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_restore_says_what_it_left_and_a_failed_one_releases_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let spec = repository(dir.path()).await;
    let src = source(dir.path(), 12, 4 << 20);
    back_up(&spec, &src).await;

    let token = CancellationToken::new();
    let seen = Recorder::new(Some((8 << 20, token.clone())));
    let target = dir.path().join("partial");
    let req = Restore {
        snapshot: "latest".into(),
        target: target.to_string_lossy().into_owned(),
        ..Default::default()
    };
    let e = restore(&spec, req, seen.clone(), &token, &never)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Interrupted, "{e:#}");
    let text = format!("{e:#}");
    assert!(
        text.contains("partial restore") && text.contains(&target.display().to_string()),
        "{text}"
    );
    assert!(locks(&spec).is_empty(), "{:?}", locks(&spec));

    // A snapshot that does not exist: an error, and no lock left behind.
    let req = Restore {
        snapshot: "deadbeef".into(),
        target: dir.path().join("none").to_string_lossy().into_owned(),
        ..Default::default()
    };
    let e = restore(
        &spec,
        req,
        Recorder::new(None),
        &CancellationToken::new(),
        &never,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e:#}");
    assert!(locks(&spec).is_empty(), "{:?}", locks(&spec));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_written_while_a_check_runs_is_not_reported_as_damage() {
    let dir = tempfile::tempdir().unwrap();
    let spec = repository(dir.path()).await;
    let first = source(dir.path(), 2, 1 << 20);
    back_up(&spec, &first).await;
    // Once the check has loaded the index, a backup of new data writes a snapshot (what a
    // backup running beside a check does): the check must not find that snapshot's blobs
    // missing from the index it loaded earlier.
    let late = dir.path().join("late");
    std::fs::create_dir_all(&late).unwrap();
    write_random_file(&late.join("new"), 3 << 20, 99);
    let (other, late_src) = (spec.clone(), late.clone());
    let meanwhile = move |e: Event| {
        if e == (Event::Phase {
            phase: Phase::Checking,
        }) {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let opts = files_backup(&late_src);
                    backup_files(&other, opts, Recorder::new(None), &CancellationToken::new())
                        .await
                        .unwrap();
                })
            });
        }
    };
    let opts = coffer_core::check::CheckOptions {
        read_data: true,
        subset: None,
    };
    let report =
        coffer_ops::check::check(&spec, &opts, false, &meanwhile, &CancellationToken::new())
            .await
            .unwrap();
    assert!(report.ok, "false damage: {:?}", report.errors);
    assert_eq!(
        snapshot_count(&spec).await,
        2,
        "the backup beside the check ran"
    );
    let report = coffer_ops::check::check(
        &spec,
        &opts,
        false,
        &coffer_ops::Silent,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(report.ok && report.snapshots == 2, "{report:?}");
}
