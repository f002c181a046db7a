//! `coffer backup URL`: a database backup (also the safety backup a restore takes first).

use crate::cli::BackupArgs;
use crate::commands::backup::{cancel_on_sigint, choose_parent, ensure_default, unshare};
use crate::context::Ctx;
use crate::output::{self, UsageError};
use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use coffer_core::snapshot::{BackupType, Snapshot, SourceInfo};
use coffer_core::{BackupOptions, Id, Indexed, Repository};
use coffer_sources::database::{self, BackupContext, DbManifest, DbUrl, StreamSink};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Said of a backup that failed because the repository's disk is full.
const REPOSITORY_FULL: &str = " because the repository's disk is full (free space there or use another repository, then run the backup again)";

/// What to record with a database snapshot besides its content.
pub struct DbSnapshotOptions {
    /// Requested type (`None`: incremental when a parent exists).
    pub requested: Option<BackupType>,
    /// Tags.
    pub tags: Vec<String>,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Host name to record.
    pub host: String,
    /// Snapshot time (default: the start).
    pub time: Option<DateTime<Utc>>,
    /// Tables dumped at once.
    pub jobs: usize,
    /// Every database of the server.
    pub all_databases: bool,
}

/// The default number of parallel table dumps or loads: the cores, at most 4.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4)
}

/// Parses a database URL and fills its password from `password_file` when given.
pub fn db_url(s: &str, password_file: Option<&Path>) -> Result<DbUrl> {
    let mut url = DbUrl::parse(s).map_err(|e| UsageError(format!("{e:#}")))?;
    if let Some(f) = password_file {
        let raw = crate::context::read_password_file(f)?;
        url.password = Some(
            String::from_utf8(raw)
                .map_err(|_| UsageError(format!("{} is not UTF-8 text", f.display())))?,
        );
    }
    Ok(url)
}

/// Backs up the database `url` into `repo` (whose lock the caller holds) and writes the
/// snapshot. On failure nothing is listed; what was uploaded stays indexed for the next run.
pub async fn backup_database(
    ctx: &Ctx,
    repo: &Repository<Indexed>,
    url: &DbUrl,
    opts: DbSnapshotOptions,
) -> Result<(Snapshot, DbManifest, f64)> {
    let kind = url.engine.kind();
    let location = url.redacted();
    let (backup_type, parent) = choose_parent(repo, opts.requested, |s| {
        s.hostname == opts.host && s.source.kind == kind && s.source.location == location
    })
    .await?;
    let started = Utc::now();
    let clock = Instant::now();
    let session = Arc::new(repo.start_backup(BackupOptions::default()));
    let on_signal = cancel_on_sigint(&session);
    let progress = crate::commands::progress::start(ctx, session.clone());
    let result = database::backup(BackupContext {
        url: url.clone(),
        sink: StreamSink::new(session.clone()),
        jobs: opts.jobs.max(1),
        all_databases: opts.all_databases,
    })
    .await;
    progress.finish();
    on_signal.abort();
    let session = unshare(session).await?;
    let (root, manifest, stats) = match result {
        Ok(r) => r,
        Err(e) => {
            session.abort().await.ok();
            // The storage crate gives a full repository its own kind; a full local disk (a
            // temporary file's) is a plain storage error whose message names the file.
            let full = if e.kind() == coffer_core::ErrorKind::StorageFull {
                REPOSITORY_FULL
            } else {
                ""
            };
            return Err(anyhow::Error::new(e).context(format!(
                "the backup of {location} failed{full}; no snapshot was written"
            )));
        }
    };
    let snapshot = Snapshot {
        id: Id::random(),
        name: opts.name,
        source: SourceInfo {
            kind: kind.to_string(),
            location: location.clone(),
            paths: Vec::new(),
        },
        hostname: opts.host,
        username: coffer_core::repository::username(),
        tags: opts.tags,
        description: opts.description,
        backup_type,
        parent: parent.as_ref().map(|p| p.id),
        time: opts.time.unwrap_or(started),
        started,
        finished: Utc::now(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        tree: root,
        stats,
        compression: repo.config().compression.clone(),
        encryption: repo.config().encryption.clone(),
        extra: serde_json::to_value(&manifest).context("encoding the database manifest")?,
    };
    let snapshot = session.finish(snapshot).await.map_err(|e| {
        if e.kind() == coffer_core::ErrorKind::Interrupted {
            return anyhow::Error::new(e);
        }
        // Only the repository is written here: the database was read completely.
        let full = if e.kind() == coffer_core::ErrorKind::StorageFull {
            REPOSITORY_FULL
        } else {
            ""
        };
        anyhow::Error::new(e).context(format!(
            "the backup of {location} was read completely but could not be stored{full}"
        ))
    })?;
    Ok((snapshot, manifest, clock.elapsed().as_secs_f64()))
}

/// Runs `backup` for a database URL.
pub async fn run(
    ctx: &Ctx,
    a: BackupArgs,
    requested: Option<BackupType>,
    time: Option<DateTime<Utc>>,
) -> Result<u8> {
    if !a.excludes.is_empty() || !a.exclude_files.is_empty() {
        return Err(UsageError("--exclude applies to files, not to databases".into()).into());
    }
    let url = db_url(
        &a.sources[0].to_string_lossy(),
        a.db_password_file.as_deref(),
    )?;
    ensure_default(ctx).await?;
    let (repo, lock) = ctx.open_locked(false, "backup").await?;
    let opts = DbSnapshotOptions {
        requested,
        tags: a.tags.clone(),
        name: a.name.clone(),
        description: a.description.clone(),
        host: a
            .host
            .clone()
            .unwrap_or_else(coffer_core::repository::hostname),
        time,
        jobs: a.jobs.unwrap_or_else(default_jobs),
        all_databases: a.all_databases,
    };
    let result = backup_database(ctx, &repo, &url, opts).await;
    let (snapshot, manifest, secs) = match result {
        Ok(r) => r,
        Err(e) => {
            lock.release().await.ok();
            return Err(e);
        }
    };
    // Under the backup's lock, so no prune moves the snapshot's data while it is copied.
    let mirrored = crate::commands::mirror::after_backup(ctx, &repo, &snapshot, a.no_mirrors).await;
    lock.release().await.ok();
    print_summary(ctx, &snapshot, &manifest, secs, &mirrored);
    Ok(crate::commands::mirror::report(ctx, &snapshot, &mirrored))
}

/// Prints what a database backup stored (and what its mirrors did).
pub fn print_summary(
    ctx: &Ctx,
    snapshot: &Snapshot,
    manifest: &DbManifest,
    secs: f64,
    mirrors: &[crate::commands::mirror::Outcome],
) {
    let st = &snapshot.stats;
    let tables: usize = manifest.databases.iter().map(|d| d.tables.len()).sum();
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "snapshot_id": snapshot.id,
            "type": snapshot.backup_type,
            "parent": snapshot.parent,
            "source": snapshot.source.location,
            "engine": manifest.engine,
            "server_version": manifest.server_version,
            "databases": manifest.databases.iter().map(|d| &d.name).collect::<Vec<_>>(),
            "tables": tables,
            "streams": st.files,
            "bytes_read": st.bytes_read,
            "bytes_added": st.bytes_added,
            "blobs_added": st.blobs_added,
            "total_bytes": st.total_bytes,
            "duration_seconds": secs,
            "mirrors": mirrors,
        }));
        return;
    }
    if ctx.global.quiet {
        return;
    }
    println!(
        "snapshot {} saved ({} backup of {}{})",
        snapshot.id.short(),
        snapshot.backup_type,
        snapshot.source.location,
        snapshot
            .parent
            .map(|p| format!(", parent {}", p.short()))
            .unwrap_or_default()
    );
    println!(
        "  {} {}: {} database(s), {} tables, {} streams, {} in total",
        manifest.engine,
        manifest.server_version,
        manifest.databases.len(),
        tables,
        st.files,
        output::size(st.total_bytes)
    );
    println!(
        "  read {}, added {} to the repository, in {} ({}/s)",
        output::size(st.bytes_read),
        output::size(st.bytes_added),
        output::duration(secs),
        output::size((st.bytes_read as f64 / secs.max(1e-3)) as u64)
    );
}
