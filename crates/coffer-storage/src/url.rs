//! Parsing a repository location (a plain path or a URL) into a [`Location`].
//!
//! Supported: local folders (`/path`, `relative/path`, `file:///abs/path`), `s3://BUCKET/PREFIX`,
//! `gs://BUCKET/PREFIX` (also `gcs://`), `az://CONTAINER/PREFIX` (also `azure://`) and
//! `sftp://[USER@]HOST[:PORT]/PATH` (also restic's `sftp:[USER@]HOST:/PATH`). Other remote
//! schemes are recognised so that users get a clear [`ErrorKind::Unsupported`] error instead of
//! a local folder named `b2:bucket`. A URL never carries a secret: credentials come from the
//! environment or from [`crate::StorageOptions::extra`].

use coffer_core::{Error, ErrorKind, Result};
use std::fmt;
use std::path::PathBuf;

/// Remote schemes that are recognised but not built in. Written either as `scheme://...` or, in
/// restic's style, as `scheme:...`.
const UNSUPPORTED_SCHEMES: &[&str] = &["b2", "swift", "rest", "rclone", "webdav", "http", "https"];

/// Where a repository lives, as parsed from the `--repo` argument.
///
/// Its [`Display`](fmt::Display) form is the canonical URL (a plain path for local folders),
/// which holds no secret and is safe for logs and manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A folder on a local file system (given as a path or as `file:///abs/path`). The path is
    /// kept as written (it may be relative); [`crate::open`] makes it absolute.
    Local(PathBuf),
    /// `s3://BUCKET/PREFIX`: Amazon S3 or an S3-compatible store.
    S3 {
        /// The bucket name.
        bucket: String,
        /// The folder inside the bucket, without leading or trailing `/` (empty for the root).
        prefix: String,
    },
    /// `gs://BUCKET/PREFIX`: Google Cloud Storage.
    Gcs {
        /// The bucket name.
        bucket: String,
        /// The folder inside the bucket, without leading or trailing `/` (empty for the root).
        prefix: String,
    },
    /// `az://CONTAINER/PREFIX`: Azure Blob Storage (the account comes from the options).
    Azure {
        /// The container name.
        container: String,
        /// The folder inside the container, without leading or trailing `/` (empty for the
        /// root).
        prefix: String,
    },
    /// `sftp://[USER@]HOST[:PORT]/PATH`: a folder on an SSH server.
    Sftp {
        /// The login name (`None`: ssh's default, from its config or the local user).
        user: Option<String>,
        /// The host name or address (IPv6 without brackets).
        host: String,
        /// The port (`None`: ssh's default, from its config or 22).
        port: Option<u16>,
        /// The absolute path of the repository folder on the server, without a trailing `/`
        /// (`/` alone for the root).
        path: String,
    },
}

impl Location {
    /// Parses a plain path (relative or absolute) or a URL.
    ///
    /// * `/srv/repo`, `repo`, `./repo` and `file:///srv/repo` (also `file://localhost/srv/repo`,
    ///   percent-encoding allowed) are local folders.
    /// * `s3://BUCKET[/PREFIX]`, `gs://BUCKET[/PREFIX]` (or `gcs://`), `az://CONTAINER[/PREFIX]`
    ///   (or `azure://`): object stores; the prefix may be percent-encoded.
    /// * `sftp://[USER@]HOST[:PORT]/PATH` (PATH is absolute on the server; `[::1]` for IPv6) and
    ///   `sftp:[USER@]HOST:/PATH`.
    /// * Other remote schemes (`b2`, `swift`, `rest`, ...), any other `scheme://`, and a
    ///   `file://` URL naming another host fail with [`ErrorKind::Unsupported`]; an empty
    ///   string, a malformed URL or a password inside a URL fails with
    ///   [`ErrorKind::InvalidInput`].
    pub fn parse(url: &str) -> Result<Location> {
        if url.is_empty() {
            return Err(Error::invalid("the repository location is empty"));
        }
        if let Some(scheme) = url_scheme(url) {
            let lower = scheme.to_ascii_lowercase();
            let rest = &url[scheme.len() + 3..];
            return match lower.as_str() {
                "file" => parse_file_url(url, rest),
                "s3" => parse_bucket_url(url, rest, "bucket")
                    .map(|(bucket, prefix)| Location::S3 { bucket, prefix }),
                "gs" | "gcs" => parse_bucket_url(url, rest, "bucket")
                    .map(|(bucket, prefix)| Location::Gcs { bucket, prefix }),
                "az" | "azure" => parse_bucket_url(url, rest, "container")
                    .map(|(container, prefix)| Location::Azure { container, prefix }),
                "sftp" => parse_sftp_url(url, rest),
                s if UNSUPPORTED_SCHEMES.contains(&s) => Err(unsupported_remote(s)),
                s => Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{s}:// is not a known repository scheme; use a local path, \
                         file:///absolute/path, s3://, gs://, az:// or sftp://"
                    ),
                )),
            };
        }
        if let Some((prefix, rest)) = url.split_once(':') {
            let lower = prefix.to_ascii_lowercase();
            if lower == "sftp" {
                return parse_restic_sftp(url, rest);
            }
            if matches!(lower.as_str(), "s3" | "gs" | "gcs" | "az" | "azure") {
                return Err(Error::invalid(format!(
                    "{url:?} is not a valid {lower} URL; write {lower}://NAME/PREFIX"
                )));
            }
            if UNSUPPORTED_SCHEMES.contains(&lower.as_str()) {
                return Err(unsupported_remote(&lower));
            }
            if lower == "file" {
                return Err(Error::invalid(format!(
                    "{url:?} is not a valid file URL; use file:///absolute/path or a plain path"
                )));
            }
        }
        Ok(Location::Local(PathBuf::from(url)))
    }

    /// The name of the scheme: `file`, `s3`, `gs`, `az` or `sftp`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Location::Local(_) => "file",
            Location::S3 { .. } => "s3",
            Location::Gcs { .. } => "gs",
            Location::Azure { .. } => "az",
            Location::Sftp { .. } => "sftp",
        }
    }

    /// Whether this is a remote location (anything but a local folder).
    pub fn is_remote(&self) -> bool {
        !matches!(self, Location::Local(_))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_prefix = |f: &mut fmt::Formatter<'_>, scheme: &str, name: &str, prefix: &str| {
            if prefix.is_empty() {
                write!(f, "{scheme}://{name}")
            } else {
                write!(f, "{scheme}://{name}/{prefix}")
            }
        };
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } => with_prefix(f, "s3", bucket, prefix),
            Location::Gcs { bucket, prefix } => with_prefix(f, "gs", bucket, prefix),
            Location::Azure { container, prefix } => with_prefix(f, "az", container, prefix),
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                write!(f, "sftp://")?;
                if let Some(user) = user {
                    write!(f, "{user}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    write!(f, "{host}")?;
                }
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
                write!(f, "{path}")
            }
        }
    }
}

fn unsupported_remote(scheme: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "{scheme}:// repositories are not supported by this build; use a local path, \
             file:///absolute/path, s3://, gs://, az:// or sftp://"
        ),
    )
}

/// The scheme of `scheme://...`, if `url` starts like a URL (RFC 3986 scheme characters).
fn url_scheme(url: &str) -> Option<&str> {
    let idx = url.find("://")?;
    let scheme = &url[..idx];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    if chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
        Some(scheme)
    } else {
        None
    }
}

/// Rejects query strings, fragments and user info, which a repository URL never has (a SAS
/// token or password there would leak into logs and manifests).
fn reject_url_extras(url: &str, rest: &str, allow_user: bool) -> Result<()> {
    if rest.contains('?') || rest.contains('#') {
        return Err(Error::invalid(format!(
            "{}: repository URLs take no query or fragment; pass options and credentials \
             through the environment or the configuration",
            redact_url(url)
        )));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        if !allow_user {
            return Err(Error::invalid(format!(
                "{}: this URL takes no user name; pass credentials through the environment or \
                 the configuration",
                redact_url(url)
            )));
        }
        if userinfo.contains(':') {
            return Err(Error::invalid(format!(
                "{}: passwords in URLs are not supported (they would leak into logs); use an \
                 ssh key",
                redact_url(url)
            )));
        }
    }
    Ok(())
}

/// `url` with anything between `://` and `@` and after `?` removed, for error messages.
fn redact_url(url: &str) -> String {
    let mut out = url.split(['?', '#']).next().unwrap_or("").to_string();
    if let Some(i) = out.find("://") {
        let authority_end = out[i + 3..]
            .find('/')
            .map(|j| i + 3 + j)
            .unwrap_or(out.len());
        if let Some(at) = out[i + 3..authority_end].rfind('@') {
            out.replace_range(i + 3..i + 3 + at, "***");
        }
    }
    out
}

/// Splits `NAME[/PREFIX]` (what follows `s3://`, `gs://` or `az://`).
fn parse_bucket_url(url: &str, rest: &str, what: &str) -> Result<(String, String)> {
    reject_url_extras(url, rest, false)?;
    let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if name.is_empty() {
        return Err(Error::invalid(format!(
            "{url:?} names no {what}; write scheme://{}/PREFIX",
            what.to_ascii_uppercase()
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Error::invalid(format!(
            "{url:?}: {name:?} is not a valid {what} name"
        )));
    }
    Ok((name.to_string(), normalize_prefix(url, prefix)?))
}

/// Percent-decodes a prefix, drops empty segments and refuses `.` and `..`.
fn normalize_prefix(url: &str, prefix: &str) -> Result<String> {
    let decoded = percent_decode(prefix)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            Error::invalid(format!(
                "{url:?} has an invalid percent-encoding in its path"
            ))
        })?;
    let mut segments = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" => {}
            "." | ".." => {
                return Err(Error::invalid(format!(
                    "{url:?}: the path may not contain `.` or `..`"
                )))
            }
            s => segments.push(s),
        }
    }
    Ok(segments.join("/"))
}

/// What follows `sftp://`: `[USER@]HOST[:PORT]/PATH`.
fn parse_sftp_url(url: &str, rest: &str) -> Result<Location> {
    reject_url_extras(url, rest, true)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = split_host_port(url, hostport)?;
    if path.trim_matches('/').is_empty() {
        return Err(Error::invalid(format!(
            "{url:?} names no folder; write sftp://[USER@]HOST[:PORT]/ABSOLUTE/PATH"
        )));
    }
    sftp_location(url, user, host, port, path)
}

/// restic's form: `sftp:[USER@]HOST:/PATH` (what follows `sftp:`).
fn parse_restic_sftp(url: &str, rest: &str) -> Result<Location> {
    reject_url_extras(url, rest, true)?;
    let Some((authority, path)) = rest.split_once(':') else {
        return Err(Error::invalid(format!(
            "{url:?} is not a valid sftp location; write sftp://[USER@]HOST[:PORT]/PATH or \
             sftp:[USER@]HOST:/PATH"
        )));
    };
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if !path.starts_with('/') {
        return Err(Error::invalid(format!(
            "{url:?}: the sftp path must be absolute (sftp:HOST:/PATH)"
        )));
    }
    sftp_location(url, user, host.to_string(), None, path)
}

fn split_host_port(url: &str, hostport: &str) -> Result<(String, Option<u16>)> {
    let bad_port = || Error::invalid(format!("{url:?} has an invalid port"));
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| Error::invalid(format!("{url:?} has an unclosed `[`")))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(bad_port)?,
            ),
        };
        return Ok((host.to_string(), port));
    }
    match hostport.split_once(':') {
        Some((host, port)) => Ok((
            host.to_string(),
            Some(port.parse::<u16>().map_err(|_| bad_port())?),
        )),
        None => Ok((hostport.to_string(), None)),
    }
}

fn sftp_location(
    url: &str,
    user: Option<&str>,
    host: String,
    port: Option<u16>,
    path: &str,
) -> Result<Location> {
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(Error::invalid(format!("{url:?} names no valid host")));
    }
    if let Some(user) = user {
        if user.is_empty() || user.contains(char::is_whitespace) || user.starts_with('-') {
            return Err(Error::invalid(format!("{url:?} has an invalid user name")));
        }
    }
    if port == Some(0) {
        return Err(Error::invalid(format!("{url:?} has an invalid port")));
    }
    let path = format!("/{}", normalize_prefix(url, path)?);
    Ok(Location::Sftp {
        user: user.map(str::to_string),
        host,
        port,
        path,
    })
}

/// `rest` is what follows `file://`: an optional host (empty or `localhost`) then an absolute
/// path.
fn parse_file_url(url: &str, rest: &str) -> Result<Location> {
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("{url:?}: file URLs on another host ({host}) are not supported"),
        ));
    }
    if path.is_empty() {
        return Err(Error::invalid(format!(
            "{url:?} has no path; use file:///absolute/path"
        )));
    }
    if path.contains('?') || path.contains('#') {
        return Err(Error::invalid(format!(
            "{url:?}: file URLs take no query or fragment"
        )));
    }
    let decoded = percent_decode(path)
        .ok_or_else(|| Error::invalid(format!("{url:?} has an invalid percent-encoding")))?;
    Ok(Location::Local(path_from_bytes(decoded)))
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(unix)]
fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> PathBuf {
        match Location::parse(s).unwrap() {
            Location::Local(p) => p,
            other => panic!("{s} parsed as {other:?}"),
        }
    }

    #[test]
    fn plain_paths() {
        assert_eq!(local("/srv/repo"), PathBuf::from("/srv/repo"));
        assert_eq!(local("repo"), PathBuf::from("repo"));
        assert_eq!(local("./a/b"), PathBuf::from("./a/b"));
        assert_eq!(local("weird:name"), PathBuf::from("weird:name"));
    }

    #[test]
    fn file_urls() {
        assert_eq!(local("file:///srv/repo"), PathBuf::from("/srv/repo"));
        assert_eq!(local("FILE:///srv/repo"), PathBuf::from("/srv/repo"));
        assert_eq!(
            local("file://localhost/srv/repo"),
            PathBuf::from("/srv/repo")
        );
        assert_eq!(
            local("file:///srv/my%20repo"),
            PathBuf::from("/srv/my repo")
        );
        assert_eq!(
            Location::parse("file://").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            Location::parse("file:///a%zz").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            Location::parse("file:repo").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            Location::parse("file://otherhost/x").unwrap_err().kind(),
            ErrorKind::Unsupported
        );
    }

    #[test]
    fn object_store_urls() {
        assert_eq!(
            Location::parse("s3://bucket/a/b").unwrap(),
            Location::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            Location::parse("S3://bucket").unwrap(),
            Location::S3 {
                bucket: "bucket".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            Location::parse("gs://b//x/%20y/").unwrap(),
            Location::Gcs {
                bucket: "b".into(),
                prefix: "x/ y".into()
            }
        );
        assert_eq!(
            Location::parse("gcs://b/r").unwrap().to_string(),
            "gs://b/r"
        );
        assert_eq!(
            Location::parse("azure://c/r").unwrap(),
            Location::Azure {
                container: "c".into(),
                prefix: "r".into()
            }
        );
        assert_eq!(Location::parse("az://c/").unwrap().to_string(), "az://c");
        for bad in [
            "s3://",
            "s3:///prefix",
            "s3://bucket/../x",
            "s3://bucket/a?x=1",
            "s3://key:secret@bucket/x",
            "gs://b%20/x",
            "az://c/%zz",
            "s3:bucket/x",
        ] {
            let err = Location::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}: {err}");
            assert!(!err.to_string().contains("secret"), "{bad}: {err}");
        }
    }

    #[test]
    fn sftp_urls() {
        assert_eq!(
            Location::parse("sftp://alice@host:2222/srv/repo/").unwrap(),
            Location::Sftp {
                user: Some("alice".into()),
                host: "host".into(),
                port: Some(2222),
                path: "/srv/repo".into()
            }
        );
        assert_eq!(
            Location::parse("sftp://host//srv//repo").unwrap(),
            Location::Sftp {
                user: None,
                host: "host".into(),
                port: None,
                path: "/srv/repo".into()
            }
        );
        assert_eq!(
            Location::parse("sftp://[::1]:22/r").unwrap(),
            Location::Sftp {
                user: None,
                host: "::1".into(),
                port: Some(22),
                path: "/r".into()
            }
        );
        assert_eq!(
            Location::parse("sftp:bob@example.org:/srv/repo").unwrap(),
            Location::Sftp {
                user: Some("bob".into()),
                host: "example.org".into(),
                port: None,
                path: "/srv/repo".into()
            }
        );
        for url in [
            "sftp://alice@host:2222/srv/repo",
            "sftp://host/r",
            "sftp://[::1]:22/r",
        ] {
            assert_eq!(Location::parse(url).unwrap().to_string(), url);
        }
        for bad in [
            "sftp://host",
            "sftp://host/",
            "sftp://host:x/r",
            "sftp://host:0/r",
            "sftp://alice:hunter2@host/r",
            "sftp://@host/r",
            "sftp:host:relative",
            "sftp:host",
            "sftp://host/../r",
        ] {
            let err = Location::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{bad}: {err}");
        }
    }

    #[test]
    fn other_schemes_are_unsupported() {
        for url in [
            "b2://bucket/repo",
            "rest://h/r",
            "swift:c:/r",
            "https://x/y",
        ] {
            let err = Location::parse(url).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{url}");
            assert!(err.to_string().contains("not supported"), "{url}: {err}");
        }
        assert_eq!(
            Location::parse("foo://x").unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        assert_eq!(
            Location::parse("").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}
