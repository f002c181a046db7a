//! Where the repository is, how its password is found, and opening it.

use crate::cli::{Global, SnapshotFilter};
use anyhow::{anyhow, bail, Context as _, Result};
use coffer_core::keyfile::KdfParams;
use coffer_core::snapshot::Snapshot;
use coffer_core::{Closed, Indexed, Open, Repository};
use std::path::PathBuf;

/// The embedded default repository and its key file.
pub struct DefaultRepo {
    /// The repository folder.
    pub repo: PathBuf,
    /// The generated password file.
    pub key: PathBuf,
}

/// The embedded default's locations (XDG data and config directories).
pub fn default_repo() -> Result<DefaultRepo> {
    let data = dirs::data_dir().ok_or_else(|| {
        anyhow!("cannot find the user's data directory: set --repo or COFFER_REPOSITORY")
    })?;
    let config = dirs::config_dir().ok_or_else(|| {
        anyhow!("cannot find the user's config directory: set --repo or COFFER_REPOSITORY")
    })?;
    Ok(DefaultRepo {
        repo: data.join("coffer").join("repository"),
        key: config.join("coffer").join("default.key"),
    })
}

/// Argon2id costs for new keys: the default, or `COFFER_KDF_PARAMS` ("m_kib,t,p"), which
/// tests use to make key derivation cheap. Never lower it for real repositories.
pub fn kdf_params() -> Result<KdfParams> {
    match std::env::var("COFFER_KDF_PARAMS") {
        Ok(s) => Ok(s.parse()?),
        Err(_) => Ok(KdfParams::default()),
    }
}

/// The resolved command context.
pub struct Ctx {
    /// Global options.
    pub global: Global,
    /// The config's repository that `--repo NAME` names, if it names one.
    pub named: Option<coffer_server::config::Repository>,
}

/// Whether `--repo` holds a bare name (no path separator, scheme or leading dot), which may
/// name a `[repository.NAME]` of the config file.
fn is_bare_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && !s.contains(':') && !s.starts_with('.')
}

/// Resolves `--repo NAME` through the config file (COFFER_CONFIG, else ./coffer.toml when it
/// exists), so that `coffer -r offsite snapshots` uses the URL, password file or command, and
/// storage options of `[repository.offsite]`. A folder of the same name is an ambiguity and
/// refused; with no config, or a name the config does not define, `--repo` is a path.
fn named_repository(global: &Global) -> Result<Option<coffer_server::config::Repository>> {
    let Some(name) = global.repo.as_deref().filter(|r| is_bare_name(r)) else {
        return Ok(None);
    };
    let path = match std::env::var_os("COFFER_CONFIG") {
        Some(p) => PathBuf::from(p),
        None if std::path::Path::new("coffer.toml").is_file() => PathBuf::from("coffer.toml"),
        None => return Ok(None),
    };
    let folder = std::path::Path::new(name).exists();
    let config = match coffer_server::config::Config::load(&path) {
        Ok(c) => c,
        Err(_) if folder => return Ok(None),
        Err(e) => return Err(crate::output::UsageError(format!("{e:#}")).into()),
    };
    let Some(repo) = config.repositories.get(name) else {
        return Ok(None);
    };
    if folder {
        return Err(crate::output::UsageError(format!(
            "--repo {name} is ambiguous: {} defines a repository {name:?} and ./{name} exists; \
             write ./{name} for the folder",
            path.display()
        ))
        .into());
    }
    Ok(Some(repo.clone()))
}

fn first_line(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        bail!("{what} gave an empty password");
    }
    Ok(line.to_vec())
}

/// Reads a password from a file (first line).
pub fn read_password_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let data = std::fs::read(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    first_line(&data, &format!("the password file {}", path.display()))
}

/// Runs `cmd` with `sh -c` and takes the first line it prints as a password.
pub fn run_password_command(cmd: &str) -> Result<Vec<u8>> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run the password command")?;
    if !out.status.success() {
        bail!("the password command failed ({})", out.status);
    }
    first_line(&out.stdout, "the password command")
}

impl Ctx {
    /// The context of one command: `--repo NAME` is resolved through the config file.
    pub fn new(global: Global) -> Result<Ctx> {
        let named = named_repository(&global)?;
        Ok(Ctx { global, named })
    }

    /// Whether no repository was named (the embedded default applies).
    pub fn uses_default(&self) -> bool {
        self.global.repo.is_none()
    }

    /// The repository URL.
    pub fn repo_url(&self) -> Result<String> {
        if let Some(n) = &self.named {
            return Ok(n.url.clone());
        }
        match &self.global.repo {
            Some(r) => Ok(r.clone()),
            None => Ok(default_repo()?.repo.to_string_lossy().into_owned()),
        }
    }

    /// The password, from (in order) --password-file / COFFER_PASSWORD_FILE, COFFER_PASSWORD,
    /// --password-command, or the embedded default's key file.
    pub fn password(&self) -> Result<Vec<u8>> {
        if let Some(f) = &self.global.password_file {
            return read_password_file(f);
        }
        if let Ok(p) = std::env::var("COFFER_PASSWORD") {
            return first_line(p.as_bytes(), "COFFER_PASSWORD");
        }
        if let Some(cmd) = &self.global.password_command {
            return run_password_command(cmd);
        }
        if let Some(n) = &self.named {
            if let Some(f) = &n.password_file {
                return read_password_file(f);
            }
            if let Some(c) = &n.password_command {
                return run_password_command(c);
            }
        }
        if self.uses_default() {
            let d = default_repo()?;
            if d.key.exists() {
                return read_password_file(&d.key);
            }
        }
        Err(crate::output::UsageError(
            "no password given: use --password-file, COFFER_PASSWORD_FILE, COFFER_PASSWORD or --password-command".into(),
        )
        .into())
    }

    /// Storage options from `-o KEY=VALUE` and `--connections`.
    pub fn storage_options(&self) -> Result<coffer_storage::StorageOptions> {
        let mut o = coffer_storage::StorageOptions::default();
        // The config's options for a named repository first; `-o` overrides them.
        for (k, v) in self.named.iter().flat_map(|n| &n.options) {
            o.set(k, v)
                .map_err(|e| crate::output::UsageError(format!("{e:#}")))?;
        }
        for pair in &self.global.options {
            o.set_pair(pair)
                .map_err(|e| crate::output::UsageError(format!("{e:#}")))?;
        }
        if let Some(n) = self.global.connections {
            if n == 0 {
                return Err(
                    crate::output::UsageError("--connections must be at least 1".into()).into(),
                );
            }
            o.connections = n;
        }
        if !self.global.no_cache {
            o.cache_dir = self
                .global
                .cache_dir
                .clone()
                .or_else(|| dirs::cache_dir().map(|d| d.join("coffer")));
        }
        for (flag, limit, slot) in [
            (
                "--limit-upload",
                self.global.limit_upload,
                &mut o.limit_upload,
            ),
            (
                "--limit-download",
                self.global.limit_download,
                &mut o.limit_download,
            ),
        ] {
            match limit {
                Some(0) => {
                    return Err(crate::output::UsageError(format!(
                        "{flag} must be at least 1 KiB/s"
                    ))
                    .into())
                }
                Some(kib) => *slot = Some(kib.saturating_mul(1024)),
                None => {}
            }
        }
        // S3 Object Lock: --object-lock (or COFFER_OBJECT_LOCK), else `-o s3.object_lock=`,
        // checked here so that a bad value is a usage error.
        let usage =
            |flag: &str, e: coffer_core::Error| crate::output::UsageError(format!("{flag}: {e:#}"));
        if let Some(text) = &self.global.object_lock {
            o.object_lock =
                Some(coffer_storage::parse_retention(text).map_err(|e| usage("--object-lock", e))?);
        }
        if let Some(text) = o.extra.get("s3.object_lock") {
            coffer_storage::parse_retention(text).map_err(|e| usage("-o s3.object_lock", e))?;
        }
        if let Some(text) = o.extra.get("s3.object_lock_mode") {
            coffer_storage::LockMode::parse(text)
                .map_err(|e| usage("-o s3.object_lock_mode", e))?;
        }
        Ok(o)
    }

    /// A closed repository handle.
    pub async fn closed(&self) -> Result<Repository<Closed>> {
        closed_at(&self.repo_url()?, &self.storage_options()?).await
    }

    /// Opens the repository (key and config); the password is asked for only once the
    /// repository is known to exist.
    pub async fn open(&self) -> Result<Repository<Open>> {
        open_at(&self.repo_url()?, &self.storage_options()?, || {
            self.password()
        })
        .await
    }

    /// Opens the repository and loads its index.
    pub async fn open_indexed(&self) -> Result<Repository<Indexed>> {
        Ok(self.open().await?.load_index().await?)
    }

    /// Opens the repository, takes a lock, and only then loads the index: a prune (which
    /// holds the exclusive lock) can then neither remove index files while they are read nor
    /// delete packs this command goes on to rely on. A failed load releases the lock. For
    /// commands that write; those that only read use [`Ctx::open_for_reading`].
    pub async fn open_locked(
        &self,
        exclusive: bool,
        command: &str,
    ) -> Result<(Repository<Indexed>, coffer_core::lock::LockGuard)> {
        let repo = self.open().await?;
        let lock = repo.lock(exclusive, command).await?;
        match repo.load_index().await {
            Ok(repo) => Ok((repo, lock)),
            Err(e) => {
                lock.release().await.ok();
                Err(e.into())
            }
        }
    }

    /// Opens the repository for a command that only reads, with the shared lock of
    /// [`Ctx::open_locked`] when it can be taken (see [`read_lock`]).
    pub async fn open_for_reading(&self, command: &str) -> Result<(Repository<Indexed>, ReadLock)> {
        let repo = self.open().await?;
        let lock = read_lock(&repo, command, self.global.no_lock).await?;
        match repo.load_index().await {
            Ok(repo) => Ok((repo, lock)),
            Err(e) => {
                lock.release().await.ok();
                Err(e.into())
            }
        }
    }
}

/// The shared lock of a command that only reads, or none.
pub enum ReadLock {
    /// The shared lock: no prune can start until it is released.
    Held(coffer_core::lock::LockGuard),
    /// No lock: `--no-lock`, or the storage refuses this user's writes.
    None,
}

impl ReadLock {
    /// Removes the lock, if one is held.
    pub async fn release(self) -> coffer_core::Result<()> {
        match self {
            ReadLock::Held(lock) => lock.release().await,
            ReadLock::None => Ok(()),
        }
    }
}

/// Takes the shared lock for reading, unless `no_lock`. A repository this user may only read
/// (a read-only mount or file system, read-only credentials, a write-protected copy) cannot
/// hold a lock: a restore must still work there, so it goes on without one after a warning
/// naming the risk, as restic's `--no-lock` would but without having to know the flag at 3 a.m.
/// Any other failure to lock (the storage unreachable, another process's exclusive lock) stops.
pub async fn read_lock<S: coffer_core::Opened>(
    repo: &Repository<S>,
    command: &str,
    no_lock: bool,
) -> Result<ReadLock> {
    if no_lock {
        return Ok(ReadLock::None);
    }
    match repo.lock(false, command).await {
        Ok(lock) => Ok(ReadLock::Held(lock)),
        Err(e) if e.kind() == coffer_core::ErrorKind::PermissionDenied => {
            eprintln!(
                "coffer: warning: cannot write a lock to {}: the storage refuses this user's \
                 writes, so {command} reads without a lock; a prune run meanwhile from elsewhere \
                 could remove data it needs (--no-lock skips the attempt)",
                repo.backend().location()
            );
            Ok(ReadLock::None)
        }
        Err(e) => Err(e.into()),
    }
}

/// A closed handle on the repository at `url`.
pub async fn closed_at(
    url: &str,
    opts: &coffer_storage::StorageOptions,
) -> Result<Repository<Closed>> {
    Ok(Repository::new(coffer_storage::open(url, opts).await?))
}

/// Opens the repository at `url`; the password is asked for only once it is known to exist.
pub async fn open_at(
    url: &str,
    opts: &coffer_storage::StorageOptions,
    password: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Repository<Open>> {
    let repo = closed_at(url, opts).await?;
    if !repo.exists().await? {
        return Err(coffer_core::Error::new(
            coffer_core::ErrorKind::RepositoryNotFound,
            format!("there is no repository at {url} (create one with `coffer init`)"),
        )
        .into());
    }
    let pw = password()?;
    Ok(repo.open(&pw).await?)
}

/// Applies a filter to snapshots.
pub fn filter_snapshots(all: Vec<Snapshot>, f: &SnapshotFilter) -> Vec<Snapshot> {
    // A database URL matches the stored location, which never holds a password; a path
    // matches its canonical form.
    let source = f.source.as_ref().map(|s| {
        if coffer_sources::database::is_database_url(s) {
            if let Ok(url) = coffer_sources::database::DbUrl::parse(s) {
                return url.redacted();
            }
        }
        std::fs::canonicalize(s)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| s.clone())
    });
    all.into_iter()
        .filter(|s| f.tags.is_empty() || f.tags.iter().any(|t| s.tags.contains(t)))
        .filter(|s| f.host.as_ref().is_none_or(|h| &s.hostname == h))
        .filter(|s| {
            source.as_ref().is_none_or(|src| {
                s.source.paths.iter().any(|p| p == src) || &s.source.location == src
            })
        })
        .collect()
}

/// Resolves one snapshot argument (id, prefix or `latest`) under a filter.
pub async fn find_snapshot<S: coffer_core::Opened>(
    repo: &Repository<S>,
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<Snapshot> {
    let all = repo.list_snapshots().await?;
    let candidates = if spec == "latest" {
        filter_snapshots(all, filter)
    } else {
        all
    };
    Ok(Repository::<S>::resolve_snapshot(spec, &candidates)?.clone())
}
