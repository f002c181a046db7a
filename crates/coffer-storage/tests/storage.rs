//! Integration tests of `coffer-storage`: the shared backend suite against the local file system
//! backend, the in-memory reference backend and real servers started on 127.0.0.1 (moto for S3,
//! Azurite, gcp-storage-emulator, OpenSSH's sshd for SFTP), plus local-layout specifics, the
//! proof that large S3 packs use multipart uploads, clear errors for a missing bucket, bad
//! credentials and an unreachable host, and a backend that fails 10% of its requests.

use bytes::Bytes;
use coffer_core::memory::MemoryBackend;
use coffer_core::{object_path, Backend, ErrorKind, FileType, Id};
use coffer_storage::{open, Location, StorageOptions};
use coffer_testkit::backend_suite;
use coffer_testkit::servers::{self, AzureServer, GcsServer, S3Server, SftpServer};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn open_local(path: &Path) -> Arc<dyn Backend> {
    open(
        path.to_str().expect("utf-8 temp path"),
        &StorageOptions::default(),
    )
    .await
    .expect("open local repository")
}

/// Every regular file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(base, &path, out);
            } else {
                out.push(
                    path.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_backend_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let backend = open_local(&root).await;
    backend_suite::run_all(backend).await;
    // Everything the suite wrote was removed, and no temporary file was left behind.
    let left: Vec<_> = files_under(&root);
    assert!(left.is_empty(), "files left after the suite: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backend_with_one_connection_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StorageOptions {
        connections: 1,
        ..Default::default()
    };
    let backend = open(dir.path().to_str().unwrap(), &opts).await.unwrap();
    backend_suite::run_all(backend).await;
}

#[tokio::test]
async fn memory_backend_passes_the_suite() {
    backend_suite::run_all(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test]
async fn missing_folder_reads_not_found_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("does/not/exist");
    let backend = open_local(&root).await;

    let err = backend.read(FileType::Config, &Id::ZERO).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    let err = backend
        .read_range(FileType::Pack, &Id::random(), 0, 1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    assert_eq!(
        backend.stat(FileType::Config, &Id::ZERO).await.unwrap(),
        None
    );
    for ft in FileType::ALL {
        assert!(backend.list(ft).await.unwrap().is_empty());
    }
    backend.remove(FileType::Lock, &Id::random()).await.unwrap();
    // Writing before `create` does not conjure up a repository either.
    let err = backend
        .write(FileType::Config, &Id::ZERO, Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    assert!(
        !dir.path().join("does").exists(),
        "opening or reading created the folder"
    );

    backend.create().await.unwrap();
    assert!(root.join("data/ff").is_dir());
    backend
        .write(FileType::Config, &Id::ZERO, Bytes::from_static(b"cfg"))
        .await
        .unwrap();
    assert_eq!(
        backend.read(FileType::Config, &Id::ZERO).await.unwrap(),
        Bytes::from_static(b"cfg")
    );
}

#[tokio::test]
async fn existing_empty_folder_is_left_untouched_by_reads() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open_local(dir.path()).await;
    let err = backend.read(FileType::Config, &Id::ZERO).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    assert!(backend.list(FileType::Pack).await.unwrap().is_empty());
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(entries.is_empty(), "reading created {entries:?}");
}

#[tokio::test]
async fn create_makes_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let backend = open_local(&root).await;
    backend.create().await.unwrap();
    for sub in ["keys", "index", "snapshots", "locks", "data"] {
        assert!(root.join(sub).is_dir(), "{sub} missing");
    }
    for b in 0..=255u8 {
        assert!(
            root.join(format!("data/{b:02x}")).is_dir(),
            "data/{b:02x} missing"
        );
    }
    assert!(
        files_under(&root).is_empty(),
        "create left files: {:?}",
        files_under(&root)
    );
}

#[tokio::test]
async fn file_url_works() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("url repo");
    let url = format!("file://{}", root.to_str().unwrap().replace(' ', "%20"));
    let backend = open(&url, &StorageOptions::default()).await.unwrap();
    assert_eq!(backend.location(), root.display().to_string());
    backend.create().await.unwrap();
    let data = Bytes::from_static(b"key material");
    let id = Id::random();
    backend
        .write(FileType::Key, &id, data.clone())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(root.join(object_path(FileType::Key, &id))).unwrap(),
        data
    );
    assert_eq!(backend.read(FileType::Key, &id).await.unwrap(), data);
    assert_eq!(
        backend.list(FileType::Key).await.unwrap(),
        vec![(id, data.len() as u64)]
    );
}

#[tokio::test]
async fn relative_path_location_is_absolute() {
    let backend = open("some/relative/repo", &StorageOptions::default())
        .await
        .unwrap();
    let location = backend.location();
    assert!(Path::new(&location).is_absolute(), "{location}");
    assert!(location.ends_with("some/relative/repo"), "{location}");
    assert!(
        !Path::new("some").exists(),
        "opening a relative path created it"
    );
}

#[tokio::test]
async fn unsupported_schemes_are_rejected() {
    for (url, scheme) in [
        ("b2://bucket/repo", "b2"),
        ("swift://container/repo", "swift"),
        ("rest://host/repo", "rest"),
        ("rclone:remote:path", "rclone"),
    ] {
        let err = match open(url, &StorageOptions::default()).await {
            Ok(b) => panic!("{url} opened as {}", b.location()),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{url}: {err:?}");
        let want = format!("{scheme}:// repositories are not supported by this build");
        assert!(err.to_string().contains(&want), "{url}: {err}");
        assert!(matches!(Location::parse(url), Err(e) if e.kind() == ErrorKind::Unsupported));
    }
    let err = open("nosuch://x", &StorageOptions::default())
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    let err = open("", &StorageOptions::default()).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// How many pages of the file at `path` are in the page cache (Linux's `cachestat`, 6.5+).
#[cfg(target_os = "linux")]
fn cached_pages(path: &Path) -> u64 {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // The range: offset, length (0: to the end); the answer: nr_cache first.
    let range = [0u64, 0];
    let mut stat = [0u64; 5];
    // SAFETY: the kernel reads `range` and writes `stat`, both live for the call.
    let rc = unsafe {
        libc::syscall(
            451, // cachestat
            f.as_raw_fd() as libc::c_uint,
            range.as_ptr(),
            stat.as_mut_ptr(),
            0 as libc::c_uint,
        )
    };
    assert_eq!(rc, 0, "cachestat: {}", std::io::Error::last_os_error());
    stat[0]
}

/// A pack written to a local repository leaves the page cache once it is synced (a backup
/// does not fill the cache with its own output); other objects, read again soon, stay.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_packs_leave_the_page_cache() {
    // On a disk-backed file system: tmpfs (Debian's /tmp) keeps its pages.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = dir.path().join("repo");
    let backend = open_local(&root).await;
    backend.create().await.unwrap();
    let data = Bytes::from(
        (0..4u32 << 20)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    let pack = Id::sha256(&data);
    backend
        .write(FileType::Pack, &pack, data.clone())
        .await
        .unwrap();
    let index = Id::sha256(b"index");
    backend
        .write(FileType::Index, &index, data.clone())
        .await
        .unwrap();
    assert_eq!(
        cached_pages(&root.join(object_path(FileType::Pack, &pack))),
        0,
        "pages of a written pack are still cached"
    );
    assert!(
        cached_pages(&root.join(object_path(FileType::Index, &index))) > 0,
        "an index file was dropped from the cache too (or nothing is cached here)"
    );
    assert_eq!(backend.read(FileType::Pack, &pack).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_temp_files_visible_after_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let backend = open_local(&root).await;
    backend.create().await.unwrap();
    let mut written = Vec::new();
    for i in 0..40u32 {
        let data = Bytes::from(vec![i as u8; 1000 + i as usize]);
        let id = Id::sha256(&data);
        backend
            .write(FileType::Pack, &id, data.clone())
            .await
            .unwrap();
        // Rewrite some, as a retried upload would.
        if i % 5 == 0 {
            backend
                .write(FileType::Pack, &id, data.clone())
                .await
                .unwrap();
        }
        written.push((id, data.len() as u64));
    }
    written.sort();
    let mut listed = backend.list(FileType::Pack).await.unwrap();
    listed.sort();
    assert_eq!(listed, written);
    // The temporary folder exists and is empty; every file on disk is an object.
    assert!(root.join(".tmp").is_dir());
    assert!(files_under(&root.join(".tmp")).is_empty());
    let mut on_disk = files_under(&root);
    on_disk.retain(|p| !p.starts_with(".tmp"));
    let mut expected: Vec<_> = written
        .iter()
        .map(|(id, _)| object_path(FileType::Pack, id))
        .collect();
    expected.sort();
    assert_eq!(on_disk, expected);
}

#[tokio::test]
async fn stray_files_in_object_folders_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let backend = open_local(&root).await;
    backend.create().await.unwrap();

    let data = Bytes::from_static(b"a real pack");
    let id = Id::sha256(&data);
    backend
        .write(FileType::Pack, &id, data.clone())
        .await
        .unwrap();
    let hex = id.to_hex();

    let other = Id::random().to_hex();
    let strays = [
        "data/ab/not-an-id".to_string(),
        format!("data/ab/ab{}", &other[2..63]), // 63 digits
        format!("data/ab/{}.tmp", "ab".repeat(32)), // temp-file style suffix
        format!("data/{}/{}", &hex[..2], hex.to_uppercase()), // not canonical
        format!(
            "data/00/{}",
            if hex.starts_with("00") { &other } else { &hex }
        ), // wrong folder
        format!("data/{hex}"),                  // not in a subfolder
        "keys/README".to_string(),
        format!("keys/sub/{other}"),
        format!("index/{other}.partial"),
    ];
    for stray in &strays {
        let p = root.join(stray);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"junk").unwrap();
    }
    assert_eq!(
        backend.list(FileType::Pack).await.unwrap(),
        vec![(id, data.len() as u64)]
    );
    assert!(backend.list(FileType::Key).await.unwrap().is_empty());
    assert!(backend.list(FileType::Index).await.unwrap().is_empty());
    assert_eq!(backend.read(FileType::Pack, &id).await.unwrap(), data);
}

#[tokio::test]
async fn root_that_is_a_file_is_a_storage_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a repository").unwrap();
    let backend = open_local(&file).await;
    let err = backend.read(FileType::Config, &Id::ZERO).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err:?}");
    assert!(backend.create().await.is_err());
}

#[cfg(unix)]
#[tokio::test]
async fn create_fails_clearly_on_a_read_only_location() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Privileged users ignore permissions; nothing to test then.
    if std::fs::write(ro.join("probe"), b"x").is_ok() {
        return;
    }
    let backend = open_local(&ro.join("repo")).await;
    let err = backend.create().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err:?}");
    assert!(
        err.to_string().contains("cannot create repository folder"),
        "{err}"
    );
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Remote backends against real servers.

/// Options for tests: the server's settings, quick retries.
fn remote_opts(extra: BTreeMap<String, String>) -> StorageOptions {
    StorageOptions {
        extra,
        retries: 4,
        retry_min_delay: Duration::from_millis(50),
        retry_max_delay: Duration::from_millis(500),
        ..Default::default()
    }
}

/// Options that give up quickly (for error tests): 2 retries, short timeouts.
fn impatient_opts(extra: BTreeMap<String, String>) -> StorageOptions {
    StorageOptions {
        extra,
        retries: 2,
        retry_min_delay: Duration::from_millis(50),
        retry_max_delay: Duration::from_millis(200),
        timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

async fn open_remote(url: &str, opts: &StorageOptions) -> Arc<dyn Backend> {
    open(url, opts)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e:?}"))
}

/// `create()` fails within `limit`; returns the error's message.
async fn create_fails(backend: &Arc<dyn Backend>, limit: Duration) -> (ErrorKind, String) {
    let start = Instant::now();
    let err = match backend.create().await {
        Ok(()) => panic!("create() on {} succeeded", backend.location()),
        Err(e) => e,
    };
    let took = start.elapsed();
    eprintln!(
        "create() on {} failed after {took:?}: {err}",
        backend.location()
    );
    assert!(
        took < limit,
        "create() on {} took {took:?} to fail: {err}",
        backend.location()
    );
    (err.kind(), err.to_string())
}

/// Secrets of the test servers that must never show up in a location or a message.
const SECRETS: &[&str] = &["coffer-test-secret", servers::AZURITE_KEY, "SUPERSECRETSIG"];

fn assert_no_secret(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "a secret leaked into: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_backend_on_moto() {
    let server = S3Server::start();
    let opts = remote_opts(server.options());

    let backend = open_remote(&server.url("suite"), &opts).await;
    assert_eq!(backend.location(), "s3://coffer-test/suite");
    backend_suite::run_all(backend.clone()).await;

    // Packs above the multipart threshold go up in parts: moto, like S3, gives an object
    // uploaded in N parts the ETag "<md5 of the part md5s>-N". 20 MiB in 8 MiB parts: 3 parts.
    let big = backend_suite::test_data(20 * 1024 * 1024, 7);
    let big_id = Id::sha256(&big);
    backend
        .write(FileType::Pack, &big_id, big.clone())
        .await
        .unwrap();
    let key = format!("suite/{}", object_path(FileType::Pack, &big_id));
    let head = server.head_object(&server.bucket, &key);
    let etag = head.header("etag").unwrap_or_default().trim_matches('"');
    assert!(
        etag.ends_with("-3"),
        "a 20 MiB pack was not uploaded in 3 parts (ETag {etag:?})"
    );
    assert_eq!(
        head.header("content-type"),
        Some("application/octet-stream")
    );
    // A small pack is one PutObject: a plain MD5 ETag.
    let small = backend_suite::test_data(100_000, 8);
    let small_id = Id::sha256(&small);
    backend
        .write(FileType::Pack, &small_id, small.clone())
        .await
        .unwrap();
    let key = format!("suite/{}", object_path(FileType::Pack, &small_id));
    let etag = server.head_object(&server.bucket, &key);
    let etag = etag.header("etag").unwrap_or_default().trim_matches('"');
    assert!(
        etag.len() == 32 && !etag.contains('-'),
        "a small pack has the ETag {etag:?}"
    );
    assert_eq!(backend.read(FileType::Pack, &big_id).await.unwrap(), big);
    backend.remove(FileType::Pack, &big_id).await.unwrap();
    backend.remove(FileType::Pack, &small_id).await.unwrap();

    // A lower threshold and smaller parts are honoured (S3's 5 MiB minimum part size aside).
    let opts_small_parts = StorageOptions {
        multipart_threshold: 1024 * 1024,
        multipart_part_size: 1024 * 1024,
        ..remote_opts(server.options())
    };
    let b2 = open_remote(&server.url("parts"), &opts_small_parts).await;
    let data = backend_suite::test_data(12 * 1024 * 1024, 9);
    let id = Id::sha256(&data);
    b2.write(FileType::Pack, &id, data.clone()).await.unwrap();
    let key = format!("parts/{}", object_path(FileType::Pack, &id));
    let etag = server.head_object(&server.bucket, &key);
    let etag = etag.header("etag").unwrap_or_default().trim_matches('"');
    assert!(etag.ends_with("-3"), "12 MiB in 5 MiB parts: ETag {etag:?}");
    assert_eq!(b2.read(FileType::Pack, &id).await.unwrap(), data);

    // A bucket that does not exist is named as such by `create`.
    let missing = open_remote(
        "s3://no-such-bucket/repo",
        &impatient_opts(server.options()),
    )
    .await;
    assert_eq!(
        missing.stat(FileType::Config, &Id::ZERO).await.unwrap(),
        None
    );
    let (kind, msg) = create_fails(&missing, Duration::from_secs(10)).await;
    assert_eq!(kind, ErrorKind::NotFound, "{msg}");
    assert!(
        msg.contains("the S3 bucket \"no-such-bucket\" does not exist"),
        "{msg}"
    );
    assert_no_secret(&msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bad_credentials_are_reported() {
    let server = S3Server::start_with_auth();
    let backend = open_remote(&server.url("repo"), &impatient_opts(server.options())).await;
    let (kind, msg) = create_fails(&backend, Duration::from_secs(10)).await;
    assert_eq!(kind, ErrorKind::PermissionDenied, "{msg}");
    assert!(
        msg.contains("access to s3://coffer-test/repo at http://127.0.0.1:")
            && msg.contains("was denied: bad credentials or missing permission"),
        "{msg}"
    );
    assert!(msg.contains("AWS_ACCESS_KEY_ID"), "{msg}");
    assert_no_secret(&msg);
    // Reads say so too (this is what `init` and every other command hit first).
    let err = backend.stat(FileType::Config, &Id::ZERO).await.unwrap_err();
    assert!(err.to_string().contains("bad credentials"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_backend_on_azurite() {
    let server = AzureServer::start();
    let opts = remote_opts(server.options());
    let backend = open_remote(&server.url("suite"), &opts).await;
    assert_eq!(backend.location(), "az://coffer-test/suite");
    backend_suite::run_all(backend).await;

    // A connection string works as well, and its key stays out of the location.
    let mut by_conn = BTreeMap::new();
    by_conn.insert(
        "az.connection_string".to_string(),
        server.connection_string(),
    );
    let backend = open_remote(&server.url("conn"), &remote_opts(by_conn)).await;
    backend.create().await.unwrap();
    let data = backend_suite::test_data(1000, 1);
    let id = Id::random();
    backend
        .write(FileType::Key, &id, data.clone())
        .await
        .unwrap();
    assert_eq!(backend.read(FileType::Key, &id).await.unwrap(), data);
    assert_eq!(backend.location(), "az://coffer-test/conn");
    backend.remove(FileType::Key, &id).await.unwrap();

    // A missing container.
    let missing = open_remote(
        "az://no-such-container/r",
        &impatient_opts(server.options()),
    )
    .await;
    let (kind, msg) = create_fails(&missing, Duration::from_secs(10)).await;
    assert_eq!(kind, ErrorKind::NotFound, "{msg}");
    assert!(
        msg.contains("the Azure Blob Storage container \"no-such-container\" does not exist"),
        "{msg}"
    );
    assert_no_secret(&msg);

    // A wrong account key.
    let mut bad = server.options();
    bad.insert(
        "az.key".to_string(),
        "d3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmc=".to_string(),
    );
    let backend = open_remote(&server.url("repo"), &impatient_opts(bad)).await;
    let (kind, msg) = create_fails(&backend, Duration::from_secs(10)).await;
    assert_eq!(kind, ErrorKind::PermissionDenied, "{msg}");
    assert!(
        msg.contains("was denied: bad credentials or missing permission"),
        "{msg}"
    );
    assert!(msg.contains("AZURE_STORAGE_KEY"), "{msg}");
    assert_no_secret(&msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gcs_backend_on_the_emulator() {
    let server = GcsServer::start();
    let opts = remote_opts(server.options());
    let backend = open_remote(&server.url("suite"), &opts).await;
    assert_eq!(backend.location(), "gs://coffer-test/suite");
    // The suite writes a 20 MiB object: the emulator has no multipart API, so this also shows
    // that GCS writes go in one request.
    backend_suite::run_all(backend).await;

    let missing = open_remote("gs://no-such-bucket/r", &impatient_opts(server.options())).await;
    let (kind, msg) = create_fails(&missing, Duration::from_secs(10)).await;
    assert_eq!(kind, ErrorKind::NotFound, "{msg}");
    assert!(
        msg.contains("the Google Cloud Storage bucket \"no-such-bucket\" does not exist"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sftp_backend_on_sshd() {
    let server = SftpServer::start();
    let opts = remote_opts(server.options());
    let url = server.url("suite");
    let backend = open_remote(&url, &opts).await;
    assert_eq!(backend.location(), url);
    backend_suite::run_all(backend.clone()).await;
    // Objects were written through the temporary folder and renamed: nothing is left there.
    let root = server.data_dir().join("suite");
    assert!(root.join("data/ff").is_dir(), "create made no layout");
    let left = files_under(&root);
    assert!(left.is_empty(), "files left after the suite: {left:?}");
    // Dropping the backend closes its ssh connections: no ssh process stays behind.
    assert!(
        !server.client_processes().is_empty(),
        "no ssh client process found while the backend is open"
    );
    drop(backend);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.client_processes().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.client_processes(),
        Vec::<u32>::new(),
        "ssh processes left after the backend was dropped"
    );

    // A host whose key is not in known_hosts (the server's key is known as 127.0.0.1 only).
    let url = format!(
        "sftp://{}@localhost:{}{}/hostkey",
        server.user,
        server.port,
        server.data_dir().display()
    );
    let backend = open_remote(&url, &impatient_opts(server.options())).await;
    let (kind, msg) = create_fails(&backend, Duration::from_secs(20)).await;
    assert_eq!(kind, ErrorKind::Storage, "{msg}");
    assert!(
        msg.contains("the ssh host key of sftp://") && msg.contains("is not trusted"),
        "{msg}"
    );
    drop(backend);

    // A key the server does not accept.
    let mut bad = server.options();
    bad.insert(
        "sftp.key_file".to_string(),
        server.unauthorized_key_file().display().to_string(),
    );
    let backend = open_remote(&server.url("denied"), &impatient_opts(bad)).await;
    let (kind, msg) = create_fails(&backend, Duration::from_secs(20)).await;
    assert_eq!(kind, ErrorKind::PermissionDenied, "{msg}");
    assert!(
        msg.contains("was denied: bad credentials or missing permission"),
        "{msg}"
    );

    // Nothing listens on the port.
    let url = format!(
        "sftp://{}@127.0.0.1:{}/tmp/r",
        server.user,
        servers::closed_port()
    );
    let backend = open_remote(&url, &impatient_opts(server.options())).await;
    let (kind, msg) = create_fails(&backend, Duration::from_secs(20)).await;
    assert_eq!(kind, ErrorKind::Storage, "{msg}");
    assert!(
        msg.contains("cannot reach the SFTP server at sftp://")
            && msg.contains("(connection refused)"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_hosts_fail_clearly_after_bounded_retries() {
    let port = servers::closed_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    // (URL, options, expected start of the message)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "s3://bucket/repo",
            vec![
                ("s3.endpoint", endpoint.clone()),
                ("s3.access_key_id", "id".into()),
                ("s3.secret_access_key", "coffer-test-secret".into()),
            ],
            "cannot reach the S3 server at http://127.0.0.1:",
        ),
        (
            "az://container/repo",
            vec![
                ("az.account", "devstoreaccount1".into()),
                ("az.key", servers::AZURITE_KEY.into()),
                ("az.endpoint", format!("{endpoint}/devstoreaccount1")),
            ],
            "cannot reach the Azure Blob Storage server at http://127.0.0.1:",
        ),
        (
            "gs://bucket/repo",
            vec![
                ("gs.endpoint", endpoint.clone()),
                ("gs.anonymous", "true".into()),
            ],
            "cannot reach the Google Cloud Storage server at http://127.0.0.1:",
        ),
    ];
    for (url, extra, want) in cases {
        let extra = extra.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let backend = open_remote(url, &impatient_opts(extra)).await;
        let (kind, msg) = create_fails(&backend, Duration::from_secs(15)).await;
        assert_eq!(kind, ErrorKind::Storage, "{url}: {msg}");
        assert!(msg.contains(want), "{url}: {msg}");
        assert!(msg.contains("(connection refused)"), "{url}: {msg}");
        assert_no_secret(&msg);
        // Reads fail the same way (and do not pretend the repository is merely missing).
        let err = backend.stat(FileType::Config, &Id::ZERO).await.unwrap_err();
        assert!(err.to_string().contains(want), "{url}: {err}");
        assert_no_secret(&err.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out() {
    // The port accepts connections (the kernel completes them) but nobody ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut extra = BTreeMap::new();
    for (k, v) in [
        ("s3.endpoint", format!("http://127.0.0.1:{port}")),
        ("s3.access_key_id", "id".to_string()),
        ("s3.secret_access_key", "coffer-test-secret".to_string()),
    ] {
        extra.insert(k.to_string(), v);
    }
    let opts = StorageOptions {
        timeout: Duration::from_secs(1),
        io_timeout: Duration::from_secs(1),
        retries: 1,
        ..impatient_opts(extra)
    };
    let backend = open_remote("s3://bucket/repo", &opts).await;
    let (kind, msg) = create_fails(&backend, Duration::from_secs(15)).await;
    assert_eq!(kind, ErrorKind::Storage, "{msg}");
    assert!(
        msg.contains("cannot reach the S3 server at http://127.0.0.1:")
            && msg.contains("(timed out)"),
        "{msg}"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flaky_backends_pass_the_suite_thanks_to_retries() {
    // 10% of requests fail with a temporary error before reaching the storage.
    let flaky = |extra| StorageOptions {
        faults_per_thousand: 100,
        retries: 10,
        retry_min_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(50),
        ..remote_opts(extra)
    };

    // Without retries the faults show: they are really injected.
    let dir = tempfile::tempdir().unwrap();
    let no_retry = StorageOptions {
        retries: 0,
        ..flaky(BTreeMap::new())
    };
    let backend = open(dir.path().to_str().unwrap(), &no_retry).await.unwrap();
    let mut failures = 0;
    for _ in 0..100 {
        if let Err(e) = backend.stat(FileType::Config, &Id::ZERO).await {
            assert!(format!("{e:#}").contains("injected fault"), "{e:#}");
            failures += 1;
        }
    }
    assert!(
        (1..40).contains(&failures),
        "{failures} of 100 stats failed"
    );

    // With retries, a local and an S3 backend pass the whole suite.
    let backend = open(
        dir.path().join("repo").to_str().unwrap(),
        &flaky(BTreeMap::new()),
    )
    .await
    .unwrap();
    backend_suite::run_all(backend).await;

    let server = S3Server::start();
    let backend = open_remote(&server.url("flaky"), &flaky(server.options())).await;
    backend_suite::run_all(backend).await;
}

#[tokio::test]
async fn locations_and_debug_output_hold_no_secret() {
    let mut opts = StorageOptions::default();
    opts.set("s3.access_key_id", "AKIDEXAMPLE").unwrap();
    opts.set("s3.secret_access_key", "coffer-test-secret")
        .unwrap();
    opts.set("s3.endpoint", "http://127.0.0.1:9").unwrap();
    let backend = open("s3://bucket/prefix", &opts).await.unwrap();
    assert_eq!(backend.location(), "s3://bucket/prefix");
    assert_no_secret(&format!("{opts:?}"));

    let mut opts = StorageOptions::default();
    opts.set(
        "az.connection_string",
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={};\
             BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;",
            servers::AZURITE_KEY
        ),
    )
    .unwrap();
    let backend = open("az://container/p", &opts).await.unwrap();
    assert_eq!(backend.location(), "az://container/p");
    assert_no_secret(&format!("{opts:?}"));

    // Unknown options are refused, naming the known ones.
    let mut opts = StorageOptions::default();
    opts.extra.insert("s3.regoin".into(), "x".into());
    let err = open("s3://b/p", &opts).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("s3.region"), "{err}");
}
