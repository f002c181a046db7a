//! `coffer backup`: back up files and folders into a new snapshot.

use crate::cli::BackupArgs;
use crate::context::{default_repo, kdf_params, read_password_file, Ctx};
use crate::output::{self, code, UsageError};
use anyhow::{Context as _, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use coffer_core::snapshot::{BackupType, Snapshot, SourceInfo};
use coffer_core::{BackupOptions, Id, Indexed, Repository};
use coffer_sources::files::{backup_files_with, Excludes, FileBackupOptions, ScanAhead};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    Err(UsageError(format!("--time {s:?} is not a time: use RFC 3339 (2024-05-01T02:00:00Z) or \"YYYY-MM-DD HH:MM:SS\" (UTC)")).into())
}

/// Creates the embedded default repository (and its key) on first use.
pub(crate) async fn ensure_default(ctx: &Ctx) -> Result<()> {
    if !ctx.uses_default() {
        return Ok(());
    }
    let d = default_repo()?;
    let repo = ctx.closed().await?;
    if repo.exists().await? {
        return Ok(());
    }
    let explicit_password = ctx.global.password_file.is_some()
        || std::env::var_os("COFFER_PASSWORD").is_some()
        || ctx.global.password_command.is_some();
    let password = if explicit_password {
        ctx.password()?
    } else if d.key.exists() {
        read_password_file(&d.key)?
    } else {
        let mut raw = [0u8; 32];
        rand::fill(&mut raw);
        let pw = hex::encode(raw);
        std::fs::create_dir_all(d.key.parent().expect("key has a parent"))?;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&d.key)
            .with_context(|| format!("cannot create the key file {}", d.key.display()))?;
        f.write_all(format!("{pw}\n").as_bytes())?;
        f.sync_all()?;
        pw.into_bytes()
    };
    std::fs::create_dir_all(&d.repo)
        .with_context(|| format!("cannot create {}", d.repo.display()))?;
    repo.init(
        &password,
        coffer_core::InitOptions {
            kdf: kdf_params()?,
            ..Default::default()
        },
    )
    .await?;
    eprintln!(
        "coffer: created the default repository at {}",
        d.repo.display()
    );
    if !explicit_password {
        eprintln!(
            "coffer: its password is in {}: keep a copy of that file somewhere safe, away from this machine; without it these backups cannot be restored",
            d.key.display()
        );
    }
    Ok(())
}

/// Picks the parent snapshot for the requested type; returns the effective type and parent.
pub(crate) async fn choose_parent(
    repo: &Repository<Indexed>,
    requested: Option<BackupType>,
    same: impl Fn(&Snapshot) -> bool,
) -> Result<(BackupType, Option<Snapshot>)> {
    let same_source: Vec<Snapshot> = repo
        .list_snapshots()
        .await?
        .into_iter()
        .filter(|s| same(s))
        .collect();
    let latest = |pred: &dyn Fn(&Snapshot) -> bool| {
        same_source
            .iter()
            .filter(|s| pred(s))
            .max_by_key(|s| (s.time, s.id))
            .cloned()
    };
    Ok(match requested {
        Some(BackupType::Full) => (BackupType::Full, None),
        Some(BackupType::Differential) => match latest(&|s| s.backup_type == BackupType::Full) {
            Some(p) => (BackupType::Differential, Some(p)),
            None => (BackupType::Full, None),
        },
        Some(BackupType::Incremental) | None => match latest(&|_| true) {
            Some(p) => (BackupType::Incremental, Some(p)),
            None => (BackupType::Full, None),
        },
    })
}

/// SIGINT stops reading and keeps what was uploaded (indexed for the next backup); no snapshot
/// is listed. Abort the returned task when the backup ends.
pub(crate) fn cancel_on_sigint(
    session: &Arc<coffer_core::BackupSession>,
) -> tokio::task::JoinHandle<()> {
    let s = Arc::downgrade(session);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            if let Some(s) = s.upgrade() {
                eprintln!("coffer: interrupted: saving what was uploaded so the next backup reuses it; no snapshot will be listed");
                s.cancel();
            }
        }
    })
}

/// Takes the session back once every helper task has let go of it.
pub(crate) async fn unshare(
    mut s: Arc<coffer_core::BackupSession>,
) -> Result<coffer_core::BackupSession> {
    for _ in 0..500 {
        match Arc::try_unwrap(s) {
            Ok(v) => return Ok(v),
            Err(back) => s = back,
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    anyhow::bail!("internal error: the backup session is still shared")
}

/// Runs `backup`.
pub async fn run(ctx: &Ctx, a: BackupArgs) -> Result<u8> {
    let requested = a
        .backup_type
        .as_deref()
        .map(|t| {
            t.parse::<BackupType>()
                .map_err(|e| UsageError(format!("{e:#}")))
        })
        .transpose()?;
    let time = a.time.as_deref().map(parse_time).transpose()?;
    let urls = a
        .sources
        .iter()
        .filter(|s| coffer_sources::database::is_database_url(&s.to_string_lossy()))
        .count();
    if urls > 0 {
        if a.sources.len() > 1 {
            return Err(UsageError(
                "back up one database URL at a time, and files separately".into(),
            )
            .into());
        }
        return crate::commands::db_backup::run(ctx, a, requested, time).await;
    }
    let mut paths: Vec<PathBuf> = Vec::new();
    for s in &a.sources {
        let abs =
            std::path::absolute(s).with_context(|| format!("cannot back up {}", s.display()))?;
        if let Err(e) = std::fs::symlink_metadata(&abs) {
            return Err(coffer_core::Error::io(
                format!(
                    "cannot back up {}: the source does not exist or cannot be read",
                    s.display()
                ),
                e,
            )
            .into());
        }
        paths.push(abs);
    }
    let mut patterns = a.excludes.clone();
    for f in &a.exclude_files {
        patterns.extend(Excludes::read_file(f)?);
    }
    let excludes = Excludes::new(&patterns).map_err(|e| UsageError(format!("{e:#}")))?;
    // Listing the folders starts now, so the walk overlaps opening the repository (the key
    // derivation, the index and the snapshot list).
    let scan = ScanAhead::start(&paths, &excludes);

    ensure_default(ctx).await?;
    let (repo, lock) = ctx.open_locked(false, "backup").await?;
    let host = a
        .host
        .clone()
        .unwrap_or_else(coffer_core::repository::hostname);
    let path_strings: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let (backup_type, parent) = choose_parent(&repo, requested, |s| {
        s.hostname == host && s.source.kind == "files" && s.source.paths == path_strings
    })
    .await?;
    if requested.is_some_and(|r| r != backup_type) && !ctx.global.quiet {
        eprintln!(
            "coffer: no parent snapshot for a {} backup of this source yet: taking a full backup",
            requested.unwrap()
        );
    }

    let started = Utc::now();
    let clock = Instant::now();
    let session = Arc::new(repo.start_backup(BackupOptions::default()));
    let on_signal = cancel_on_sigint(&session);
    let progress = crate::commands::progress::start(ctx, session.clone());
    let opts = FileBackupOptions {
        paths: paths.clone(),
        excludes,
        parent_tree: parent.as_ref().map(|p| p.tree),
        // Twice the cores: readers blocked on a cold disk leave the CPU to the others.
        workers: (2 * std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2))
        .max(4),
    };
    let (sess, reader, handle) = (
        session.clone(),
        repo.blob_reader(),
        tokio::runtime::Handle::current(),
    );
    let result = tokio::task::spawn_blocking(move || {
        backup_files_with(sess, reader, handle, opts, Some(scan))
    })
    .await?;
    progress.finish();
    on_signal.abort();
    let session = unshare(session).await?;
    let res = match result {
        Ok(r) => r,
        Err(e) => {
            session.abort().await.ok();
            lock.release().await.ok();
            return Err(e.into());
        }
    };
    let snapshot = Snapshot {
        id: Id::random(),
        name: a.name.clone(),
        source: SourceInfo {
            kind: "files".into(),
            location: path_strings.join(", "),
            paths: path_strings,
        },
        hostname: host,
        username: coffer_core::repository::username(),
        tags: a.tags.clone(),
        description: a.description.clone(),
        backup_type,
        parent: parent.as_ref().map(|p| p.id),
        time: time.unwrap_or(started),
        started,
        finished: Utc::now(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        tree: res.root,
        stats: res.stats.clone(),
        compression: repo.config().compression.clone(),
        encryption: repo.config().encryption.clone(),
        extra: serde_json::Value::Null,
    };
    let snapshot = match session.finish(snapshot).await {
        Ok(s) => s,
        Err(e) => {
            lock.release().await.ok();
            return Err(e.into());
        }
    };
    let secs = clock.elapsed().as_secs_f64();
    // Under the backup's lock, so no prune moves the snapshot's data while it is copied.
    let mirrored = crate::commands::mirror::after_backup(ctx, &repo, &snapshot, a.no_mirrors).await;
    lock.release().await.ok();
    for w in &res.warnings {
        eprintln!("coffer: warning: {w}");
    }
    for u in &res.unreadable {
        eprintln!("coffer: cannot read {}: {} (skipped)", u.path, u.error);
    }
    let st = &snapshot.stats;
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "snapshot_id": snapshot.id,
            "type": snapshot.backup_type,
            "parent": snapshot.parent,
            "files": st.files,
            "dirs": st.dirs,
            "others": st.others,
            "files_read": st.files_read,
            "files_unchanged": st.files_unchanged,
            "bytes_read": st.bytes_read,
            "bytes_added": st.bytes_added,
            "blobs_added": st.blobs_added,
            "total_bytes": st.total_bytes,
            "duration_seconds": secs,
            "unreadable": res.unreadable,
            "warnings": res.warnings,
            "mirrors": mirrored,
        }));
    } else if !ctx.global.quiet {
        println!(
            "snapshot {} saved ({} backup{})",
            snapshot.id.short(),
            snapshot.backup_type,
            snapshot
                .parent
                .map(|p| format!(", parent {}", p.short()))
                .unwrap_or_default()
        );
        println!(
            "  {} files ({} read, {} unchanged), {} dirs, {} in total",
            st.files,
            st.files_read,
            st.files_unchanged,
            st.dirs,
            output::size(st.total_bytes)
        );
        println!(
            "  read {}, added {} to the repository, in {} ({}/s)",
            output::size(st.bytes_read),
            output::size(st.bytes_added),
            output::duration(secs),
            output::size((st.bytes_read as f64 / secs.max(1e-3)) as u64)
        );
        if !res.unreadable.is_empty() {
            println!(
                "  {} entries could not be read and are missing from the snapshot (listed above)",
                res.unreadable.len()
            );
        }
    }
    let mirror_code = crate::commands::mirror::report(ctx, &snapshot, &mirrored);
    Ok(if mirror_code != code::OK {
        mirror_code
    } else if res.unreadable.is_empty() {
        code::OK
    } else {
        code::PARTIAL
    })
}
