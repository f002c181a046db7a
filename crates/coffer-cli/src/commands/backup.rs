//! `coffer backup`: back up files and folders, or one database, into a new snapshot (then copy
//! it to the repository's mirrors). The work is `coffer_ops::backup`; this file parses, prints
//! and chooses the exit code.

use crate::context::{default_repo, kdf_params, read_password_file, Ctx};
use crate::output::{self, code, UsageError};
use anyhow::{Context as _, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::Args;
use coffer_core::snapshot::BackupType;
use coffer_ops::assemble::Labels;
use coffer_ops::backup::database::{backup_database, database_url, DatabaseBackup};
use coffer_ops::backup::files::{backup_files, FilesBackup};
use coffer_ops::backup::{BackupReport, BackupRequest};
use coffer_sources::files::Excludes;
use std::path::PathBuf;

/// `backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and folders to back up, or one database URL: postgres://USER@HOST:PORT/DB,
    /// mysql://USER@HOST:PORT/DB (or mariadb://), sqlite:///PATH/TO/DB, redis://HOST:PORT.
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
    /// Database tables dumped at once (default: the number of cores, at most 4).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Back up every database of the server (also what a URL without a database means).
    #[arg(long)]
    pub all_databases: bool,
    /// Read the database password from the first line of this file (otherwise: the URL, or
    /// PGPASSWORD / .pgpass, MYSQL_PWD, REDISCLI_AUTH).
    #[arg(long, value_name = "FILE")]
    pub db_password_file: Option<PathBuf>,
    /// full, incremental (default when a parent exists) or differential.
    #[arg(long = "type")]
    pub backup_type: Option<String>,
    /// Skip paths matching this glob (repeatable).
    #[arg(long = "exclude")]
    pub excludes: Vec<String>,
    /// Read exclude globs from this file, one per line (repeatable).
    #[arg(long = "exclude-file")]
    pub exclude_files: Vec<PathBuf>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Name the snapshot.
    #[arg(long)]
    pub name: Option<String>,
    /// Describe the snapshot.
    #[arg(long)]
    pub description: Option<String>,
    /// Record this host name instead of this machine's.
    #[arg(long)]
    pub host: Option<String>,
    /// Set the snapshot's time (RFC 3339, or "YYYY-MM-DD HH:MM:SS" in UTC).
    #[arg(long)]
    pub time: Option<String>,
    /// Do not copy the new snapshot to the mirrors listed in the repository's settings.
    #[arg(long)]
    pub no_mirrors: bool,
}

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
        zeroize::Zeroizing::new(pw.into_bytes())
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

/// What SIGINT means during a backup.
pub(crate) const INTERRUPTED: &str =
    "interrupted: saving what was uploaded so the next backup reuses it; no snapshot will be listed";

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
    let request = BackupRequest {
        labels: Labels {
            tags: a.tags.clone(),
            name: a.name.clone(),
            description: a.description.clone(),
            host: a.host.clone(),
            time: a.time.as_deref().map(parse_time).transpose()?,
        },
        requested,
        mirrors: !a.no_mirrors,
    };
    let urls = a
        .sources
        .iter()
        .filter(|s| coffer_sources::database::is_database_url(&s.to_string_lossy()))
        .count();
    let display = crate::commands::progress::display(ctx);
    if urls > 0 {
        if a.sources.len() > 1 {
            return Err(UsageError(
                "back up one database URL at a time, and files separately".into(),
            )
            .into());
        }
        if !a.excludes.is_empty() || !a.exclude_files.is_empty() {
            return Err(UsageError("--exclude applies to files, not to databases".into()).into());
        }
        let url = database_url(
            &a.sources[0].to_string_lossy(),
            a.db_password_file.as_deref(),
        )?;
        ensure_default(ctx).await?;
        let sigint = crate::commands::progress::cancel_on_sigint(INTERRUPTED);
        let opts = DatabaseBackup {
            url,
            request,
            jobs: a.jobs,
            all_databases: a.all_databases,
        };
        let report = backup_database(&ctx.spec()?, opts, display.clone(), &sigint.token).await;
        display.finish();
        let report = report?;
        print_database(ctx, &report);
        return Ok(mirror_code(ctx, &report, code::OK));
    }
    let mut excludes = a.excludes.clone();
    for f in &a.exclude_files {
        excludes.extend(Excludes::read_file(f)?);
    }
    let opts = FilesBackup {
        paths: a.sources.clone(),
        excludes,
        request,
    };
    // Bad sources and globs are reported before the default repository is created.
    opts.validate()?;
    ensure_default(ctx).await?;
    let sigint = crate::commands::progress::cancel_on_sigint(INTERRUPTED);
    let report = backup_files(&ctx.spec()?, opts, display.clone(), &sigint.token).await;
    display.finish();
    let report = report?;
    print_files(ctx, &report);
    let done = if report.is_partial() {
        code::PARTIAL
    } else {
        code::OK
    };
    Ok(mirror_code(ctx, &report, done))
}

/// Prints what a file backup stored.
fn print_files(ctx: &Ctx, r: &BackupReport) {
    for w in &r.warnings {
        eprintln!("coffer: warning: {w}");
    }
    for u in &r.unreadable {
        eprintln!("coffer: cannot read {}: {} (skipped)", u.path, u.error);
    }
    let snapshot = &r.snapshot;
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
            "duration_seconds": r.seconds,
            "unreadable": r.unreadable,
            "warnings": r.warnings,
            "mirrors": r.mirrors,
        }));
    } else if !ctx.global.quiet {
        print_saved(snapshot, "");
        println!(
            "  {} files ({} read, {} unchanged), {} dirs, {} in total",
            st.files,
            st.files_read,
            st.files_unchanged,
            st.dirs,
            output::size(st.total_bytes)
        );
        print_throughput(st, r.seconds);
        if !r.unreadable.is_empty() {
            println!(
                "  {} entries could not be read and are missing from the snapshot (listed above)",
                r.unreadable.len()
            );
        }
    }
}

/// `snapshot 1a2b3c4d saved (incremental backup of SOURCE, parent 5e6f7a8b)`.
fn print_saved(snapshot: &coffer_core::snapshot::Snapshot, of: &str) {
    println!(
        "snapshot {} saved ({} backup{of}{})",
        snapshot.id.short(),
        snapshot.backup_type,
        snapshot
            .parent
            .map(|p| format!(", parent {}", p.short()))
            .unwrap_or_default()
    );
}

/// `read X, added Y to the repository, in T (R/s)`.
fn print_throughput(st: &coffer_core::snapshot::SnapshotStats, secs: f64) {
    println!(
        "  read {}, added {} to the repository, in {} ({}/s)",
        output::size(st.bytes_read),
        output::size(st.bytes_added),
        output::duration(secs),
        output::size((st.bytes_read as f64 / secs.max(1e-3)) as u64)
    );
}

/// Prints what a database backup stored.
fn print_database(ctx: &Ctx, r: &BackupReport) {
    let snapshot = &r.snapshot;
    let st = &snapshot.stats;
    let Some(manifest) = &r.manifest else { return };
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
            "duration_seconds": r.seconds,
            "mirrors": r.mirrors,
        }));
        return;
    }
    if ctx.global.quiet {
        return;
    }
    print_saved(snapshot, &format!(" of {}", snapshot.source.location));
    println!(
        "  {} {}: {} database(s), {} tables, {} streams, {} in total",
        manifest.engine,
        manifest.server_version,
        manifest.databases.len(),
        tables,
        st.files,
        output::size(st.total_bytes)
    );
    print_throughput(st, r.seconds);
}

/// Prints the mirrors' outcomes (failures always, on stderr, with the command that finishes
/// the copy; successes unless quiet or JSON) and returns the exit code: 1 when a mirror
/// failed, else `done`.
fn mirror_code(ctx: &Ctx, r: &BackupReport, done: u8) -> u8 {
    let mut result = done;
    for o in &r.mirrors {
        match &o.error {
            Some(e) => {
                result = code::FAILURE;
                let repo = ctx.repo_url().unwrap_or_else(|_| "REPO".into());
                eprintln!(
                    "coffer: snapshot {} is saved, but copying it to the mirror {} failed: {e}\n\
                     coffer: finish the copy with: coffer copy --from {repo} --to {} {}",
                    r.snapshot.id.short(),
                    o.url,
                    o.url,
                    r.snapshot.id.short()
                );
            }
            None if !ctx.global.quiet && !ctx.global.json => {
                if o.already_there {
                    println!("  mirror {}: holds it already", o.url);
                } else {
                    println!(
                        "  mirror {}: copied, {} added",
                        o.url,
                        output::size(o.bytes_added)
                    );
                }
            }
            None => {}
        }
    }
    result
}
