//! Where the repository is, how its password is found, and opening it.

use crate::cli::Global;
use anyhow::{anyhow, Result};
use coffer_core::keyfile::KdfParams;
use coffer_core::{Closed, Indexed, Open, Repository};
use coffer_ops::password::{Password, PasswordSource};
use coffer_ops::repo::LockMode;
use coffer_ops::{Locked, RepoSpec};
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

pub use coffer_ops::password::read_password_file;

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

    /// Where the password comes from, in order: --password-file / COFFER_PASSWORD_FILE,
    /// COFFER_PASSWORD, --password-command, the named repository's file or command, or the
    /// embedded default's key file.
    pub fn password_source(&self) -> Result<PasswordSource> {
        if let Some(f) = &self.global.password_file {
            return Ok(PasswordSource::File(f.clone()));
        }
        if let Ok(p) = std::env::var("COFFER_PASSWORD") {
            return Ok(PasswordSource::Given(
                coffer_ops::password::password_from_text(&p, "COFFER_PASSWORD")?,
            ));
        }
        if let Some(cmd) = &self.global.password_command {
            return Ok(PasswordSource::Command(cmd.clone()));
        }
        if let Some(n) = &self.named {
            if let Some(f) = &n.password_file {
                return Ok(PasswordSource::File(f.clone()));
            }
            if let Some(c) = &n.password_command {
                return Ok(PasswordSource::Command(c.clone()));
            }
        }
        if self.uses_default() {
            let d = default_repo()?;
            if d.key.exists() {
                return Ok(PasswordSource::File(d.key));
            }
        }
        Ok(PasswordSource::Missing(
            "no password given: use --password-file, COFFER_PASSWORD_FILE, COFFER_PASSWORD or \
             --password-command"
                .into(),
        ))
    }

    /// The password (see [`Ctx::password_source`]).
    pub fn password(&self) -> Result<Password> {
        Ok(self.password_source()?.read()?)
    }

    /// The repository as the operations take it: its URL, storage options and password.
    pub fn spec(&self) -> Result<RepoSpec> {
        Ok(RepoSpec {
            url: self.repo_url()?,
            options: self.storage_options()?,
            password: self.password_source()?,
        })
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
        Ok(self.spec()?.closed().await?)
    }

    /// Opens the repository (key and config); the password is asked for only once the
    /// repository is known to exist.
    pub async fn open(&self) -> Result<Repository<Open>> {
        Ok(self.spec()?.open().await?)
    }

    /// Opens the repository and loads its index (no lock: for listings).
    pub async fn open_indexed(&self) -> Result<Repository<Indexed>> {
        Ok(self.open().await?.load_index().await?)
    }

    /// Opens the repository under a lock of `mode` (see [`RepoSpec::open_locked`]).
    pub async fn open_locked(&self, mode: LockMode, command: &str) -> Result<Locked> {
        Ok(self.spec()?.open_locked(mode, command).await?)
    }
}
