//! Mirrors: after a backup, its snapshot is copied to every repository the repository's
//! settings list (`coffer config add-mirror`), keeping its id, so `coffer copy` later finds it
//! there already. A mirror that fails does not undo the backup: the snapshot stays saved, the
//! failure is printed with the command that finishes the copy, and the exit code is 1.

use crate::context::{open_at, read_password_file, run_password_command, Ctx};
use anyhow::Result;
use coffer_core::copy::CopyReport;
use coffer_core::settings::Mirror;
use coffer_core::snapshot::Snapshot;
use coffer_core::{Indexed, Open, Repository};
use serde::Serialize;

/// What happened at one mirror.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// The mirror's URL (never holds a secret).
    pub url: String,
    /// Whether the snapshot is now in the mirror.
    pub ok: bool,
    /// New (sealed) bytes the mirror stored.
    pub bytes_added: u64,
    /// Whether the mirror held the snapshot already.
    pub already_there: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The storage options for a mirror: this run's transfer settings (connections, limits,
/// cache) with the mirror's own service options instead of the repository's.
pub fn mirror_options(ctx: &Ctx, m: &Mirror) -> Result<coffer_storage::StorageOptions> {
    let mut o = ctx.storage_options()?;
    o.extra.clear();
    for (k, v) in &m.options {
        o.set(k, v)?;
    }
    Ok(o)
}

/// The mirror's password: its file, its command, or this run's password.
pub fn mirror_password(ctx: &Ctx, m: &Mirror) -> Result<Vec<u8>> {
    match (&m.password_file, &m.password_command) {
        (Some(f), _) => read_password_file(std::path::Path::new(f)),
        (None, Some(c)) => run_password_command(c),
        (None, None) => ctx.password(),
    }
}

/// Opens a mirror repository (it must exist).
pub async fn open_mirror(ctx: &Ctx, m: &Mirror) -> Result<Repository<Open>> {
    let opts = mirror_options(ctx, m)?;
    open_at(&m.url, &opts, || mirror_password(ctx, m)).await
}

async fn copy_one(
    ctx: &Ctx,
    repo: &Repository<Indexed>,
    m: &Mirror,
    snapshot: &Snapshot,
) -> Result<CopyReport> {
    let dst = open_mirror(ctx, m).await?;
    let dst_lock = dst.lock(false, "copy to mirror (target)").await?;
    // The mirror's index is read under its lock, so a prune there cannot change it meanwhile.
    let report = match dst.load_index().await {
        Ok(dst) => repo.copy_to(&dst, std::slice::from_ref(snapshot)).await,
        Err(e) => Err(e),
    };
    dst_lock.release().await.ok();
    Ok(report?)
}

/// Copies `snapshot` to every mirror of the repository's settings (none with `skip`). Call it
/// while holding the backup's lock on `repo`, so that no prune moves the snapshot's data
/// meanwhile. Never fails: every problem, including unreadable settings, becomes a failed
/// outcome.
pub async fn after_backup(
    ctx: &Ctx,
    repo: &Repository<Indexed>,
    snapshot: &Snapshot,
    skip: bool,
) -> Vec<Outcome> {
    if skip {
        return Vec::new();
    }
    let mirrors = match repo.load_settings().await {
        Ok(s) => s.settings.mirrors,
        Err(e) => {
            return vec![Outcome {
                url: "(the repository's settings)".into(),
                ok: false,
                bytes_added: 0,
                already_there: false,
                error: Some(format!("cannot read the list of mirrors: {e:#}")),
            }]
        }
    };
    let mut out = Vec::new();
    for m in &mirrors {
        let outcome = match copy_one(ctx, repo, m, snapshot).await {
            Ok(r) => Outcome {
                url: m.url.clone(),
                ok: true,
                bytes_added: r.bytes_added,
                already_there: !r.skipped.is_empty(),
                error: None,
            },
            Err(e) => Outcome {
                url: m.url.clone(),
                ok: false,
                bytes_added: 0,
                already_there: false,
                error: Some(crate::output::one_line(&e)),
            },
        };
        out.push(outcome);
    }
    out
}

/// Prints the outcomes (failures always, on stderr, with the command that finishes the copy;
/// successes unless quiet or JSON) and returns the exit code they call for.
pub fn report(ctx: &Ctx, snapshot: &Snapshot, outcomes: &[Outcome]) -> u8 {
    let mut code = crate::output::code::OK;
    for o in outcomes {
        match &o.error {
            Some(e) => {
                code = crate::output::code::FAILURE;
                let repo = ctx.repo_url().unwrap_or_else(|_| "REPO".into());
                eprintln!(
                    "coffer: snapshot {} is saved, but copying it to the mirror {} failed: {e:#}\n\
                     coffer: finish the copy with: coffer copy --from {repo} --to {} {}",
                    snapshot.id.short(),
                    o.url,
                    o.url,
                    snapshot.id.short()
                );
            }
            None if !ctx.global.quiet && !ctx.global.json => {
                if o.already_there {
                    println!("  mirror {}: holds it already", o.url);
                } else {
                    println!(
                        "  mirror {}: copied, {} added",
                        o.url,
                        crate::output::size(o.bytes_added)
                    );
                }
            }
            None => {}
        }
    }
    code
}
