//! S3 Object Lock: every object but the repository's lock files is written with a retention
//! period (`x-amz-object-lock-mode` and `x-amz-object-lock-retain-until-date`), so that a
//! stolen key cannot delete a version of it before the period ends.
//!
//! OpenDAL's S3 service has no setting for these headers, so they are added by an HTTP
//! transport ([`LockingTransport`]) that sits under the S3 operator. S3 refuses unsigned `x-amz-*`
//! headers, so the transport signs such a request again (AWS SigV4, with the same credential
//! sources OpenDAL uses) after adding them. S3 also requires a checksum on locked uploads:
//! the operator is built with OpenDAL's `crc32c` checksum (`x-amz-checksum-crc32c` on every
//! PutObject and UploadPart), and the transport names the algorithm
//! (`x-amz-sdk-checksum-algorithm`) on PutObject as the AWS SDKs do. A multipart upload gets
//! the headers on CreateMultipartUpload, and once it completes the backend sets the retention
//! again with PutObjectRetention ([`Locker::confirm_retention`]), for servers that ignore them
//! there (moto does).
//!
//! Before its first write a backend asks the bucket for its Object Lock configuration
//! (`GET /?object-lock`), so that a bucket without Object Lock fails up front with a message
//! naming it ([`Locker::verify_bucket`]).
//!
//! Deduplication reuses old objects, whose retention nobody renews: [`extend_retention`] (the
//! `extend-lock` command) moves the retention of every current object to now plus the period,
//! as kopia's maintenance does, with HeadObject and PutObjectRetention requests signed the
//! same way.

use crate::StorageOptions;
use chrono::{DateTime, Timelike as _, Utc};
use coffer_core::{Error, ErrorKind, Result};
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use http::{Method, Request, Response};
use opendal::{Buffer, HttpBody, HttpTransport, HttpTransporter};
use reqsign_aws_v4::{Credential, DefaultCredentialProvider, StaticCredentialProvider};
use reqsign_core::{Context, OsEnv, ProvideCredentialChain, Signer};
use std::sync::Arc;
use std::time::Duration;

/// The storage option holding a retention period (same syntax as `--object-lock`).
pub(crate) const DURATION_KEY: &str = "s3.object_lock";
/// The storage option choosing the retention mode.
pub(crate) const MODE_KEY: &str = "s3.object_lock_mode";

/// What is percent-encoded in an object key in a URL path: all but unreserved characters and
/// `/` (as OpenDAL's S3 service does).
const KEY_ENCODE_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The longest retention accepted (100 years); S3 itself caps retention periods near there.
const MAX_RETENTION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses a retention period: a whole number followed by `h` (hours), `d` (days), `w` (weeks)
/// or `y` (years of 365 days), e.g. `30d`, `12h`, `2w`, `1y`. Zero and other forms are an
/// [`ErrorKind::InvalidInput`] error saying what is accepted.
pub fn parse_retention(text: &str) -> Result<Duration> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "invalid Object Lock retention {text:?}: {why}; write a whole number followed by \
             h, d, w or y (hours, days, weeks, years), e.g. 30d, 12h, 2w, 1y"
        ))
    };
    let t = text.trim();
    let Some(unit) = t.chars().last() else {
        return Err(bad("it is empty"));
    };
    let number = &t[..t.len() - unit.len_utf8()];
    let seconds: u64 = match unit.to_ascii_lowercase() {
        'h' => 3_600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'y' => 365 * 86_400,
        _ => return Err(bad("the unit is missing or unknown")),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the number is missing or not a whole number"));
    }
    let n: u64 = number.parse().map_err(|_| bad("the number is too large"))?;
    if n == 0 {
        return Err(bad(
            "a retention of zero locks nothing (leave --object-lock out instead)",
        ));
    }
    let total = n
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .filter(|d| *d <= MAX_RETENTION)
        .ok_or_else(|| bad("it is longer than 100 years"))?;
    Ok(total)
}

/// How strictly S3 holds a locked object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can still delete or shorten the lock.
    Governance,
    /// Nobody, the root account included, can delete the version or shorten the lock.
    Compliance,
}

impl LockMode {
    /// Parses `governance` or `compliance` (any case).
    pub fn parse(text: &str) -> Result<LockMode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "governance" => Ok(LockMode::Governance),
            "compliance" => Ok(LockMode::Compliance),
            _ => Err(Error::invalid(format!(
                "storage option {MODE_KEY} must be governance or compliance, not {text:?}"
            ))),
        }
    }

    /// The value of `x-amz-object-lock-mode`.
    fn header_value(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// The retention every new object gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LockSettings {
    /// How long from the upload.
    pub(crate) retention: Duration,
    /// Governance (default) or compliance.
    pub(crate) mode: LockMode,
}

impl LockSettings {
    /// The settings asked for by `opts` (`object_lock`, else the `s3.object_lock` option), or
    /// `None` when no retention is set.
    pub(crate) fn from_options(opts: &StorageOptions) -> Result<Option<LockSettings>> {
        let mode = match opts.extra.get(MODE_KEY).filter(|v| !v.trim().is_empty()) {
            Some(v) => LockMode::parse(v)?,
            None => LockMode::Governance,
        };
        let retention = match opts.object_lock {
            Some(d) if d.is_zero() => {
                return Err(Error::invalid(
                    "an Object Lock retention of zero locks nothing",
                ))
            }
            Some(d) => Some(d),
            None => match opts
                .extra
                .get(DURATION_KEY)
                .filter(|v| !v.trim().is_empty())
            {
                Some(v) => Some(parse_retention(v)?),
                None => None,
            },
        };
        Ok(retention.map(|retention| LockSettings { retention, mode }))
    }
}

/// Refuses `--object-lock` (the [`StorageOptions::object_lock`] field) on a location that is not
/// on S3. The `s3.object_lock` option is ignored there, as every option of another scheme is.
pub(crate) fn require_s3(location: &crate::Location, opts: &StorageOptions) -> Result<()> {
    if opts.object_lock.is_none() || matches!(location, crate::Location::S3 { .. }) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Unsupported,
        format!(
            "--object-lock works only on S3 (s3://BUCKET/PREFIX on a bucket with Object Lock \
             enabled), not on {location}: leave --object-lock (and COFFER_OBJECT_LOCK) out for \
             this repository"
        ),
    ))
}

/// Where the S3 repository is and how to sign for it: what [`Locker`] needs.
pub(crate) struct S3Target {
    /// The bucket.
    pub(crate) bucket: String,
    /// The folder in the bucket, without leading or trailing `/`.
    pub(crate) prefix: String,
    /// The endpoint URL as configured (`None`: AWS).
    pub(crate) endpoint: Option<String>,
    /// The region.
    pub(crate) region: String,
    /// Path-style addressing.
    pub(crate) path_style: bool,
    /// Static credentials (access key id, secret, session token).
    pub(crate) keys: Option<(String, String, Option<String>)>,
    /// A profile of `~/.aws/config`.
    pub(crate) profile: Option<String>,
    /// Requests go unsigned.
    pub(crate) anonymous: bool,
}

/// Adds retention headers to uploads and checks the bucket; shared by the transport and the
/// backend.
pub(crate) struct Locker {
    settings: LockSettings,
    /// Signs requests again after the headers are added (`None`: anonymous).
    signer: Option<Signer<Credential>>,
    /// Sends requests (reqwest).
    http: HttpTransporter,
    /// The URL path, as decoded, of the folder holding lock files, e.g. `/bucket/repo/locks`
    /// (path style) or `/repo/locks` (virtual-host style): objects right inside it are not
    /// locked, since the repository deletes them routinely.
    locks_dir_suffix: String,
    /// `https://…/bucket` (path style) or `https://bucket.…`: where `?object-lock` is asked.
    bucket_url: String,
    /// The repository's folder in the bucket, with a trailing `/` (empty at the root).
    prefix: String,
    bucket: String,
    /// For messages.
    endpoint_shown: String,
}

impl Locker {
    /// A locker for `target`, sending with `http`.
    pub(crate) fn new(
        settings: LockSettings,
        target: &S3Target,
        http: HttpTransporter,
        endpoint_shown: String,
    ) -> Result<Locker> {
        let signer = (!target.anonymous).then(|| {
            let ctx = Context::new()
                .with_file_read(reqsign_file_read_tokio::TokioFileRead)
                .with_http_send(http.clone())
                .with_env(OsEnv);
            let mut default = DefaultCredentialProvider::builder();
            if let Some(profile) = target.profile.as_deref().filter(|p| !p.is_empty()) {
                default = default.with_profile(profile);
            }
            let mut chain = ProvideCredentialChain::new().push(default.build());
            if let Some((id, secret, token)) = &target.keys {
                let provider = match token {
                    Some(token) => {
                        StaticCredentialProvider::new(id, secret).with_session_token(token)
                    }
                    None => StaticCredentialProvider::new(id, secret),
                };
                chain = chain.push_front(provider);
            }
            Signer::new(
                ctx,
                chain,
                reqsign_aws_v4::RequestSigner::new("s3", &target.region),
            )
        });
        let prefix: String = target
            .prefix
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| format!("{s}/"))
            .collect();
        let base = target
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", target.region));
        let base = base.trim_end_matches('/').to_string();
        let (bucket_url, locks_dir_suffix) = if target.path_style {
            (
                format!("{base}/{}", target.bucket),
                format!("/{}/{prefix}locks", target.bucket),
            )
        } else {
            let url = match base.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://{}.{rest}", target.bucket),
                None => format!("https://{}.{base}", target.bucket),
            };
            (url, format!("/{prefix}locks"))
        };
        Ok(Locker {
            settings,
            signer,
            http,
            locks_dir_suffix,
            bucket_url,
            prefix,
            bucket: target.bucket.clone(),
            endpoint_shown,
        })
    }

    /// Whether `req` uploads an object that must be locked: a PutObject (a `PUT` without
    /// sub-resource or copy source) or a CreateMultipartUpload (`POST ?uploads`), of anything
    /// but a lock file.
    fn wants_lock<T>(&self, req: &Request<T>) -> bool {
        let query = req.uri().query().unwrap_or("");
        let upload = match *req.method() {
            Method::PUT => query.is_empty() && !req.headers().contains_key("x-amz-copy-source"),
            Method::POST => query == "uploads" || query == "uploads=",
            _ => false,
        };
        if !upload {
            return false;
        }
        let path = percent_encoding::percent_decode_str(req.uri().path()).decode_utf8_lossy();
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        !dir.ends_with(&self.locks_dir_suffix)
    }

    /// The retain-until date for an upload starting now (RFC 3339, UTC, whole seconds).
    fn retain_until(&self) -> String {
        let until = chrono::Utc::now()
            + chrono::Duration::from_std(self.settings.retention).unwrap_or(chrono::Duration::MAX);
        until.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// Adds the retention headers to `req` and signs it again.
    async fn lock(&self, req: Request<Buffer>) -> opendal::Result<Request<Buffer>> {
        let (mut parts, body) = req.into_parts();
        let h = &mut parts.headers;
        h.insert(
            HeaderName::from_static("x-amz-object-lock-mode"),
            HeaderValue::from_static(self.settings.mode.header_value()),
        );
        h.insert(
            HeaderName::from_static("x-amz-object-lock-retain-until-date"),
            HeaderValue::from_str(&self.retain_until())
                .map_err(|e| opendal::Error::new(opendal::ErrorKind::Unexpected, e.to_string()))?,
        );
        // PutObject: name the checksum algorithm, as the AWS SDKs do (some servers want it).
        if h.contains_key("x-amz-checksum-crc32c") {
            h.insert(
                HeaderName::from_static("x-amz-sdk-checksum-algorithm"),
                HeaderValue::from_static("CRC32C"),
            );
        }
        if let Some(signer) = &self.signer {
            for name in [
                "x-amz-date",
                "x-amz-security-token",
                "x-amz-s3session-token",
            ] {
                h.remove(name);
            }
            h.remove(AUTHORIZATION);
            h.remove(HOST);
            signer.sign(&mut parts, None).await.map_err(|e| {
                opendal::Error::new(
                    opendal::ErrorKind::Unexpected,
                    "cannot sign the upload again after adding its Object Lock retention",
                )
                .set_source(anyhow_free(e))
                .set_temporary()
            })?;
            parts.headers.remove(HOST);
        }
        Ok(Request::from_parts(parts, body))
    }

    /// Sets the retention of the object at `path` (relative to the repository root) with a
    /// PutObjectRetention request. Used after a multipart upload: S3 takes the retention from
    /// CreateMultipartUpload already, but some S3-compatible servers ignore it there, and an
    /// extension of the period is always allowed.
    pub(crate) async fn confirm_retention(&self, path: &str) -> opendal::Result<()> {
        with_retries(
            &format!("setting the Object Lock retention of {path}"),
            || self.put_retention(path),
        )
        .await
    }

    /// One PutObjectRetention request (see [`Locker::confirm_retention`]).
    async fn put_retention(&self, path: &str) -> opendal::Result<()> {
        self.put_retention_until(path, self.settings.mode, &self.retain_until())
            .await
    }

    /// The URL of the object at `path` (relative to the repository root), without query.
    fn object_url(&self, path: &str) -> String {
        let key = format!("{}{}", self.prefix, path.trim_start_matches('/'));
        format!(
            "{}/{}",
            self.bucket_url,
            percent_encoding::utf8_percent_encode(&key, KEY_ENCODE_SET)
        )
    }

    /// Signs `req` (unless anonymous) and sends it; `what` names it in errors.
    async fn send_signed(
        &self,
        req: Request<Buffer>,
        what: &str,
    ) -> opendal::Result<http::Response<Buffer>> {
        let (mut parts, body) = req.into_parts();
        if let Some(signer) = &self.signer {
            signer.sign(&mut parts, None).await.map_err(|e| {
                opendal::Error::new(
                    opendal::ErrorKind::Unexpected,
                    format!("cannot sign {what}"),
                )
                .set_source(anyhow_free(e))
                .set_temporary()
            })?;
            parts.headers.remove(HOST);
        }
        self.http.send(Request::from_parts(parts, body)).await
    }

    /// One PutObjectRetention request setting the current version of `path` to `mode` until
    /// `until` (RFC 3339).
    async fn put_retention_until(
        &self,
        path: &str,
        mode: LockMode,
        until: &str,
    ) -> opendal::Result<()> {
        use base64::Engine as _;
        use md5::Digest as _;
        let fail = |what: String| opendal::Error::new(opendal::ErrorKind::Unexpected, what);
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode>\
             <RetainUntilDate>{until}</RetainUntilDate></Retention>",
            mode.header_value(),
        );
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
        let url = format!("{}?retention", self.object_url(path));
        let req = Request::put(url)
            .header("content-md5", md5)
            .header("content-type", "application/xml")
            .header("content-length", body.len())
            .body(Buffer::from(body.into_bytes()))
            .map_err(|e| fail(format!("cannot build the retention request of {path}: {e}")))?;
        let resp = self
            .send_signed(req, &format!("the retention request of {path}"))
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&resp.into_body().to_bytes()).into_owned();
        let err = fail(format!(
            "cannot set the Object Lock retention of {path} (PutObjectRetention answered HTTP \
             {status}: {})",
            text.trim()
        ));
        Err(if status.is_server_error() || status.as_u16() == 429 {
            err.set_temporary()
        } else {
            err
        })
    }

    /// Asks the bucket for its Object Lock configuration. A bucket without Object Lock is an
    /// error naming it and what to do; a server that answers something else (no permission to
    /// ask, a missing bucket, an unreachable host) lets the writes go on and report their own
    /// error.
    pub(crate) async fn verify_bucket(&self) -> Result<()> {
        let mut req = Request::get(format!("{}?object-lock", self.bucket_url))
            .body(Buffer::new())
            .map_err(|e| Error::invalid(format!("bad S3 endpoint {}: {e}", self.endpoint_shown)))?;
        if let Some(signer) = &self.signer {
            let (mut parts, body) = req.into_parts();
            if let Err(e) = signer.sign(&mut parts, None).await {
                tracing::debug!(
                    "cannot sign the Object Lock check of bucket {}: {e}",
                    self.bucket
                );
                return Ok(());
            }
            parts.headers.remove(HOST);
            req = Request::from_parts(parts, body);
        }
        let resp = match self.http.send(req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(
                    "cannot ask bucket {} for its Object Lock configuration: {}",
                    self.bucket,
                    e.message()
                );
                return Ok(());
            }
        };
        let status = resp.status().as_u16();
        let body = String::from_utf8_lossy(&resp.into_body().to_bytes()).into_owned();
        match check_answer(status, &body) {
            Answer::Enabled => Ok(()),
            Answer::NotEnabled => Err(self.not_enabled()),
            Answer::Unsupported => Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the S3 server at {} does not support Object Lock (GetObjectLockConfiguration \
                     on bucket {:?} answered HTTP {status}): run without --object-lock, or use a \
                     server that supports it",
                    self.endpoint_shown, self.bucket
                ),
            )),
            Answer::Unknown => {
                if status == 403 {
                    tracing::warn!(
                        "cannot check that bucket {} has Object Lock enabled (no permission \
                         s3:GetBucketObjectLockConfiguration); uploads will fail if it has not",
                        self.bucket
                    );
                }
                Ok(())
            }
        }
    }

    /// The error for a bucket without Object Lock.
    pub(crate) fn not_enabled(&self) -> Error {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "--object-lock needs Object Lock on the bucket, but the S3 bucket {:?} at {} does \
                 not have Object Lock enabled: create the bucket with Object Lock (aws s3api \
                 create-bucket --object-lock-enabled-for-bucket ...), or enable it on this \
                 versioned bucket (aws s3api put-object-lock-configuration --bucket {} \
                 --object-lock-configuration ObjectLockEnabled=Enabled), or run without \
                 --object-lock",
                self.bucket, self.endpoint_shown, self.bucket
            ),
        )
    }
}

/// The retention of an object's current version as HeadObject reports it: its mode and its
/// retain-until date, each `None` when absent.
type CurrentRetention = (Option<LockMode>, Option<DateTime<Utc>>);

/// What happened to one object in [`extend_retention`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Its retain-until date was moved to the new date.
    Extended,
    /// It was already retained until the new date or later: left alone.
    AlreadyLater,
    /// It has no current version any more (deleted since it was listed).
    Gone,
    /// The error.
    Failed(String),
}

/// Runs `op` up to four times while it fails with a temporary error, waiting 0.5 s, 1 s, 2 s
/// between attempts; `what` names it in the warnings.
async fn with_retries<T, F, Fut>(what: &str, mut op: F) -> opendal::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = opendal::Result<T>>,
{
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_temporary() && attempt < 4 => {
                tracing::warn!(
                    "{what} failed temporarily (attempt {attempt}), retrying in {:.1}s: {}",
                    delay.as_secs_f64(),
                    e.message()
                );
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            res => return res,
        }
    }
}

/// Whether an object retained until `current` (`None`: not retained) must be extended to
/// `until`: a retention is never shortened.
fn needs_extension(current: Option<DateTime<Utc>>, until: DateTime<Utc>) -> bool {
    current.is_none_or(|c| c < until)
}

impl Locker {
    /// The retention of the current version of `path` (a HeadObject request), or `None` when
    /// it has no current version (missing, or behind a delete marker).
    async fn head_retention(&self, path: &str) -> opendal::Result<Option<CurrentRetention>> {
        let fail = |what: String| opendal::Error::new(opendal::ErrorKind::Unexpected, what);
        let req = Request::head(self.object_url(path))
            .body(Buffer::new())
            .map_err(|e| fail(format!("cannot build the HEAD request of {path}: {e}")))?;
        let resp = self
            .send_signed(req, &format!("the HEAD request of {path}"))
            .await?;
        let status = resp.status();
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if !status.is_success() {
            let err = fail(format!(
                "cannot read the Object Lock retention of {path} (HeadObject answered HTTP \
                 {status})"
            ));
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                err.set_temporary()
            } else {
                err
            });
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let mode = header("x-amz-object-lock-mode").and_then(|m| LockMode::parse(m).ok());
        let until = match header("x-amz-object-lock-retain-until-date") {
            None => None,
            Some(text) => Some(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|e| {
                        fail(format!(
                            "the retain-until date {text:?} of {path} is not a date: {e}"
                        ))
                    })?
                    .with_timezone(&Utc),
            ),
        };
        Ok(Some((mode, until)))
    }

    /// Moves the retain-until date of the current version of `path` to `until`, unless it is
    /// already that late. The object keeps its lock mode; one without a retention gets the
    /// configured mode.
    async fn extend_one(&self, path: &str, until: DateTime<Utc>) -> Outcome {
        let current = match with_retries(&format!("reading the retention of {path}"), || {
            self.head_retention(path)
        })
        .await
        {
            Err(e) => return Outcome::Failed(e.message().to_string()),
            Ok(None) => return Outcome::Gone,
            Ok(Some(current)) => current,
        };
        if !needs_extension(current.1, until) {
            return Outcome::AlreadyLater;
        }
        let mode = current.0.unwrap_or(self.settings.mode);
        let text = until.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        match with_retries(&format!("extending the retention of {path}"), || {
            self.put_retention_until(path, mode, &text)
        })
        .await
        {
            Ok(()) => Outcome::Extended,
            Err(e) => Outcome::Failed(e.message().to_string()),
        }
    }
}

/// What [`extend_retention`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// The retain-until date asked for: the start of the run plus the period (UTC, whole
    /// seconds).
    pub until: DateTime<Utc>,
    /// The mode given to objects that had no retention (the others keep theirs).
    pub mode: LockMode,
    /// Objects found (the current version of each object but lock files).
    pub objects: usize,
    /// Objects whose retain-until date was moved to [`RetentionReport::until`].
    pub extended: usize,
    /// Objects already retained until then or later, left alone.
    pub already_later: usize,
    /// Objects deleted between the listing and their turn (nothing to extend).
    pub gone: usize,
    /// The objects that could not be extended (path in the repository, error), by path.
    pub failed: Vec<(String, String)>,
}

/// Sets the S3 Object Lock retention of every current object of the repository at `url` to
/// now plus the period of `opts` (`--object-lock` or the `s3.object_lock` option), as kopia's
/// maintenance does, so that objects a deduplicating backup reuses stay protected.
///
/// Every object under the repository's prefix is listed (current versions only: noncurrent
/// versions and objects behind a delete marker are not, so forgotten and pruned data can
/// still expire) except lock files (`locks/`). For each, a HeadObject request reads its
/// retention; a retain-until date already as late as the new one is left alone (S3 never
/// lets a retention be shortened anyway), else a PutObjectRetention request moves it, keeping
/// the object's mode (an object without a retention gets the configured mode). At most
/// [`StorageOptions::connections`] objects are handled at once; temporary errors are
/// retried. Two requests per object extended, one per object left alone.
///
/// Errors: a location not on S3 ([`ErrorKind::Unsupported`]), no period
/// ([`ErrorKind::InvalidInput`]), a bucket without Object Lock, a failed listing. The
/// failures of single objects are in [`RetentionReport::failed`].
pub async fn extend_retention(url: &str, opts: &StorageOptions) -> Result<RetentionReport> {
    use futures::{StreamExt as _, TryStreamExt as _};
    for key in opts.extra.keys() {
        crate::check_key(key)?;
    }
    let location = crate::Location::parse(url)?;
    if !matches!(location, crate::Location::S3 { .. }) {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "extending Object Lock retention works only on S3 repositories \
                 (s3://BUCKET/PREFIX on a bucket with Object Lock), not on {location}"
            ),
        ));
    }
    let settings = LockSettings::from_options(opts)?.ok_or_else(|| {
        Error::invalid(
            "no Object Lock retention period given: set it with --object-lock DURATION (or \
             COFFER_OBJECT_LOCK, or -o s3.object_lock=DURATION), e.g. 30d",
        )
    })?;
    let remote = crate::remote::build(&location, opts, &crate::remote::process_env)?;
    let locker = remote.locker.clone().ok_or_else(|| {
        Error::new(
            ErrorKind::Storage,
            format!("{location}: the S3 operator was built without Object Lock"),
        )
    })?;
    locker.verify_bucket().await?;
    let redactor = crate::error::Redactor::new(remote.secrets.clone());
    let op = crate::opendal_backend::Layers::new(opts)
        .with_redactor(redactor.clone())
        .apply(remote.op.clone());

    let until = Utc::now()
        + chrono::Duration::from_std(settings.retention).unwrap_or(chrono::Duration::MAX);
    let until = until.with_nanosecond(0).unwrap_or(until);

    let listing: Vec<opendal::Entry> = async {
        op.lister_with("/")
            .recursive(true)
            .await?
            .try_collect()
            .await
    }
    .await
    .map_err(|e| {
        crate::error::from_opendal_redacted(
            None,
            e,
            format!("cannot list the objects of {location}"),
            &redactor,
        )
    })?;
    let mut paths: Vec<String> = listing
        .into_iter()
        .filter(|e| e.metadata().is_file() && !e.path().ends_with('/'))
        .map(|e| e.path().trim_start_matches('/').to_string())
        .filter(|p| !p.starts_with("locks/"))
        .collect();
    paths.sort();
    paths.dedup();

    let mut report = RetentionReport {
        until,
        mode: settings.mode,
        objects: paths.len(),
        extended: 0,
        already_later: 0,
        gone: 0,
        failed: Vec::new(),
    };
    let outcomes: Vec<(String, Outcome)> = futures::stream::iter(paths)
        .map(|path| {
            let locker = locker.clone();
            async move {
                let outcome = locker.extend_one(&path, until).await;
                (path, outcome)
            }
        })
        .buffer_unordered(opts.connections.max(1))
        .collect()
        .await;
    for (path, outcome) in outcomes {
        match outcome {
            Outcome::Extended => report.extended += 1,
            Outcome::AlreadyLater => report.already_later += 1,
            Outcome::Gone => report.gone += 1,
            Outcome::Failed(why) => report.failed.push((path, redactor.scrub(&why))),
        }
    }
    report.failed.sort();
    Ok(report)
}

/// What a `GET ?object-lock` answer says.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Enabled,
    NotEnabled,
    Unsupported,
    Unknown,
}

fn check_answer(status: u16, body: &str) -> Answer {
    let compact: String = body.split_whitespace().collect();
    match status {
        200 if compact.contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>") => {
            Answer::Enabled
        }
        200 => Answer::NotEnabled,
        404 if body.contains("ObjectLockConfigurationNotFound") => Answer::NotEnabled,
        501 => Answer::Unsupported,
        400 | 405 if body.contains("NotImplemented") => Answer::Unsupported,
        _ => Answer::Unknown,
    }
}

/// Whether an upload error says the bucket has no Object Lock configuration (S3: "Bucket is
/// missing Object Lock Configuration").
pub(crate) fn is_missing_lock_configuration(err: &opendal::Error) -> bool {
    let text = err.to_string().to_ascii_lowercase().replace(' ', "");
    text.contains("missingobjectlockconfiguration")
}

/// A reqsign error as a plain `std::error::Error` (its message).
fn anyhow_free(e: reqsign_core::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The HTTP transport of an S3 operator with Object Lock: adds the retention to uploads.
pub(crate) struct LockingTransport {
    /// The real transport.
    pub(crate) inner: HttpTransporter,
    /// What to add and how to sign.
    pub(crate) locker: Arc<Locker>,
}

impl HttpTransport for LockingTransport {
    async fn fetch(&self, req: Request<Buffer>) -> opendal::Result<Response<HttpBody>> {
        let req = if self.locker.wants_lock(&req) {
            self.locker.lock(req).await?
        } else {
            req
        };
        self.inner.fetch(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_periods() {
        assert_eq!(
            parse_retention("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_retention("12h").unwrap(),
            Duration::from_secs(12 * 3_600)
        );
        assert_eq!(
            parse_retention("2w").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(
            parse_retention(" 1Y ").unwrap(),
            Duration::from_secs(365 * 86_400)
        );
        for bad in [
            "",
            "0d",
            "d",
            "30",
            "30m",
            "-1d",
            "1.5d",
            "30 d",
            "101y",
            "9999999999999y",
        ] {
            let err = parse_retention(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(err.to_string().contains("e.g. 30d"), "{bad}: {err}");
        }
        assert!(parse_retention("0d")
            .unwrap_err()
            .to_string()
            .contains("zero"));
    }

    #[test]
    fn settings_from_options() {
        let none = LockSettings::from_options(&StorageOptions::default()).unwrap();
        assert_eq!(none, None);
        let opts = StorageOptions::default()
            .with(DURATION_KEY, "2w")
            .unwrap()
            .with(MODE_KEY, "Compliance")
            .unwrap();
        let s = LockSettings::from_options(&opts).unwrap().unwrap();
        assert_eq!(s.retention, Duration::from_secs(14 * 86_400));
        assert_eq!(s.mode, LockMode::Compliance);
        // The field wins over the option.
        let opts = StorageOptions {
            object_lock: Some(Duration::from_secs(3_600)),
            ..opts
        };
        let s = LockSettings::from_options(&opts).unwrap().unwrap();
        assert_eq!(s.retention, Duration::from_secs(3_600));
        let bad = StorageOptions::default().with(MODE_KEY, "strict").unwrap();
        assert!(LockSettings::from_options(&bad).is_err());
    }

    fn target(path_style: bool, prefix: &str) -> S3Target {
        S3Target {
            bucket: "locks".into(),
            prefix: prefix.into(),
            endpoint: Some("http://127.0.0.1:9000/".into()),
            region: "us-east-1".into(),
            path_style,
            keys: None,
            profile: None,
            anonymous: true,
        }
    }

    fn locker(path_style: bool, prefix: &str) -> Locker {
        let settings = LockSettings {
            retention: Duration::from_secs(86_400),
            mode: LockMode::Governance,
        };
        Locker::new(
            settings,
            &target(path_style, prefix),
            HttpTransporter::default(),
            "shown".into(),
        )
        .unwrap()
    }

    fn req(method: &str, url: &str) -> Request<()> {
        Request::builder().method(method).uri(url).body(()).unwrap()
    }

    #[test]
    fn which_requests_are_locked() {
        let l = locker(true, "a/repo");
        assert_eq!(l.bucket_url, "http://127.0.0.1:9000/locks");
        let base = "http://127.0.0.1:9000/locks/a/repo";
        for path in [
            "data/ab/abcd",
            "index/ff",
            "snapshots/ee",
            "keys/dd",
            "config",
        ] {
            assert!(
                l.wants_lock(&req("PUT", &format!("{base}/{path}"))),
                "{path}"
            );
            assert!(
                l.wants_lock(&req("POST", &format!("{base}/{path}?uploads"))),
                "{path}"
            );
        }
        assert!(!l.wants_lock(&req("PUT", &format!("{base}/locks/abcd"))));
        assert!(!l.wants_lock(&req("PUT", &format!("{base}/locks/.write-probe-1"))));
        assert!(!l.wants_lock(&req("POST", &format!("{base}/locks/abcd?uploads"))));
        assert!(!l.wants_lock(&req(
            "PUT",
            &format!("{base}/data/ab/abcd?partNumber=1&uploadId=x")
        )));
        assert!(!l.wants_lock(&req("GET", &format!("{base}/data/ab/abcd"))));
        assert!(!l.wants_lock(&req("DELETE", &format!("{base}/data/ab/abcd"))));
        assert!(!l.wants_lock(&req("POST", &format!("{base}/data/ab/abcd?uploadId=x"))));

        // A bucket named "locks" at the root: its config is still locked.
        let l = locker(true, "");
        assert!(l.wants_lock(&req("PUT", "http://127.0.0.1:9000/locks/config")));
        assert!(!l.wants_lock(&req("PUT", "http://127.0.0.1:9000/locks/locks/1")));

        let l = locker(false, "");
        assert_eq!(l.bucket_url, "http://locks.127.0.0.1:9000");
        assert!(l.wants_lock(&req("PUT", "http://locks.h/config")));
        assert!(!l.wants_lock(&req("PUT", "http://locks.h/locks/1")));
    }

    #[tokio::test]
    async fn headers_are_added() {
        let l = locker(true, "");
        let r = Request::put("http://127.0.0.1:9000/locks/config")
            .header("x-amz-checksum-crc32c", "AAAAAA==")
            .body(Buffer::new())
            .unwrap();
        let r = l.lock(r).await.unwrap();
        assert_eq!(r.headers()["x-amz-object-lock-mode"], "GOVERNANCE");
        assert_eq!(r.headers()["x-amz-sdk-checksum-algorithm"], "CRC32C");
        let until = r.headers()["x-amz-object-lock-retain-until-date"]
            .to_str()
            .unwrap()
            .to_string();
        let until = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
        let ahead = until
            .signed_duration_since(chrono::Utc::now())
            .num_seconds();
        assert!((86_390..=86_400).contains(&ahead), "{ahead}");
    }

    #[tokio::test]
    async fn locked_uploads_are_signed_again_with_their_headers() {
        let mut t = target(true, "repo");
        t.anonymous = false;
        t.keys = Some(("AKIDTEST".into(), "secret".into(), Some("tok".into())));
        let settings = LockSettings {
            retention: Duration::from_secs(3_600),
            mode: LockMode::Compliance,
        };
        let l = Locker::new(settings, &t, HttpTransporter::default(), "shown".into()).unwrap();
        let r = Request::put("http://127.0.0.1:9000/locks/repo/index/ab")
            .header("authorization", "AWS4-HMAC-SHA256 stale")
            .header("x-amz-date", "20000101T000000Z")
            .header("x-amz-checksum-crc32c", "AAAAAA==")
            .body(Buffer::new())
            .unwrap();
        let r = l.lock(r).await.unwrap();
        assert_eq!(r.headers()["x-amz-object-lock-mode"], "COMPLIANCE");
        let auth = r.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"),
            "{auth}"
        );
        let signed = auth.split("SignedHeaders=").nth(1).unwrap();
        for h in [
            "x-amz-object-lock-mode",
            "x-amz-object-lock-retain-until-date",
            "x-amz-sdk-checksum-algorithm",
            "x-amz-checksum-crc32c",
            "x-amz-security-token",
        ] {
            assert!(signed.contains(h), "{h} not signed: {auth}");
        }
        assert_ne!(r.headers()["x-amz-date"], "20000101T000000Z");
        assert!(!r.headers().contains_key("host"));
    }

    #[test]
    fn only_s3_takes_the_flag() {
        let flag = StorageOptions {
            object_lock: Some(Duration::from_secs(86_400)),
            ..StorageOptions::default()
        };
        let s3 = crate::Location::parse("s3://b/p").unwrap();
        assert!(require_s3(&s3, &flag).is_ok());
        for url in ["gs://b/p", "az://c/p", "sftp://h/p", "/tmp/repo"] {
            let loc = crate::Location::parse(url).unwrap();
            let err = require_s3(&loc, &flag).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{url}");
            assert!(err.to_string().contains("works only on S3"), "{err}");
            // The s3.* option is ignored elsewhere, like every option of another scheme.
            let opt = StorageOptions::default().with(DURATION_KEY, "1d").unwrap();
            assert!(require_s3(&loc, &opt).is_ok(), "{url}");
        }
    }

    #[test]
    fn retention_is_never_shortened() {
        let until = Utc::now();
        assert!(needs_extension(None, until));
        assert!(needs_extension(
            Some(until - chrono::Duration::seconds(1)),
            until
        ));
        assert!(!needs_extension(Some(until), until));
        assert!(!needs_extension(
            Some(until + chrono::Duration::days(3)),
            until
        ));
    }

    #[test]
    fn object_urls_are_encoded_under_the_prefix() {
        let l = locker(true, "a/repo");
        assert_eq!(
            l.object_url("data/ab/ab cd"),
            "http://127.0.0.1:9000/locks/a/repo/data/ab/ab%20cd"
        );
        assert_eq!(
            locker(false, "").object_url("/config"),
            "http://locks.127.0.0.1:9000/config"
        );
    }

    #[tokio::test]
    async fn extending_needs_s3_and_a_period() {
        let with_period = StorageOptions::default().with(DURATION_KEY, "1d").unwrap();
        for url in ["/tmp/coffer-no-such-repo", "gs://b/p", "sftp://h/p"] {
            let err = extend_retention(url, &with_period).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{url}");
            assert!(err.to_string().contains("only on S3"), "{err}");
        }
        let err = extend_retention("s3://b/p", &StorageOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("--object-lock DURATION"), "{err}");
    }

    #[tokio::test]
    async fn temporary_errors_are_retried_and_others_are_not() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let res: opendal::Result<u32> = with_retries("test", || async {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < 2 {
                Err(opendal::Error::new(opendal::ErrorKind::Unexpected, "flaky").set_temporary())
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(res.unwrap(), 7);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let res: opendal::Result<u32> = with_retries("test", || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(opendal::Error::new(
                opendal::ErrorKind::PermissionDenied,
                "no",
            ))
        })
        .await;
        assert!(res.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Storage options for moto at `s3` with this key, and a retention of one hour.
    fn moto_options(
        s3: &coffer_testkit::servers::S3Server,
        id: &str,
        secret: &str,
    ) -> StorageOptions {
        StorageOptions::default()
            .with("s3.endpoint", s3.endpoint())
            .unwrap()
            .with("s3.region", "us-east-1")
            .unwrap()
            .with("s3.access_key_id", id)
            .unwrap()
            .with("s3.secret_access_key", secret)
            .unwrap()
            .with(DURATION_KEY, "1h")
            .unwrap()
    }

    #[tokio::test]
    async fn extension_requests_are_signed_and_never_shorten() {
        // moto with IAM authentication checks the signature of each HeadObject and
        // PutObjectRetention request (the CLI's own listing does not pass moto's check of
        // ListObjectsV2 signatures there, so this runs below the CLI).
        let bucket = "coffer-extend-signed";
        let (s3, id, secret) =
            coffer_testkit::servers::S3Server::start_with_locked_bucket_and_user(bucket);
        let location = crate::Location::parse(&format!("s3://{bucket}/repo")).unwrap();
        let opts = moto_options(&s3, &id, &secret);
        let remote = crate::remote::build(&location, &opts, &|_| None).unwrap();
        remote.op.write("config", vec![7u8; 100]).await.unwrap();
        let locker = remote.locker.clone().unwrap();
        let (mode, first) = locker.head_retention("config").await.unwrap().unwrap();
        assert_eq!(mode, Some(LockMode::Governance));
        let first = first.expect("written with a retention");
        let until = (Utc::now() + chrono::Duration::days(2))
            .with_nanosecond(0)
            .unwrap();
        assert!(first < until);
        assert_eq!(locker.extend_one("config", until).await, Outcome::Extended);
        let (_, now) = locker.head_retention("config").await.unwrap().unwrap();
        assert_eq!(now, Some(until));
        // A shorter date leaves it alone.
        let earlier = until - chrono::Duration::days(1);
        assert_eq!(
            locker.extend_one("config", earlier).await,
            Outcome::AlreadyLater
        );
        let (_, now) = locker.head_retention("config").await.unwrap().unwrap();
        assert_eq!(now, Some(until));
        assert_eq!(locker.extend_one("gone", until).await, Outcome::Gone);

        // A wrong secret: the object fails, with the server's answer, and no secret shown.
        let bad = moto_options(&s3, &id, "not-the-secret-at-all");
        let bad = crate::remote::build(&location, &bad, &|_| None).unwrap();
        match bad.locker.unwrap().extend_one("config", until).await {
            Outcome::Failed(why) => {
                assert!(why.contains("403"), "{why}");
                assert!(!why.contains(&secret), "{why}");
            }
            other => panic!("a wrong secret gave {other:?}"),
        }
    }

    #[test]
    fn answers() {
        let enabled = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>\
                       </ObjectLockConfiguration>";
        assert_eq!(check_answer(200, enabled), Answer::Enabled);
        assert_eq!(
            check_answer(404, "<Code>ObjectLockConfigurationNotFoundError</Code>"),
            Answer::NotEnabled
        );
        assert_eq!(
            check_answer(404, "<Code>NoSuchBucket</Code>"),
            Answer::Unknown
        );
        assert_eq!(
            check_answer(403, "<Code>AccessDenied</Code>"),
            Answer::Unknown
        );
        assert_eq!(check_answer(501, ""), Answer::Unsupported);
    }
}
