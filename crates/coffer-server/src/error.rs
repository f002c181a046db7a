//! The crate's error type: a kind to act on, and a message to show.

use std::fmt;

/// What went wrong, broadly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration cannot be read, does not parse or does not validate.
    Config,
    /// A schedule (cron expression, friendly form or time zone) is invalid.
    Schedule,
    /// The catalog cannot be opened, read or written.
    Catalog,
    /// A job name that the configuration does not define.
    UnknownJob,
    /// The job is already running (here or on another daemon).
    Busy,
}

/// One problem in a configuration file, located by line (1-based; 0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The file.
    pub file: String,
    /// The line, 1-based (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

/// The crate's error.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    issues: Vec<ConfigIssue>,
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            issues: Vec::new(),
        }
    }

    /// A configuration error listing every problem found (at least one).
    pub fn config(issues: Vec<ConfigIssue>) -> Self {
        let message = issues
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        Error {
            kind: ErrorKind::Config,
            message,
            issues,
        }
    }

    /// A catalog error.
    pub fn catalog(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Catalog, message)
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The configuration problems, for [`ErrorKind::Config`] errors read from a file.
    pub fn issues(&self) -> &[ConfigIssue] {
        &self.issues
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::catalog(format!("SQLite catalog: {e}"))
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        let detail = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string());
        Error::catalog(format!("PostgreSQL catalog: {detail}"))
    }
}
