//! Mirrors: a new snapshot copied to other repositories, keeping its id, so that `coffer copy`
//! later finds it there already. Used after every backup (the mirrors listed in the
//! repository's settings, `coffer config add-mirror`) and by the daemon (a job's `mirrors`).
//! A mirror that fails does not undo the backup: the snapshot stays saved and the failure is
//! an outcome, not an error.

use crate::password::PasswordSource;
use crate::repo::RepoSpec;
use coffer_core::settings::Mirror;
use coffer_core::snapshot::Snapshot;
use coffer_core::{Indexed, Repository, Result};
use serde::Serialize;

/// What happened at one mirror.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorOutcome {
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

/// The repository a mirror of the settings names: this run's transfer settings (connections,
/// limits, cache) with the mirror's own service options instead of the repository's, and its
/// own password file or command, else this run's password.
pub fn mirror_spec(base: &RepoSpec, m: &Mirror) -> Result<RepoSpec> {
    let mut options = base.options.clone();
    options.extra.clear();
    for (k, v) in &m.options {
        options.set(k, v)?;
    }
    let password = match (&m.password_file, &m.password_command) {
        (Some(f), _) => PasswordSource::File(f.into()),
        (None, Some(c)) => PasswordSource::Command(c.clone()),
        (None, None) => base.password.clone(),
    };
    Ok(RepoSpec {
        url: m.url.clone(),
        options,
        password,
    })
}

/// Copies `snapshot` from `repo` into the repository `to` (which must exist), under a shared
/// lock there.
async fn copy_one(
    repo: &Repository<Indexed>,
    to: &RepoSpec,
    snapshot: &Snapshot,
) -> Result<(u64, bool)> {
    let dst = to.open().await?;
    let lock = dst.lock(false, "copy to mirror (target)").await?;
    // The mirror's index is read under its lock, so a prune there cannot change it meanwhile.
    let dst = crate::repo::Locked::load(dst, Some(lock)).await?;
    dst.run(|dst| async move {
        let r = repo.copy_to(&dst, std::slice::from_ref(snapshot)).await?;
        Ok((r.bytes_added, !r.skipped.is_empty()))
    })
    .await
}

/// Copies `snapshot` to each of `mirrors` in turn. Call it while holding a lock on `repo`, so
/// that no prune moves the snapshot's data meanwhile. Never fails: every problem becomes a
/// failed outcome.
pub async fn copy_to_mirrors(
    repo: &Repository<Indexed>,
    snapshot: &Snapshot,
    mirrors: &[RepoSpec],
) -> Vec<MirrorOutcome> {
    let mut out = Vec::new();
    for m in mirrors {
        out.push(match copy_one(repo, m, snapshot).await {
            Ok((bytes_added, already_there)) => MirrorOutcome {
                url: m.url.clone(),
                ok: true,
                bytes_added,
                already_there,
                error: None,
            },
            Err(e) => MirrorOutcome {
                url: m.url.clone(),
                ok: false,
                bytes_added: 0,
                already_there: false,
                error: Some(format!("{e:#}")),
            },
        });
    }
    out
}

/// Copies `snapshot` to the mirrors listed in `repo`'s settings (see [`copy_to_mirrors`]);
/// unreadable settings become one failed outcome.
pub async fn copy_to_settings_mirrors(
    repo: &Repository<Indexed>,
    spec: &RepoSpec,
    snapshot: &Snapshot,
) -> Vec<MirrorOutcome> {
    let failed = |error: String| {
        vec![MirrorOutcome {
            url: "(the repository's settings)".into(),
            ok: false,
            bytes_added: 0,
            already_there: false,
            error: Some(error),
        }]
    };
    let mirrors = match repo.load_settings().await {
        Ok(s) => s.settings.mirrors,
        Err(e) => return failed(format!("cannot read the list of mirrors: {e:#}")),
    };
    let mut specs = Vec::new();
    for m in &mirrors {
        match mirror_spec(spec, m) {
            Ok(s) => specs.push(s),
            Err(e) => {
                return failed(format!("mirror {}: {e:#}", m.url));
            }
        }
    }
    copy_to_mirrors(repo, snapshot, &specs).await
}

/// Copies the snapshot `snapshot` (an id or unique prefix) of the repository of `spec` to
/// `mirrors`, under a shared lock there (the daemon's job mirrors, after the job's
/// verification). Never fails: every problem becomes a failed outcome.
pub async fn mirror_snapshot(
    spec: &RepoSpec,
    snapshot: &str,
    mirrors: &[RepoSpec],
) -> Vec<MirrorOutcome> {
    let failed = |e: coffer_core::Error| {
        mirrors
            .iter()
            .map(|m| MirrorOutcome {
                url: m.url.clone(),
                ok: false,
                bytes_added: 0,
                already_there: false,
                error: Some(format!("{e:#}")),
            })
            .collect()
    };
    let locked = match spec
        .open_locked(crate::repo::LockMode::Shared, "copy to mirror (source)")
        .await
    {
        Ok(l) => l,
        Err(e) => return failed(e),
    };
    let result = locked
        .run(|repo| async move {
            let snap = crate::select::find_snapshot(
                &repo,
                snapshot,
                &crate::select::SnapshotFilter::default(),
            )
            .await?;
            Ok(copy_to_mirrors(&repo, &snap, mirrors).await)
        })
        .await;
    result.unwrap_or_else(failed)
}
