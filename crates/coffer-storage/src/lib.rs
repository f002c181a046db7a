//! Coffer's storage backends: a repository location (a path or a URL) turned into a
//! [`coffer_core::Backend`] served by Apache OpenDAL. All OpenDAL use lives in this crate.
//!
//! Supported locations (see [`Location::parse`]):
//!
//! | location | service | credentials and settings (options override the environment) |
//! |---|---|---|
//! | `/path`, `relative/path`, `file:///abs/path` | local folder | |
//! | `s3://BUCKET/PREFIX` | Amazon S3 and compatibles | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_PROFILE`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`; options `s3.*` |
//! | `gs://BUCKET/PREFIX` | Google Cloud Storage | `GOOGLE_APPLICATION_CREDENTIALS`, `STORAGE_EMULATOR_HOST`; options `gs.*` |
//! | `az://CONTAINER/PREFIX` | Azure Blob Storage | `AZURE_STORAGE_CONNECTION_STRING`, or `AZURE_STORAGE_ACCOUNT` with `AZURE_STORAGE_KEY` or `AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_ENDPOINT`; options `az.*` |
//! | `sftp://[USER@]HOST[:PORT]/PATH` | SFTP over the system's `ssh` | ssh's own config, agent and `known_hosts`; options `sftp.*` |
//!
//! The option keys are listed in [`OPTION_KEYS`]; set them with [`StorageOptions::set`].
//!
//! A remote repository keeps a local cache of its index files and snapshots when
//! [`StorageOptions::cache_dir`] is set (see the `cache` module for its rules), and transfers are
//! paced by [`StorageOptions::limit_upload`] and [`StorageOptions::limit_download`].
//!
//! Every operator carries OpenDAL's retry (exponential backoff with jitter, temporary errors
//! only), timeout, concurrency-limit and logging layers. Writes are atomic everywhere:
//!
//! * a local repository writes each object to a temporary file in the hidden folder
//!   `<root>/.tmp`, fsyncs it, renames it into place and fsyncs its folder;
//! * SFTP writes to `<root>/.tmp/` and renames into place (`posix-rename@openssh.com`);
//! * object stores publish an object only when its upload completes. Objects above
//!   [`StorageOptions::multipart_threshold`] go up in parts of
//!   [`StorageOptions::multipart_part_size`] on S3 (multipart upload) and Azure (block list);
//!   Google Cloud Storage writes each object in one request. Every object gets the content
//!   type `application/octet-stream`.

mod cache;
mod error;
mod fault;
mod object_lock;
mod opendal_backend;
mod remote;
mod throttle;
mod url;

pub use object_lock::{extend_retention, RetentionReport};
pub use object_lock::{parse_retention, LockMode};
pub use url::Location;

use coffer_core::{Backend, Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Every key accepted in [`StorageOptions::extra`], with what it sets. Keys of another scheme
/// than the repository's are ignored, so one configuration can serve several repositories.
pub const OPTION_KEYS: &[(&str, &str)] = &[
    (
        "storage.timeout",
        "seconds one storage request (each attempt) may take (default 60)",
    ),
    (
        "storage.retries",
        "how many times a temporarily failed storage request is retried (default 5; 0: none)",
    ),
    (
        "s3.endpoint",
        "S3 endpoint URL (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS)",
    ),
    (
        "s3.region",
        "S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)",
    ),
    (
        "s3.path_style",
        "true: path-style addressing (endpoint/bucket/key); default true with a custom \
         endpoint, false on AWS",
    ),
    (
        "s3.access_key_id",
        "S3 access key id (default: AWS_ACCESS_KEY_ID, then AWS_PROFILE / ~/.aws)",
    ),
    (
        "s3.secret_access_key",
        "S3 secret access key (default: AWS_SECRET_ACCESS_KEY)",
    ),
    (
        "s3.session_token",
        "S3 session token (default: AWS_SESSION_TOKEN)",
    ),
    (
        "s3.profile",
        "profile in ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)",
    ),
    (
        "s3.anonymous",
        "true: send unsigned requests (public buckets)",
    ),
    (
        "s3.object_lock",
        "S3 Object Lock: retention period of every object but lock files (30d, 12h, 2w, 1y); \
         the bucket must have Object Lock enabled (same as --object-lock)",
    ),
    (
        "s3.object_lock_mode",
        "governance (default: users with s3:BypassGovernanceRetention can still delete) or \
         compliance (nobody can delete before the retention ends)",
    ),
    (
        "gs.endpoint",
        "GCS endpoint URL (default: http://$STORAGE_EMULATOR_HOST, else Google)",
    ),
    (
        "gs.credentials_file",
        "service-account JSON file (default: GOOGLE_APPLICATION_CREDENTIALS)",
    ),
    ("gs.token", "an OAuth2 access token"),
    (
        "gs.anonymous",
        "true: send unsigned requests (public buckets, emulators); the default with \
         STORAGE_EMULATOR_HOST and no credentials",
    ),
    (
        "az.connection_string",
        "Azure connection string (default: AZURE_STORAGE_CONNECTION_STRING)",
    ),
    (
        "az.account",
        "Azure storage account name (default: AZURE_STORAGE_ACCOUNT)",
    ),
    (
        "az.key",
        "Azure storage account key (default: AZURE_STORAGE_KEY)",
    ),
    (
        "az.sas_token",
        "Azure SAS token (default: AZURE_STORAGE_SAS_TOKEN)",
    ),
    (
        "az.endpoint",
        "Azure blob endpoint URL (default: AZURE_STORAGE_ENDPOINT, else \
         https://ACCOUNT.blob.core.windows.net)",
    ),
    (
        "sftp.key_file",
        "private key file for ssh (default: ssh's own choice, agent included)",
    ),
    (
        "sftp.known_hosts",
        "strict (default: the host key must be in known_hosts), add (accept and remember a \
         new host) or accept (no check; insecure)",
    ),
];

/// The option keys whose values are secrets: never printed, logged or stored.
const SECRET_KEYS: &[&str] = &[
    "s3.secret_access_key",
    "s3.session_token",
    "gs.token",
    "az.connection_string",
    "az.key",
    "az.sas_token",
];

/// How backends talk to their storage. Build one with `StorageOptions { connections: 4,
/// ..Default::default() }` and add service settings with [`StorageOptions::set`].
///
/// `Debug` hides the values of secret options.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// The most storage operations in flight at once (default 8; 0 counts as 1).
    pub connections: usize,
    /// Time limit for one control operation (stat, delete, create folder); default 60 s.
    pub timeout: Duration,
    /// Time limit for one I/O step (opening a read, write or list, and each call on it);
    /// default 60 s.
    pub io_timeout: Duration,
    /// How many times a temporarily failed operation is retried (default 5; 0 disables).
    pub retries: usize,
    /// The first delay between retries (default 500 ms); it doubles up to
    /// [`StorageOptions::retry_max_delay`], with random jitter added.
    pub retry_min_delay: Duration,
    /// The longest delay between retries (default 30 s).
    pub retry_max_delay: Duration,
    /// Objects larger than this many bytes are uploaded in parts on S3 (multipart upload) and
    /// Azure (block list); default 16 MiB. Google Cloud Storage and SFTP ignore it.
    pub multipart_threshold: u64,
    /// The size of each part of a multipart upload (default 8 MiB; S3 needs at least 5 MiB).
    pub multipart_part_size: u64,
    /// Service settings and credentials by key (`s3.region`, `az.key`, ...; see
    /// [`OPTION_KEYS`]). They override the environment.
    pub extra: BTreeMap<String, String>,
    /// Testing aid: this many of every 1000 storage requests fail with a temporary error
    /// before reaching the storage (default 0). The retry layer is expected to hide them.
    pub faults_per_thousand: u32,
    /// Upload limit in bytes per second, shared by every transfer (`None`: unlimited).
    pub limit_upload: Option<u64>,
    /// Download limit in bytes per second, shared by every transfer (`None`: unlimited).
    pub limit_download: Option<u64>,
    /// Where remote repositories keep their local cache of index files and snapshots
    /// (`None`: no cache). Local repositories are never cached.
    pub cache_dir: Option<std::path::PathBuf>,
    /// S3 Object Lock: write every object with a retention period of this length (`None`: no
    /// retention headers). Other backends refuse it.
    pub object_lock: Option<Duration>,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            connections: 8,
            timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(60),
            retries: 5,
            retry_min_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            multipart_threshold: 16 * 1024 * 1024,
            multipart_part_size: 8 * 1024 * 1024,
            extra: BTreeMap::new(),
            faults_per_thousand: 0,
            limit_upload: None,
            limit_download: None,
            cache_dir: None,
            object_lock: None,
        }
    }
}

impl StorageOptions {
    /// Sets the service option `key` (one of [`OPTION_KEYS`]) to `value`. An unknown key is an
    /// [`coffer_core::ErrorKind::InvalidInput`] error naming the known ones.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> Result<()> {
        check_key(key)?;
        let value = value.into();
        match key {
            // The transfer settings every backend shares set fields, not service settings.
            "storage.timeout" => {
                let secs = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "storage.timeout must be a number of seconds above 0, not {value:?}"
                        ))
                    })?;
                self.timeout = Duration::from_secs_f64(secs);
                self.io_timeout = self.timeout;
            }
            "storage.retries" => {
                self.retries = value.trim().parse().map_err(|_| {
                    Error::invalid(format!(
                        "storage.retries must be a whole number, not {value:?}"
                    ))
                })?;
            }
            _ => {
                self.extra.insert(key.to_string(), value);
            }
        }
        Ok(())
    }

    /// [`StorageOptions::set`] for chaining: `StorageOptions::default().with("s3.region",
    /// "eu-west-1")?`.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Result<Self> {
        self.set(key, value)?;
        Ok(self)
    }

    /// Parses `key=value` (as given to a `-o` command-line option) and sets it.
    pub fn set_pair(&mut self, pair: &str) -> Result<()> {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            Error::invalid(format!(
                "storage option {:?} is not of the form key=value",
                pair.split('=').next().unwrap_or("")
            ))
        })?;
        self.set(key.trim(), value)
    }

    /// Whether `key` names a secret (its value is never shown).
    pub fn is_secret(key: &str) -> bool {
        SECRET_KEYS.contains(&key)
    }
}

impl std::fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let extra: BTreeMap<&str, &str> = self
            .extra
            .iter()
            .map(|(k, v)| {
                let shown = if Self::is_secret(k) { "***" } else { v };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("StorageOptions")
            .field("connections", &self.connections)
            .field("timeout", &self.timeout)
            .field("io_timeout", &self.io_timeout)
            .field("retries", &self.retries)
            .field("retry_min_delay", &self.retry_min_delay)
            .field("retry_max_delay", &self.retry_max_delay)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("multipart_part_size", &self.multipart_part_size)
            .field("extra", &extra)
            .field("faults_per_thousand", &self.faults_per_thousand)
            .field("limit_upload", &self.limit_upload)
            .field("limit_download", &self.limit_download)
            .field("cache_dir", &self.cache_dir)
            .field("object_lock", &self.object_lock)
            .finish()
    }
}

fn check_key(key: &str) -> Result<()> {
    if OPTION_KEYS.iter().any(|(k, _)| *k == key) {
        return Ok(());
    }
    let known: Vec<&str> = OPTION_KEYS.iter().map(|(k, _)| *k).collect();
    Err(Error::invalid(format!(
        "unknown storage option {key:?}; known options: {}",
        known.join(", ")
    )))
}

/// Opens the repository location `url` (see [`Location::parse`]) as a backend.
///
/// Opening never changes the storage and makes no request: a local folder that does not exist
/// is not created (reads then fail with [`coffer_core::ErrorKind::NotFound`], `stat` returns
/// `None`, `list` is empty) until [`Backend::create`] is called; a remote location is contacted
/// on first use. Unknown option keys and unusable settings fail with
/// [`coffer_core::ErrorKind::InvalidInput`]; unsupported schemes with
/// [`coffer_core::ErrorKind::Unsupported`].
pub async fn open(url: &str, opts: &StorageOptions) -> Result<Arc<dyn Backend>> {
    for key in opts.extra.keys() {
        check_key(key)?;
    }
    let location = Location::parse(url)?;
    object_lock::require_s3(&location, opts)?;
    let backend: Arc<dyn Backend> = match location {
        Location::Local(path) => {
            let root = std::path::absolute(&path).map_err(|e| {
                Error::invalid(format!(
                    "cannot resolve repository path {}: {e}",
                    path.display()
                ))
            })?;
            Arc::new(opendal_backend::OpendalBackend::local(root, opts))
        }
        location => {
            let remote = remote::build(&location, opts, &remote::process_env)?;
            let b: Arc<dyn Backend> = Arc::new(opendal_backend::OpendalBackend::remote(
                location, remote, opts,
            ));
            match &opts.cache_dir {
                Some(dir) => cache::Cached::wrap(b, dir),
                None => b,
            }
        }
    };
    Ok(throttle::Throttled::wrap(
        backend,
        opts.limit_upload,
        opts.limit_download,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_keys_set_the_shared_transfer_settings() {
        let mut o = StorageOptions::default();
        o.set("storage.timeout", "2.5").unwrap();
        o.set("storage.retries", "1").unwrap();
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert_eq!(o.io_timeout, Duration::from_millis(2500));
        assert_eq!(o.retries, 1);
        assert!(o.extra.is_empty());
        for bad in ["0", "-1", "soon", "inf"] {
            assert!(o.set("storage.timeout", bad).is_err(), "{bad}");
        }
        assert!(o.set("storage.retries", "-1").is_err());
    }

    #[test]
    fn options_are_checked_and_secrets_hidden() {
        let mut o = StorageOptions::default();
        o.set("s3.region", "eu-west-1").unwrap();
        o.set("s3.secret_access_key", "hunter2").unwrap();
        o.set_pair("az.key=abc=").unwrap();
        assert_eq!(o.extra["az.key"], "abc=");
        let err = o.set("s3.regoin", "x").unwrap_err();
        assert_eq!(err.kind(), coffer_core::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("s3.region"), "{err}");
        assert!(o.set_pair("novalue").is_err());
        let shown = format!("{o:?}");
        assert!(shown.contains("eu-west-1"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("abc="), "{shown}");
    }
}
