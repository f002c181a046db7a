//! [`Backend`] implemented over an [`opendal::Operator`], plus the layers every operator gets
//! (the services of remote locations are configured in [`crate::remote`]).
//!
//! The backend holds two operators: one for reading (read, stat, list, remove) and one for
//! writing (write, create). For a remote location both are the same operator. For a local folder
//! they differ so that merely opening a path never changes the disk: OpenDAL's fs builder
//! creates its root folder and its temporary folder when it is built, so the read operator is
//! built without a temporary folder and only once the root exists, and the write operator is
//! built only when something is written (and only once the root exists, which `create` ensures).

use crate::error::{diagnose, from_io, from_opendal, from_opendal_redacted, Problem, Redactor};
use crate::fault::FaultLayer;
use crate::object_lock::{is_missing_lock_configuration, Locker};
use crate::remote::{Remote, Service};
use crate::url::Location;
use crate::StorageOptions;
use async_trait::async_trait;
use bytes::Bytes;
use coffer_core::{object_path, Backend, Error, ErrorKind, FileType, Id, Result};
use opendal::layers::{
    ConcurrentLimitLayer, LoggingInterceptor, LoggingLayer, RetryEvent, RetryInterceptor,
    RetryLayer, TimeoutLayer,
};
use opendal::raw::{Operation, ServiceInfo};
use opendal::Operator;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The hidden folder, inside a local repository, where objects are written before being renamed
/// into place. Its name is not an id and it is outside every object folder, so listings never
/// show its contents.
pub(crate) const LOCAL_TMP_DIR: &str = ".tmp";

/// A function that builds an operator, or says (`Ok(None)`) that the location does not exist.
type BuildFn = Box<dyn Fn() -> Result<Option<Operator>> + Send + Sync>;

/// An operator that is built on first use, once its location exists.
pub(crate) struct LazyOperator {
    cell: OnceLock<Operator>,
    build: BuildFn,
}

impl LazyOperator {
    /// An operator that is already built (remote locations).
    pub(crate) fn ready(op: Operator) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(op);
        LazyOperator {
            cell,
            build: Box::new(|| Ok(None)),
        }
    }

    /// An operator built by `build` on first use; `build` returns `Ok(None)` while the location
    /// does not exist, and is asked again next time.
    pub(crate) fn lazy(
        build: impl Fn() -> Result<Option<Operator>> + Send + Sync + 'static,
    ) -> Self {
        LazyOperator {
            cell: OnceLock::new(),
            build: Box::new(build),
        }
    }

    /// The operator, or `None` if the location does not exist (yet).
    fn get(&self) -> Result<Option<Operator>> {
        if let Some(op) = self.cell.get() {
            return Ok(Some(op.clone()));
        }
        match (self.build)()? {
            Some(op) => Ok(Some(self.cell.get_or_init(|| op).clone())),
            None => Ok(None),
        }
    }
}

/// The content type of every object written to an object store.
const CONTENT_TYPE: &str = "application/octet-stream";

/// What a remote backend needs to know about its service.
struct RemoteInfo {
    service: Service,
    /// For messages; no secrets.
    endpoint: String,
    /// The bucket or container (the host for SFTP), for messages.
    container: String,
    /// Removes the location's secrets from messages.
    redactor: Redactor,
    /// S3 Object Lock, when uploads carry a retention.
    locker: Option<Arc<Locker>>,
    /// Set once the bucket was found to have Object Lock enabled (checked before the first
    /// write).
    lock_checked: tokio::sync::OnceCell<()>,
}

/// A repository location served by OpenDAL.
pub(crate) struct OpendalBackend {
    /// Shown to users; no secrets.
    location: String,
    /// The root folder, for a local repository (created by `create`, folders fsync'd).
    local_root: Option<PathBuf>,
    /// The service, for a remote repository.
    remote: Option<RemoteInfo>,
    reader: LazyOperator,
    writer: LazyOperator,
    /// Objects above this size are uploaded in parts (S3, Azure).
    multipart_threshold: u64,
    /// The part size of multipart uploads.
    part_size: u64,
}

/// "pack 1a2b3c4d", or "config" for the config object.
fn describe(ft: FileType, id: &Id) -> String {
    match ft {
        FileType::Config => "config".to_string(),
        _ => format!("{} {}", ft.name(), id.short()),
    }
}

impl OpendalBackend {
    /// A backend over a local folder `root` (absolute).
    pub(crate) fn local(root: PathBuf, opts: &StorageOptions) -> Self {
        let layers = Layers::new(opts);
        let reader = {
            let (root, layers) = (root.clone(), layers.clone());
            LazyOperator::lazy(move || {
                if !local_root_exists(&root)? {
                    return Ok(None);
                }
                let builder = opendal::services::Fs::default().root(&root.to_string_lossy());
                let op = Operator::new(builder).map_err(|e| {
                    from_opendal(
                        e,
                        format!("cannot open repository folder {}", root.display()),
                    )
                })?;
                Ok(Some(layers.apply(op)))
            })
        };
        let writer = {
            let (root, layers) = (root.clone(), layers);
            LazyOperator::lazy(move || {
                if !local_root_exists(&root)? {
                    return Ok(None);
                }
                let tmp = root.join(LOCAL_TMP_DIR);
                let builder = opendal::services::Fs::default()
                    .root(&root.to_string_lossy())
                    .atomic_write_dir(&tmp.to_string_lossy());
                let op = Operator::new(builder).map_err(|e| {
                    from_opendal(
                        e,
                        format!(
                            "cannot open repository folder {} for writing",
                            root.display()
                        ),
                    )
                })?;
                Ok(Some(layers.apply(op)))
            })
        };
        OpendalBackend {
            location: root.display().to_string(),
            local_root: Some(root),
            remote: None,
            reader,
            writer,
            multipart_threshold: opts.multipart_threshold,
            part_size: opts.multipart_part_size,
        }
    }

    /// A backend over a remote location, with the operator `remote` built for it.
    pub(crate) fn remote(location: Location, remote: Remote, opts: &StorageOptions) -> Self {
        let redactor = Redactor::new(remote.secrets);
        let op = Layers::new(opts)
            .with_redactor(redactor.clone())
            .apply(remote.op);
        let part_size = match remote.service {
            // S3 refuses parts below 5 MiB (all but the last).
            Service::S3 => opts.multipart_part_size.max(5 * 1024 * 1024),
            _ => opts.multipart_part_size.max(1),
        };
        OpendalBackend {
            location: location.to_string(),
            local_root: None,
            remote: Some(RemoteInfo {
                service: remote.service,
                endpoint: remote.endpoint,
                container: remote.container,
                redactor,
                locker: remote.locker,
                lock_checked: tokio::sync::OnceCell::new(),
            }),
            reader: LazyOperator::ready(op.clone()),
            writer: LazyOperator::ready(op),
            multipart_threshold: opts.multipart_threshold,
            part_size,
        }
    }

    /// Converts an OpenDAL error, with `context` ("cannot read pack 1a2b3c4d from ..."), and
    /// for a remote location says first which problem it is when it is one the user must act
    /// on (bad credentials, unreachable host, ...).
    fn error(&self, err: opendal::Error, context: String) -> Error {
        let Some(remote) = &self.remote else {
            return from_opendal(err, context);
        };
        let problem = diagnose(&err);
        self.remote_error(remote, problem, err, context)
    }

    /// The error of a remote operation: secrets scrubbed, `problem` named first.
    fn remote_error(
        &self,
        remote: &RemoteInfo,
        problem: Option<Problem>,
        err: opendal::Error,
        context: String,
    ) -> Error {
        let kind = match problem {
            Some(Problem::MissingContainer) => Some(ErrorKind::NotFound),
            Some(Problem::BadCredentials) => Some(ErrorKind::PermissionDenied),
            _ => None,
        };
        let e = from_opendal_redacted(kind, err, context, &remote.redactor);
        match problem {
            Some(p) => e.context(self.problem_message(p)),
            None => e,
        }
    }

    /// One sentence naming `problem` for this location.
    fn problem_message(&self, problem: Problem) -> String {
        let Some(r) = &self.remote else {
            return String::new();
        };
        let service = r.service.name();
        match problem {
            Problem::MissingContainer => format!(
                "the {service} {} {:?} does not exist at {}: create it first (coffer does not \
                 create {}s)",
                r.service.container_word(),
                r.container,
                r.endpoint,
                r.service.container_word()
            ),
            Problem::BadCredentials => format!(
                "access to {} at {} was denied: bad credentials or missing permission ({})",
                self.location,
                r.endpoint,
                r.service.credentials_hint()
            ),
            Problem::Unreachable(reason) => format!(
                "cannot reach the {service} server at {} ({reason})",
                r.endpoint
            ),
            Problem::HostKey => format!(
                "the ssh host key of {} is not trusted: add it to known_hosts (ssh-keyscan) or \
                 set the option sftp.known_hosts=add",
                r.endpoint
            ),
        }
    }

    /// An error of the write probe in `create`. On an object store a missing object there can
    /// only mean a missing bucket or container.
    fn create_error(&self, err: opendal::Error, doing: &str) -> Error {
        let context = format!("{doing} {}", self.location);
        let Some(remote) = &self.remote else {
            return from_opendal(err, context);
        };
        let problem = match diagnose(&err) {
            None if remote.service != Service::Sftp
                && err.kind() == opendal::ErrorKind::NotFound =>
            {
                Some(Problem::MissingContainer)
            }
            p => p,
        };
        self.remote_error(remote, problem, err, context)
    }

    /// Writes `data` at `path` the way this location needs: in one request or in parts on
    /// object stores (always with a content type), to a temporary file renamed into place on
    /// SFTP, directly on a local folder (whose writer is atomic itself).
    async fn put(&self, op: &Operator, path: &str, data: Bytes) -> opendal::Result<()> {
        let Some(remote) = &self.remote else {
            return op.write(path, data).await.map(|_| ());
        };
        match remote.service {
            Service::S3 | Service::Azure if data.len() as u64 > self.multipart_threshold => {
                // In parts (S3 multipart upload, Azure block list). A failed upload is aborted
                // so that no incomplete multipart upload is left to bill for.
                let mut w = op
                    .writer_with(path)
                    .content_type(CONTENT_TYPE)
                    .chunk(self.part_size as usize)
                    .await?;
                let res = match w.write(data).await {
                    Ok(()) => w.close().await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if res.is_ok() && !path.starts_with(&format!("{}/", FileType::Lock.dir())) {
                    if let Some(locker) = &remote.locker {
                        return locker.confirm_retention(path).await;
                    }
                }
                if res.is_err() {
                    if let Err(e) = w.abort().await {
                        tracing::debug!(
                            target: "coffer_storage::opendal",
                            "aborting the failed upload of {path} failed too: {}",
                            remote.redactor.scrub(&e.to_string())
                        );
                    }
                }
                res
            }
            Service::S3 | Service::Azure => op
                .write_with(path, data)
                .content_type(CONTENT_TYPE)
                .await
                .map(|_| ()),
            // The GCS XML multipart API is not universally available (emulators lack it):
            // one request per object.
            Service::Gcs => op
                .write_with(path, data)
                .content_type(CONTENT_TYPE)
                .await
                .map(|_| ()),
            Service::Sftp => {
                let tmp = format!(
                    "{LOCAL_TMP_DIR}/{}.{}",
                    path.replace('/', "_"),
                    Id::random().short()
                );
                if let Err(e) = op.write(&tmp, data).await {
                    let _ = op.delete(&tmp).await;
                    return Err(e);
                }
                if let Err(e) = op.rename(&tmp, path).await {
                    let _ = op.delete(&tmp).await;
                    return Err(e);
                }
                Ok(())
            }
        }
    }

    /// With S3 Object Lock, checks once (before the first write) that the bucket has Object
    /// Lock enabled, so that `init` and `backup` fail up front on a bucket without it.
    async fn check_object_lock(&self) -> Result<()> {
        let Some((remote, locker)) = self
            .remote
            .as_ref()
            .and_then(|r| r.locker.as_ref().map(|l| (r, l)))
        else {
            return Ok(());
        };
        remote
            .lock_checked
            .get_or_try_init(|| locker.verify_bucket())
            .await
            .map(|_| ())
    }

    /// The error of an upload: [`OpendalBackend::error`], or the Object Lock message when S3
    /// says the bucket has no Object Lock configuration.
    fn upload_error(&self, err: opendal::Error, context: String) -> Error {
        match self.remote.as_ref().and_then(|r| r.locker.as_ref()) {
            Some(locker) if is_missing_lock_configuration(&err) => {
                locker.not_enabled().context(context)
            }
            _ => self.error(err, context),
        }
    }

    /// The write operator, or a clear error if the location does not exist.
    fn writer(&self) -> Result<Operator> {
        self.writer.get()?.ok_or_else(|| {
            Error::not_found(format!(
                "repository location {} does not exist",
                self.location
            ))
        })
    }

    /// Makes a new directory entry in `dir` durable (local folders only). File systems that
    /// cannot sync a folder are tolerated.
    async fn sync_dir(&self, dir: PathBuf) -> Result<()> {
        if self.local_root.is_none() {
            return Ok(());
        }
        let shown = dir.display().to_string();
        let res = tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
            .await
            .map_err(|e| Error::new(ErrorKind::Storage, format!("syncing folder {shown}: {e}")))?;
        match res {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(from_io(e, format!("cannot sync folder {shown}"))),
        }
    }

    /// Parses a listed path (relative to the root) as an object of type `ft`. Only canonical
    /// names in the canonical folder count: a pack must sit in `data/<first two digits>/`.
    fn parse_listed(ft: FileType, path: &str) -> Option<Id> {
        let rest = path.strip_prefix(ft.dir())?.strip_prefix('/')?;
        let name = match ft {
            FileType::Pack => {
                let (sub, name) = rest.split_once('/')?;
                if name.get(..2) != Some(sub) {
                    return None;
                }
                name
            }
            _ => rest,
        };
        if name.len() != 64 || name.contains('/') {
            return None;
        }
        let id = Id::from_hex(name).ok()?;
        (id.to_hex() == name).then_some(id)
    }
}

/// Whether a local root folder exists; an error if it exists but is not a folder.
/// Tells the kernel that the pages of a pack just written to a local repository will not be
/// read again soon, so that a backup does not fill the page cache with its own output and push
/// out pages other processes use (as borg does after syncing each segment). The pack is already
/// durable (OpenDAL's local writer fsyncs it before the rename), so its pages are clean and are
/// freed at once; their memory is then reused by the backup's next reads and writes, which on a
/// virtual machine is cheaper than touching fresh pages. Advice only: failures are ignored.
async fn drop_cached_pages(path: PathBuf) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(f) = std::fs::File::open(&path) {
                // SAFETY: `f` is an open file descriptor for the duration of the call.
                unsafe {
                    libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
                }
            }
        })
        .await;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
}

fn local_root_exists(root: &Path) -> Result<bool> {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(Error::new(
            ErrorKind::Storage,
            format!("repository location {} is not a folder", root.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(from_io(
            e,
            format!("cannot access repository folder {}", root.display()),
        )),
    }
}

#[async_trait]
impl Backend for OpendalBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    async fn create(&self) -> Result<()> {
        if let Some(root) = &self.local_root {
            tokio::fs::create_dir_all(root).await.map_err(|e| {
                from_io(
                    e,
                    format!("cannot create repository folder {}", root.display()),
                )
            })?;
        }
        let op = self.writer()?;
        self.check_object_lock().await?;
        let service = self.remote.as_ref().map(|r| r.service);
        // Object stores have no folders; file systems get the layout up front.
        if matches!(service, None | Some(Service::Sftp)) {
            let mut dirs: Vec<String> = FileType::ALL
                .iter()
                .filter(|ft| **ft != FileType::Config)
                .map(|ft| format!("{}/", ft.dir()))
                .collect();
            dirs.extend((0..=255u8).map(|b| format!("{}/{b:02x}/", FileType::Pack.dir())));
            if service.is_some() {
                dirs.push(format!("{LOCAL_TMP_DIR}/"));
            }
            for dir in &dirs {
                op.create_dir(dir).await.map_err(|e| {
                    self.error(
                        e,
                        format!("cannot create folder {dir} in {}", self.location),
                    )
                })?;
            }
        }
        // A probe proves the location takes writes (folders may pre-exist on a read-only
        // mount; a bucket may be missing or read-only for these credentials). Its name is not
        // an id, so a leftover probe is ignored by `list`.
        let probe = format!(
            "{}/.write-probe-{}",
            FileType::Lock.dir(),
            Id::random().short()
        );
        self.put(&op, &probe, Bytes::from_static(b"coffer write probe"))
            .await
            .map_err(|e| self.create_error(e, "cannot write to"))?;
        op.delete(&probe)
            .await
            .map_err(|e| self.create_error(e, "cannot delete from"))?;
        if let Some(root) = &self.local_root {
            self.sync_dir(root.join(FileType::Pack.dir())).await?;
            self.sync_dir(root.clone()).await?;
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                self.sync_dir(parent.to_path_buf()).await?;
            }
        }
        Ok(())
    }

    async fn list(&self, ft: FileType) -> Result<Vec<(Id, u64)>> {
        if ft == FileType::Config {
            return Ok(self
                .stat(ft, &Id::ZERO)
                .await?
                .map(|n| vec![(Id::ZERO, n)])
                .unwrap_or_default());
        }
        let Some(op) = self.reader.get()? else {
            return Ok(Vec::new());
        };
        let dir = format!("{}/", ft.dir());
        let entries = op
            .list_with(&dir)
            .recursive(ft == FileType::Pack)
            .await
            .map_err(|e| self.error(e, format!("cannot list {dir} in {}", self.location)))?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            if !entry.metadata().is_file() {
                continue;
            }
            match Self::parse_listed(ft, entry.path()) {
                Some(id) => out.push((id, entry.metadata().content_length())),
                None => tracing::debug!(
                    path = entry.path(),
                    "ignoring a file that is not a {}",
                    ft.name()
                ),
            }
        }
        Ok(out)
    }

    async fn read(&self, ft: FileType, id: &Id) -> Result<Bytes> {
        let what = describe(ft, id);
        let Some(op) = self.reader.get()? else {
            return Err(Error::not_found(format!(
                "cannot read {what}: repository location {} does not exist",
                self.location
            )));
        };
        let buf = op
            .read(&object_path(ft, id))
            .await
            .map_err(|e| self.error(e, format!("cannot read {what} from {}", self.location)))?;
        Ok(buf.to_bytes())
    }

    async fn read_range(&self, ft: FileType, id: &Id, offset: u64, length: u64) -> Result<Bytes> {
        let what = describe(ft, id);
        let end = offset.checked_add(length).ok_or_else(|| {
            Error::invalid(format!(
                "range {offset}+{length} of {what} is out of bounds"
            ))
        })?;
        let Some(op) = self.reader.get()? else {
            return Err(Error::not_found(format!(
                "cannot read {what}: repository location {} does not exist",
                self.location
            )));
        };
        let path = object_path(ft, id);
        let short = || {
            Error::new(
                ErrorKind::Storage,
                format!("{what} in {} is shorter than {end} bytes", self.location),
            )
        };
        if length == 0 {
            let size = op
                .stat(&path)
                .await
                .map_err(|e| self.error(e, format!("cannot read {what} from {}", self.location)))?;
            return if size.content_length() < end {
                Err(short())
            } else {
                Ok(Bytes::new())
            };
        }
        let buf = op.read_with(&path).range(offset..end).await.map_err(|e| {
            if e.kind() == opendal::ErrorKind::RangeNotSatisfied {
                short().with_source(e)
            } else {
                self.error(
                    e,
                    format!(
                        "cannot read bytes {offset}..{end} of {what} from {}",
                        self.location
                    ),
                )
            }
        })?;
        if buf.len() as u64 != length {
            return Err(short());
        }
        Ok(buf.to_bytes())
    }

    async fn write(&self, ft: FileType, id: &Id, data: Bytes) -> Result<()> {
        let what = describe(ft, id);
        let op = self
            .writer()
            .map_err(|e| e.context(format!("cannot write {what}")))?;
        self.check_object_lock().await?;
        let path = object_path(ft, id);
        self.put(&op, &path, data).await.map_err(|e| {
            self.upload_error(e, format!("cannot write {what} to {}", self.location))
        })?;
        if let Some(root) = &self.local_root {
            // The rename from the temporary folder is durable once the folder is synced.
            let parent = root.join(&path);
            let parent = parent
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| root.clone());
            self.sync_dir(parent).await?;
            if ft == FileType::Pack {
                drop_cached_pages(root.join(&path)).await;
            }
        }
        Ok(())
    }

    async fn remove(&self, ft: FileType, id: &Id) -> Result<()> {
        let Some(op) = self.reader.get()? else {
            return Ok(());
        };
        match op.delete(&object_path(ft, id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(
                e,
                format!("cannot remove {} from {}", describe(ft, id), self.location),
            )),
        }
    }

    async fn stat(&self, ft: FileType, id: &Id) -> Result<Option<u64>> {
        let Some(op) = self.reader.get()? else {
            return Ok(None);
        };
        match op.stat(&object_path(ft, id)).await {
            Ok(meta) if meta.is_file() => Ok(Some(meta.content_length())),
            Ok(_) => Err(Error::new(
                ErrorKind::Storage,
                format!("{} in {} is not a file", describe(ft, id), self.location),
            )),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(
                e,
                format!("cannot stat {} in {}", describe(ft, id), self.location),
            )),
        }
    }
}

/// The layers every operator gets, in one place so that the read and write operators of one
/// backend share a single concurrency limit.
#[derive(Clone)]
pub(crate) struct Layers {
    /// Lasting disk errors made permanent, and injected faults (tests only); innermost, so
    /// that the retry layer sees both.
    fault: FaultLayer,
    concurrent: ConcurrentLimitLayer,
    timeout: TimeoutLayer,
    retry: RetryLayer<TracingRetry>,
    /// Scrubs secrets from log lines.
    redactor: Redactor,
}

impl Layers {
    /// Layers configured from the options.
    pub(crate) fn new(opts: &StorageOptions) -> Self {
        Layers {
            fault: FaultLayer::new(opts.faults_per_thousand),
            concurrent: ConcurrentLimitLayer::new(opts.connections.max(1)),
            timeout: TimeoutLayer::new()
                .with_timeout(opts.timeout)
                .with_io_timeout(opts.io_timeout),
            retry: RetryLayer::new()
                .with_jitter()
                .with_factor(2.0)
                .with_min_delay(opts.retry_min_delay)
                .with_max_delay(opts.retry_max_delay.max(opts.retry_min_delay))
                .with_max_times(opts.retries)
                .with_notify(TracingRetry(Redactor::default())),
            redactor: Redactor::default(),
        }
    }

    /// The same layers, with log lines scrubbed of `redactor`'s secrets.
    pub(crate) fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.retry = self.retry.with_notify(TracingRetry(redactor.clone()));
        self.redactor = redactor;
        self
    }

    /// Wraps `op`, innermost first: lasting disk errors made permanent and injected faults
    /// (tests only), logging (each real
    /// request), timeout (each attempt), concurrency limit (a permit per attempt, not held
    /// while backing off), retry (outermost, so the timeout is inside it as OpenDAL requires).
    pub(crate) fn apply(&self, op: Operator) -> Operator {
        op.layer(self.fault.clone())
            .layer(LoggingLayer::new(TracingLogger(self.redactor.clone())))
            .layer(self.timeout.clone())
            .layer(self.concurrent.clone())
            .layer(self.retry.clone())
    }
}

/// Sends OpenDAL's per-request log events to `tracing` (trace level; failures at debug level,
/// since the caller reports the final error itself and a missing object is often expected),
/// scrubbed of secrets.
#[derive(Debug, Clone, Default)]
pub(crate) struct TracingLogger(Redactor);

impl LoggingInterceptor for TracingLogger {
    fn log(
        &self,
        info: &ServiceInfo,
        operation: Operation,
        context: &[(&str, &str)],
        message: &str,
        err: Option<&opendal::Error>,
    ) {
        let ctx = context
            .iter()
            .map(|(k, v)| format!(" {k}={v}"))
            .collect::<String>();
        let scheme = info.scheme();
        match err {
            Some(err) if err.kind() != opendal::ErrorKind::NotFound => {
                if tracing::enabled!(target: "coffer_storage::opendal", tracing::Level::DEBUG) {
                    let line = self.0.scrub(&format!("{operation} {message}{ctx}: {err}"));
                    tracing::debug!(target: "coffer_storage::opendal", "{scheme}: {line}");
                }
            }
            Some(err) => {
                if tracing::enabled!(target: "coffer_storage::opendal", tracing::Level::TRACE) {
                    let line = self.0.scrub(&format!("{operation} {message}{ctx}: {err}"));
                    tracing::trace!(target: "coffer_storage::opendal", "{scheme}: {line}");
                }
            }
            None => {
                if tracing::enabled!(target: "coffer_storage::opendal", tracing::Level::TRACE) {
                    let line = self.0.scrub(&format!("{operation} {message}{ctx}"));
                    tracing::trace!(target: "coffer_storage::opendal", "{scheme}: {line}");
                }
            }
        }
    }
}

/// Reports each retry of a temporary failure as a `tracing` warning, scrubbed of secrets.
pub(crate) struct TracingRetry(Redactor);

impl RetryInterceptor for TracingRetry {
    fn intercept(&self, event: RetryEvent<'_>) {
        let err = self.0.scrub(&event.err.to_string());
        tracing::warn!(
            target: "coffer_storage::opendal",
            "storage {} failed temporarily (attempt {}), retrying in {:.1}s: {err}",
            event.op,
            event.attempt,
            event.retry_after.as_secs_f64(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_listed_paths() {
        let id = Id::random();
        let hex = id.to_hex();
        let pack = format!("data/{}/{hex}", &hex[..2]);
        assert_eq!(
            OpendalBackend::parse_listed(FileType::Pack, &pack),
            Some(id)
        );
        assert_eq!(
            OpendalBackend::parse_listed(FileType::Pack, &format!("data/zz/{hex}")),
            None
        );
        assert_eq!(
            OpendalBackend::parse_listed(FileType::Pack, &format!("data/{hex}")),
            None
        );
        assert_eq!(
            OpendalBackend::parse_listed(FileType::Pack, &format!("{pack}.tmp")),
            None
        );
        let upper = format!("data/{}/{}", &hex[..2].to_uppercase(), hex.to_uppercase());
        assert_eq!(OpendalBackend::parse_listed(FileType::Pack, &upper), None);
        assert_eq!(
            OpendalBackend::parse_listed(FileType::Key, &format!("keys/{hex}")),
            Some(id)
        );
        assert_eq!(
            OpendalBackend::parse_listed(FileType::Key, &format!("keys/x/{hex}")),
            None
        );
        assert_eq!(
            OpendalBackend::parse_listed(FileType::Key, &format!("index/{hex}")),
            None
        );
        assert_eq!(
            OpendalBackend::parse_listed(FileType::Pack, "data/a\u{e9}/a\u{e9}"),
            None
        );
        assert_eq!(
            OpendalBackend::parse_listed(FileType::Lock, "locks/.write-probe-1234"),
            None
        );
    }
}
