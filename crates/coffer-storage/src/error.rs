//! Mapping OpenDAL errors into Coffer's [`coffer_core::Error`].
//!
//! A missing object becomes [`ErrorKind::NotFound`]; anything else becomes
//! [`ErrorKind::Storage`]. An error is retryable when OpenDAL marks it temporary; once the retry
//! layer has given up it marks the error persistent, so errors that reach the caller after the
//! retries are normally not retryable.
//!
//! [`diagnose`] recognises the failures users must act on (missing bucket, bad credentials,
//! unreachable host, untrusted host key) so that messages can say which one it is.

use coffer_core::{Error, ErrorKind};

/// Converts an OpenDAL error into a Coffer error, with `context` describing what we were doing
/// ("reading pack 1a2b3c4d").
pub(crate) fn from_opendal(err: opendal::Error, context: impl Into<String>) -> Error {
    let kind = match err.kind() {
        opendal::ErrorKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Storage,
    };
    from_opendal_as(kind, err, context)
}

/// [`from_opendal`] with a chosen kind.
pub(crate) fn from_opendal_as(
    kind: ErrorKind,
    err: opendal::Error,
    context: impl Into<String>,
) -> Error {
    let retryable = err.is_temporary();
    Error::new(kind, context)
        .retryable(retryable)
        .with_source(err)
}

/// Converts a local I/O error (outside OpenDAL: creating the root folder, syncing a folder)
/// into a Coffer error. Missing paths become [`ErrorKind::NotFound`], the rest
/// [`ErrorKind::Storage`].
pub(crate) fn from_io(err: std::io::Error, context: impl Into<String>) -> Error {
    let kind = match err.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
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
    /// The host could not be reached (refused, unreachable, no DNS name, timed out).
    Unreachable,
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
    if io_kinds.iter().any(|k| {
        matches!(
            k,
            Io::ConnectionRefused
                | Io::ConnectionReset
                | Io::ConnectionAborted
                | Io::HostUnreachable
                | Io::NetworkUnreachable
                | Io::AddrNotAvailable
                | Io::NotConnected
                | Io::TimedOut
        )
    }) || has(&[
        "connection refused",
        "no route to host",
        "network is unreachable",
        "dns error",
        "failed to lookup address",
        "could not resolve hostname",
        "name or service not known",
        "tcp connect error",
        "error trying to connect",
        "connection timed out",
        "operation timeout reached",
        "connection request: timeout",
        "connection closed by remote host",
    ]) {
        return Some(Problem::Unreachable);
    }
    None
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
        assert!(e.to_string().starts_with("reading x: "));

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
        assert_eq!(e.kind(), ErrorKind::Storage);
        assert!(!e.is_retryable());

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
        assert_eq!(diagnose(&refused), Some(Problem::Unreachable));
        assert_eq!(
            diagnose(&e(
                opendal::ErrorKind::Unexpected,
                "ssh: Host key verification failed."
            )),
            Some(Problem::HostKey)
        );
        assert_eq!(diagnose(&e(opendal::ErrorKind::Unexpected, "boom")), None);
    }
}
