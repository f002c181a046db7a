//! Driving a database engine directly on an in-memory repository, exactly as `coffer backup`
//! and `coffer restore` do (a session, the engine, a snapshot), for engine-level tests.

use coffer_core::keyfile::KdfParams;
use coffer_core::memory::MemoryBackend;
use coffer_core::snapshot::{Snapshot, SourceInfo};
use coffer_core::{BackupOptions, Id, Indexed, InitOptions, Repository};
use coffer_sources::database::{self, BackupContext, DbManifest, DbUrl, StreamSink, StreamSource};
use std::sync::Arc;

/// The password of the repositories made here.
const PASSWORD: &[u8] = b"pw";

/// A new in-memory repository (cheap key derivation).
pub async fn new_repo() -> Arc<MemoryBackend> {
    let be = Arc::new(MemoryBackend::new());
    let opts = InitOptions {
        kdf: KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        },
        ..Default::default()
    };
    Repository::new(be.clone())
        .init(PASSWORD, opts)
        .await
        .expect("init an in-memory repository");
    be
}

/// Opens the repository and loads its index.
pub async fn reopen(be: &Arc<MemoryBackend>) -> Repository<Indexed> {
    Repository::new(be.clone())
        .open(PASSWORD)
        .await
        .expect("open the repository")
        .load_index()
        .await
        .expect("load the index")
}

/// Backs up `url` as `coffer backup` does. On an engine error the session is aborted (what was
/// uploaded stays indexed) and no snapshot is written.
pub async fn backup(
    be: &Arc<MemoryBackend>,
    url: DbUrl,
    jobs: usize,
    all_databases: bool,
) -> coffer_core::Result<(Id, DbManifest)> {
    let repo = reopen(be).await;
    let session = Arc::new(repo.start_backup(BackupOptions::default()));
    let source = SourceInfo {
        kind: url.engine.kind().into(),
        location: url.redacted(),
        paths: vec![],
    };
    let ctx = BackupContext {
        url,
        sink: StreamSink::new(session.clone()),
        jobs,
        all_databases,
    };
    let r = database::backup(ctx).await;
    let session = Arc::try_unwrap(session)
        .ok()
        .expect("the engine keeps no reference to the session");
    let (root, manifest, stats) = match r {
        Ok(x) => x,
        Err(e) => {
            session.abort().await.expect("abort the session");
            return Err(e);
        }
    };
    let mut snap = Snapshot::new(source, root);
    snap.stats = stats;
    snap.extra = serde_json::to_value(&manifest).expect("the manifest serializes");
    let snap = session.finish(snap).await?;
    Ok((snap.id, manifest))
}

/// Loads a snapshot's manifest and streams.
pub async fn load(be: &Arc<MemoryBackend>, id: Id) -> (DbManifest, StreamSource) {
    let repo = reopen(be).await;
    let snap = repo.load_snapshot(id).await.expect("load the snapshot");
    let m = DbManifest::from_snapshot(&snap).expect("a database manifest");
    let src = StreamSource::load(&repo, &snap)
        .await
        .expect("load the snapshot's streams");
    (m, src)
}
