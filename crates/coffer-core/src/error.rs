//! The one public error type of `coffer-core`: a kind (what went wrong, and so which exit code
//! and HTTP status it maps to), a context (what we were doing, which object), and a source.
//!
//! Rules, enforced here:
//! - `Display` prints the context only, never the source: whoever shows an error to a person
//!   walks the chain once (`{:#}`, [`Error::report`], [`chain`], or anyhow's `{:#}`), so no
//!   cause is printed twice and nobody has to remove repeats by searching the text.
//! - Callers decide by [`ErrorKind`] and by the typed facts an error carries
//!   ([`Error::is_retryable`], [`Error::target_untouched`]), never by the message.

use std::fmt;

/// What kind of failure an [`Error`] is. Callers branch on this, never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// There is no repository at the given location (no `config` object).
    RepositoryNotFound,
    /// `init` was asked to create a repository where one already exists.
    RepositoryExists,
    /// No key file could be opened with the given password.
    WrongPassword,
    /// Another process holds a lock that conflicts with the one we need.
    Locked,
    /// Stored data failed authentication, did not decode, or is missing although referenced.
    Corrupt,
    /// An object that was asked for does not exist (a snapshot id, a path, a key).
    NotFound,
    /// A snapshot prefix matched more than one snapshot.
    Ambiguous,
    /// The caller gave a value that cannot be used (a bad option, a bad name).
    InvalidInput,
    /// The storage backend failed (I/O, network, full disk).
    Storage,
    /// The repository's storage refused an operation for lack of permission: a read-only file
    /// system or mount, file permissions, or credentials that may not do it (read-only keys).
    PermissionDenied,
    /// The operation was interrupted (SIGINT) before it completed.
    Interrupted,
    /// A format or feature that this build, this storage or this server does not offer (a
    /// newer repository format, Object Lock outside S3, an unknown URL scheme).
    Unsupported,
    /// The repository's storage ran out of space or quota while writing (its disk, a bucket's
    /// quota); freeing space or choosing other storage is the remedy, retrying is not. A full
    /// local disk elsewhere (a temporary file's) is [`ErrorKind::Storage`], named by its context.
    StorageFull,
    /// The request itself cannot be carried out as given: a bad option value or a combination
    /// of options that contradict each other (the command line's usage errors, exit code 2;
    /// HTTP 400).
    Usage,
    /// A database source or target, or one of its tools, failed: unreachable server, wrong
    /// credentials, missing database, missing or too old `pg_dump`, a failed restore statement.
    Source,
}

/// Coffer's core error: kind, human context, optional source, whether a retry may help, and
/// whether the target of a failed restore was left as it was.
pub struct Error {
    kind: ErrorKind,
    context: String,
    retryable: bool,
    untouched: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a context message.
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Error {
            kind,
            context: context.into(),
            retryable: false,
            untouched: false,
            source: None,
        }
    }

    /// Says that the operation failed before changing its target (a restore that stopped
    /// before writing, or whose writes were rolled back): the target is exactly as it was.
    /// Without this mark a failed restore's target may be partly changed.
    pub fn untouched(mut self) -> Self {
        self.untouched = true;
        self
    }

    /// Whether the failed operation left its target exactly as it was (see
    /// [`Error::untouched`]).
    pub fn target_untouched(&self) -> bool {
        self.untouched
    }

    /// The context and every cause below it, on one line: `context: cause: cause's cause`.
    pub fn report(&self) -> String {
        chain(self)
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Marks the error as temporary: repeating the same request may succeed.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Prepends more context ("while doing X: ...").
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.context = format!("{context}: {}", self.context);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether this error or a cause below it is of `kind`: a storage error reached through a
    /// writer (an [`std::io::Error`] wrapping this crate's error) keeps its kind for the
    /// decisions taken above it (a full repository, an interruption).
    pub fn has_kind(&self, kind: ErrorKind) -> bool {
        self.kind == kind || std::error::Error::source(self).is_some_and(|s| kind_in_chain(s, kind))
    }

    /// Whether repeating the operation may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Shorthand for a [`ErrorKind::Corrupt`] error.
    pub fn corrupt(context: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, context)
    }

    /// Shorthand for an [`ErrorKind::InvalidInput`] error.
    pub fn invalid(context: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, context)
    }

    /// Shorthand for a [`ErrorKind::Usage`] error.
    pub fn usage(context: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, context)
    }

    /// Shorthand for a [`ErrorKind::NotFound`] error.
    pub fn not_found(context: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, context)
    }

    /// An I/O error from local files (not the repository's storage), with context.
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::Interrupted => ErrorKind::Interrupted,
            _ => ErrorKind::Storage,
        };
        Error::new(kind, context).with_source(err)
    }
}

impl fmt::Display for Error {
    /// The context only: the source is reached through [`std::error::Error::source`]. The
    /// alternate form (`{:#}`, as anyhow's) prints the whole chain, as [`Error::report`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.write_str(&self.report())
        } else {
            f.write_str(&self.context)
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.report())
    }
}

/// `err` and each of its sources, joined by `: `, each printed once. Errors of this crate print
/// no source in their `Display`; other errors are expected to follow the same convention (the
/// storage crate turns OpenDAL's errors, which quote their sources, into leaf causes).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Whether `err` or one of its sources is a Coffer [`Error`] of `kind`, looking inside
/// [`std::io::Error`]s too (whose `source()` skips the error they wrap).
pub fn kind_in_chain(err: &(dyn std::error::Error + 'static), kind: ErrorKind) -> bool {
    let mut next = Some(err);
    // Causes nest a few levels; the bound only guards against a cycle.
    for _ in 0..64 {
        let Some(e) = next else { return false };
        if let Some(own) = e.downcast_ref::<Error>() {
            if own.kind == kind {
                return true;
            }
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            let inner: &(dyn std::error::Error + 'static) = inner;
            if kind_in_chain(inner, kind) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_context_and_the_alternate_form_the_whole_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = Error::io("cannot back up /x", io).context("backing up");
        assert_eq!(e.to_string(), "backing up: cannot back up /x");
        assert_eq!(
            format!("{e:#}"),
            "backing up: cannot back up /x: No such file or directory"
        );
        assert_eq!(e.report(), format!("{e:#}"));
        // Wrapped in another error, each message still appears once.
        let outer = Error::new(ErrorKind::Storage, "writing pack 1a2b").with_source(e);
        assert_eq!(
            chain(&outer),
            "writing pack 1a2b: backing up: cannot back up /x: No such file or directory"
        );
    }

    #[test]
    fn the_untouched_mark_survives_more_context() {
        let e = Error::new(ErrorKind::Source, "step 1 failed").untouched();
        assert!(e.context("restoring into db").target_untouched());
        assert!(!Error::new(ErrorKind::Source, "step 2 failed").target_untouched());
    }

    #[test]
    fn a_kind_is_found_below_other_errors_and_inside_io_errors() {
        let full = Error::new(ErrorKind::StorageFull, "writing pack 1a2b");
        // Through a writer: an io::Error wrapping it, then the engine's own error.
        let through_writer = std::io::Error::other(full);
        let e = Error::new(ErrorKind::Storage, "storing the RDB").with_source(through_writer);
        assert_eq!(e.kind(), ErrorKind::Storage);
        assert!(e.has_kind(ErrorKind::StorageFull));
        assert!(e.has_kind(ErrorKind::Storage));
        assert!(!e.has_kind(ErrorKind::Corrupt));
        // A plain io::Error below says nothing of Coffer's kinds.
        let plain = Error::io("x", std::io::Error::other("disk on fire"));
        assert!(!plain.has_kind(ErrorKind::StorageFull));
    }
}
