//! Mapping OpenDAL errors into Coffer's [`coffer_core::Error`].
//!
//! A missing object becomes [`ErrorKind::NotFound`], a refusal for lack of permission (a
//! read-only file system, file permissions, read-only credentials)
//! [`ErrorKind::PermissionDenied`], a full disk or exhausted quota [`ErrorKind::StorageFull`];
//! anything else becomes [`ErrorKind::Storage`]. An error is
//! retryable when OpenDAL marks it temporary; once the retry layer has given up it marks the
//! error persistent, so errors that reach the caller after the retries are normally not
//! retryable.
//!
//! [`diagnose`] recognises the failures users must act on (missing bucket, bad credentials,
//! unreachable host, untrusted host key) so that messages can say which one it is. It is the one
//! place that reads foreign error text (OpenDAL's, a server's, ssh's): those errors carry no
//! kind for these cases, and what it finds becomes a kind or a sentence, so that nothing above
//! this crate ever looks at a message.
//!
//! An OpenDAL error quotes its own source in its `Display`, against the convention that
//! [`coffer_core::error`] follows; it is therefore kept as a leaf cause ([`Cause`]), so that a
//! chain printed once shows it once.
use coffer_core::{Error, ErrorKind};

/// Converts an OpenDAL error into a Coffer error, with `context` describing what we were doing
/// ("reading pack 1a2b3c4d"). A refusal for lack of permission (see [`is_refused`]) reads as one
/// plain sentence: the system's reason ("Permission denied (os error 13)") and what to check,
/// without OpenDAL's request details.
pub(crate) fn from_opendal(err: opendal::Error, context: impl Into<String>) -> Error {
    if !is_refused(&err) {
        return from_opendal_as(kind_of(&err), err, context);
    }
    let reason = io_errors(&err)
        .next()
        .map(ToString::to_string)
        .unwrap_or_else(|| "permission denied".to_string());
    Error::new(
        ErrorKind::PermissionDenied,
        format!(
            "{}: {reason}: check the folder's owner and permissions, and whether its file \
             system is mounted read-only",
            context.into()
        ),
    )
}

/// The kind of an OpenDAL error: a missing object, a refusal for lack of permission (see
/// [`is_refused`]), a full disk, or any other storage failure.
pub(crate) fn kind_of(err: &opendal::Error) -> ErrorKind {
    if err.kind() == opendal::ErrorKind::NotFound {
        ErrorKind::NotFound
    } else if is_refused(err) {
        ErrorKind::PermissionDenied
    } else if is_full(err) {
        ErrorKind::StorageFull
    } else {
        ErrorKind::Storage
    }
}

/// Whether the storage is out of space or quota (an I/O error behind the OpenDAL error says so).
fn is_full(err: &opendal::Error) -> bool {
    io_errors(err).any(|io| is_full_io(io.kind()))
}

/// Whether a local I/O error kind means a full disk or an exhausted quota.
fn is_full_io(kind: std::io::ErrorKind) -> bool {
    matches!(
        kind,
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// An OpenDAL error as the leaf cause of a Coffer error: its text (which already quotes its own
/// sources), and no further source.
#[derive(Debug)]
pub(crate) struct Cause(String);

impl Cause {
    /// The cause for `err`.
    pub(crate) fn of(err: &opendal::Error) -> Cause {
        Cause(flatten(err))
    }
}

/// `err`'s text and the causes below it, each once. OpenDAL's `Display` ends with its direct
/// source (`, source: ...`), so the chain is followed from that source's own source on.
fn flatten(err: &opendal::Error) -> String {
    let mut text = err.to_string();
    let direct = std::error::Error::source(err);
    let mut source = direct.and_then(|d| d.source());
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

/// Whether the storage refused the operation for lack of permission: OpenDAL says so, or an
/// I/O error behind it is a permission error or a read-only file system.
fn is_refused(err: &opendal::Error) -> bool {
    err.kind() == opendal::ErrorKind::PermissionDenied
        || io_errors(err).any(|io| is_refused_io(io.kind()))
}

/// The I/O errors in `err`'s chain of sources, outermost first.
fn io_errors(err: &opendal::Error) -> impl Iterator<Item = &std::io::Error> {
    std::iter::successors(std::error::Error::source(err), |s| s.source())
        .filter_map(|s| s.downcast_ref::<std::io::Error>())
}

/// Whether a local I/O error kind is a refusal for lack of permission.
fn is_refused_io(kind: std::io::ErrorKind) -> bool {
    matches!(
        kind,
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

/// [`from_opendal`] with a chosen kind.
pub(crate) fn from_opendal_as(
    kind: ErrorKind,
    err: opendal::Error,
    context: impl Into<String>,
) -> Error {
    let retryable = err.is_temporary();
    let kind = if kind == ErrorKind::Storage && is_full(&err) {
        ErrorKind::StorageFull
    } else {
        kind
    };
    Error::new(kind, context)
        .retryable(retryable)
        .with_source(Cause::of(&err))
}

/// Converts a local I/O error (outside OpenDAL: creating the root folder, syncing a folder)
/// into a Coffer error. Missing paths become [`ErrorKind::NotFound`], the rest
/// [`ErrorKind::Storage`].
pub(crate) fn from_io(err: std::io::Error, context: impl Into<String>) -> Error {
    let kind = match err.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        k if is_refused_io(k) => ErrorKind::PermissionDenied,
        k if is_full_io(k) => ErrorKind::StorageFull,
        _ => ErrorKind::Storage,
    };
    let retryable = matches!(
        err.kind(),
        std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::WouldBlock
    );
    Error::new(kind, context)
        .retryable(retryable)
        .with_source(err)
}

/// A failure the user must act on, recognised in an OpenDAL error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The bucket or container does not exist.
    MissingContainer,
    /// The server refused the credentials, or they lack a permission.
    BadCredentials,
    /// The host could not be reached; the reason ("connection refused", "timed out", ...).
    Unreachable(&'static str),
    /// The SSH server's host key is unknown or does not match `known_hosts`.
    HostKey,
}

/// Recognises the failure behind `err`, if it is one of [`Problem`]. A plain `NotFound` is not
/// a problem (missing objects are normal); only one naming a missing bucket or container is.
pub(crate) fn diagnose(err: &opendal::Error) -> Option<Problem> {
    let mut text = err.to_string().to_ascii_lowercase();
    let mut io_kinds = Vec::new();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(" | ");
        text.push_str(&s.to_string().to_ascii_lowercase());
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kinds.push(io.kind());
        }
        source = s.source();
    }
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&[
        "host key verification failed",
        "remote host identification has changed",
        "no matching host key",
    ]) {
        return Some(Problem::HostKey);
    }
    if err.kind() == opendal::ErrorKind::PermissionDenied
        || io_kinds.contains(&std::io::ErrorKind::PermissionDenied)
        || has(&[
            "invalidaccesskeyid",
            "signaturedoesnotmatch",
            "authenticationfailed",
            "authorizationfailure",
            "authorizationpermissionmismatch",
            "accessdenied",
            "invalidauthenticationinfo",
            "permission denied (publickey",
            "no valid credential",
            "too many authentication failures",
        ])
    {
        return Some(Problem::BadCredentials);
    }
    if has(&[
        "nosuchbucket",
        "containernotfound",
        "bucket does not exist",
        "bucket not found",
        "the specified bucket",
    ]) {
        return Some(Problem::MissingContainer);
    }
    use std::io::ErrorKind as Io;
    for kind in &io_kinds {
        let reason = match kind {
            Io::ConnectionRefused => "connection refused",
            Io::ConnectionReset | Io::ConnectionAborted => "connection reset",
            Io::HostUnreachable => "no route to host",
            Io::NetworkUnreachable => "network unreachable",
            Io::AddrNotAvailable | Io::NotConnected => "cannot connect",
            Io::TimedOut => "timed out",
            _ => continue,
        };
        return Some(Problem::Unreachable(reason));
    }
    let reasons: &[(&[&str], &'static str)] = &[
        (&["connection refused"], "connection refused"),
        (&["no route to host"], "no route to host"),
        (&["network is unreachable"], "network unreachable"),
        (
            &[
                "dns error",
                "failed to lookup address",
                "could not resolve hostname",
                "name or service not known",
            ],
            "unknown host name",
        ),
        (
            &[
                "connection timed out",
                "operation timeout reached",
                "connection request: timeout",
            ],
            "timed out",
        ),
        (
            &[
                "tcp connect error",
                "error trying to connect",
                "connection closed by remote host",
            ],
            "cannot connect",
        ),
    ];
    reasons
        .iter()
        .find(|(needles, _)| has(needles))
        .map(|(_, reason)| Problem::Unreachable(reason))
}

/// Removes secrets from text shown to users or logged: the given secret values, and the
/// signature parameters of signed URLs (`sig=`, `X-Amz-Signature=`, ...).
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these secret values (values shorter than 4 characters are ignored).
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so that a secret containing another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    /// `text` with every secret replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        for param in [
            "sig=",
            "X-Amz-Signature=",
            "X-Amz-Credential=",
            "X-Amz-Security-Token=",
            "X-Goog-Signature=",
            "access_token=",
        ] {
            let mut from = 0;
            while let Some(i) = out[from..].find(param) {
                let start = from + i + param.len();
                let end = out[start..]
                    .find(['&', ' ', '"', '\'', ',', '}', '>'])
                    .map(|j| start + j)
                    .unwrap_or(out.len());
                if &out[start..end] != "***" {
                    out.replace_range(start..end, "***");
                }
                from = start + 3;
            }
        }
        out
    }
}

/// An error's text after redaction, standing in for the original error as a source.
#[derive(Debug)]
pub(crate) struct Redacted(pub(crate) String);

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

/// [`from_opendal_as`] for remote locations: the OpenDAL error (with its sources) becomes text
/// scrubbed by `redactor`, since its context may quote a signed URL.
pub(crate) fn from_opendal_redacted(
    kind: Option<ErrorKind>,
    err: opendal::Error,
    context: impl Into<String>,
    redactor: &Redactor,
) -> Error {
    let kind = kind.unwrap_or_else(|| kind_of(&err));
    let kind = if kind == ErrorKind::Storage && is_full(&err) {
        ErrorKind::StorageFull
    } else {
        kind
    };
    let retryable = err.is_temporary();
    Error::new(kind, context)
        .retryable(retryable)
        .with_source(Redacted(redactor.scrub(&flatten(&err))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_retryable() {
        let e = from_opendal(
            opendal::Error::new(opendal::ErrorKind::NotFound, "gone"),
            "reading x",
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(!e.is_retryable());
        assert!(format!("{e:#}").starts_with("reading x: "));

        let e = from_opendal(
            opendal::Error::new(opendal::ErrorKind::Unexpected, "flaky").set_temporary(),
            "writing y",
        );
        assert_eq!(e.kind(), ErrorKind::Storage);
        assert!(e.is_retryable());

        let e = from_opendal(
            opendal::Error::new(opendal::ErrorKind::PermissionDenied, "no"),
            "writing z",
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(!e.is_retryable());

        // A read-only file system behind an OpenDAL error is a refusal too.
        let erofs = opendal::Error::new(opendal::ErrorKind::Unexpected, "write")
            .set_source(std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem));
        assert!(is_refused(&erofs));
        let e = from_opendal(erofs, "cannot write lock 1a2b to /mnt/backup");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let text = format!("{e:#}");
        assert!(
            text.starts_with("cannot write lock 1a2b to /mnt/backup: read-only filesystem")
                && text.contains("mounted read-only")
                && !text.contains("Unexpected"),
            "{text}"
        );
        assert_eq!(
            from_io(
                std::io::Error::from(std::io::ErrorKind::PermissionDenied),
                "creating"
            )
            .kind(),
            ErrorKind::PermissionDenied
        );

        let e = from_io(
            std::io::Error::from(std::io::ErrorKind::NotFound),
            "syncing",
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn diagnoses() {
        let e = |kind, msg: &str| opendal::Error::new(kind, msg.to_string());
        assert_eq!(
            diagnose(&e(opendal::ErrorKind::PermissionDenied, "403")),
            Some(Problem::BadCredentials)
        );
        assert_eq!(
            diagnose(&e(
                opendal::ErrorKind::NotFound,
                "<Code>NoSuchBucket</Code>"
            )),
            Some(Problem::MissingContainer)
        );
        assert_eq!(diagnose(&e(opendal::ErrorKind::NotFound, "404")), None);
        let refused = e(opendal::ErrorKind::Unexpected, "send http request")
            .set_source(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            diagnose(&refused),
            Some(Problem::Unreachable("connection refused"))
        );
        assert_eq!(
            diagnose(&e(
                opendal::ErrorKind::Unexpected,
                "dns error: failed to lookup address information"
            )),
            Some(Problem::Unreachable("unknown host name"))
        );
        assert_eq!(
            diagnose(&e(
                opendal::ErrorKind::Unexpected,
                "ssh: Host key verification failed."
            )),
            Some(Problem::HostKey)
        );
        assert_eq!(diagnose(&e(opendal::ErrorKind::Unexpected, "boom")), None);
    }

    #[test]
    fn redaction() {
        let r = Redactor::new(["s3cr3t-key".to_string(), "abc".to_string()]);
        assert_eq!(
            r.scrub("url: https://a/b?sv=1&sig=XYZ%2F&se=2 key s3cr3t-key abc"),
            "url: https://a/b?sv=1&sig=***&se=2 key *** abc"
        );
        assert_eq!(
            r.scrub("x?X-Amz-Signature=deadbeef\"}"),
            "x?X-Amz-Signature=***\"}"
        );
        let err = opendal::Error::new(opendal::ErrorKind::Unexpected, "send")
            .with_context("url", "http://h/c/b?sig=SIGNATURE")
            .set_source(std::io::Error::other("s3cr3t-key inside"));
        let e = from_opendal_redacted(None, err, "cannot write", &r);
        let shown = format!("{e:#}");
        assert!(
            !shown.contains("SIGNATURE") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        assert!(shown.starts_with("cannot write: "), "{shown}");
        assert_eq!(e.kind(), ErrorKind::Storage);
    }
}
