//! Every operation's future is `Send`, so that the daemon and the server can run it on a
//! spawned task. This is checked by compiling: each function below spawns one operation (none
//! runs). rustc sometimes cannot prove `Send` for futures that stream over borrowed items
//! (rust-lang/rust#102211); a change that trips it fails here with the operation's name.

use coffer_ops::restore::DbRestorePlan;
use coffer_ops::*;
use std::sync::Arc;

fn token() -> CancellationToken {
    CancellationToken::new()
}

fn never(_: &DbRestorePlan) -> bool {
    false
}

#[allow(dead_code)]
fn every_operation_can_run_on_a_spawned_task(spec: RepoSpec, to: RepoSpec) {
    let s = spec.clone();
    tokio::spawn(async move {
        let o = Default::default();
        backup::files::backup_files(&s, o, Arc::new(Silent), &token()).await
    });
    let s = spec.clone();
    tokio::spawn(async move {
        let o = backup::database::DatabaseBackup {
            url: coffer_sources::database::DbUrl::parse("sqlite:///x.db").unwrap(),
            request: Default::default(),
            jobs: None,
            all_databases: false,
        };
        backup::database::backup_database(&s, o, Arc::new(Silent), &token()).await
    });
    let s = spec.clone();
    tokio::spawn(async move {
        restore::restore(&s, Default::default(), Arc::new(Silent), &token(), &never).await
    });
    let s = spec.clone();
    tokio::spawn(async move {
        let f = SnapshotFilter::default();
        verify::verify(&s, "latest", &f, false, &Silent, &token()).await
    });
    let s = spec.clone();
    tokio::spawn(
        async move { check::check(&s, &Default::default(), false, &Silent, &token()).await },
    );
    let s = spec.clone();
    tokio::spawn(async move { forget::forget(&s, &Default::default(), &Silent, &token()).await });
    let s = spec.clone();
    tokio::spawn(async move { prune::prune(&s, &Default::default(), &Silent, &token()).await });
    let (s, t) = (spec.clone(), to.clone());
    tokio::spawn(async move { copy::copy(&s, &t, &Default::default(), &Silent, &token()).await });
    let s = spec.clone();
    tokio::spawn(async move {
        let out = dump::DumpOutput::File("x".into());
        dump::dump(&s, &Default::default(), out, &Silent, &token()).await
    });
    tokio::spawn(async move { mirror::mirror_snapshot(&spec, "x", &[to]).await });
}
