//! The one public error type of `coffer-core`: a kind (what went wrong, and so which exit code
//! and HTTP status it maps to), a context (what we were doing, which object), and a source.

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
    /// The repository uses a format or feature this version does not support.
    Unsupported,
    /// A database source or target, or one of its tools, failed: unreachable server, wrong
    /// credentials, missing database, missing or too old `pg_dump`, a failed restore statement.
    Source,
}

/// Coffer's core error: kind, human context, optional source, and whether a retry may help.
pub struct Error {
    kind: ErrorKind,
    context: String,
    retryable: bool,
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
            source: None,
        }
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.context)?;
        if let Some(src) = &self.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
