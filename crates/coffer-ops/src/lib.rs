//! Coffer's operations: one typed entry point per thing a user asks of a repository, shared by
//! every front end (the `coffer` command, the scheduler daemon, and the coming REST API and
//! dashboard), so that each is written once.
//!
//! Every operation takes
//! - a [`RepoSpec`]: where the repository is, its storage options and where its password comes
//!   from (read only once the repository is known to exist);
//! - an options struct saying what to do (`FilesBackup`, `FilesRestore`, `CheckOptions`...);
//! - a [`Progress`] sink receiving typed [`Event`]s: the phase, bytes and items done and their
//!   totals when known, the current item, notes and warnings;
//! - a [`CancellationToken`]: once cancelled, the operation stops at its next safe point,
//!   releases its lock and returns an error of kind [`coffer_core::ErrorKind::Interrupted`]
//!   (a backup keeps what it uploaded for the next run and lists no snapshot; a restore says
//!   what it left behind);
//!
//! and returns a typed, serializable report. Errors are [`coffer_core::Error`]s: callers decide
//! by their kind (exit codes, HTTP statuses) and never by their text.
//!
//! The pieces that several operations share live here once: opening and locking a repository
//! ([`repo`], every exit path releases the lock), the constructor of new snapshots
//! ([`assemble`]), the choice of a parent ([`parent`]), snapshot selection ([`select`]), and
//! copying a new snapshot to mirrors ([`mirror`]).

pub mod assemble;
pub mod backup;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod forget;
pub mod mirror;
pub mod parent;
pub mod password;
pub mod progress;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod select;
pub mod verify;

pub use progress::{Event, Phase, Progress, Silent};
pub use repo::{Locked, RepoSpec};
pub use select::SnapshotFilter;
pub use tokio_util::sync::CancellationToken;

/// The result type of every operation.
pub type Result<T, E = coffer_core::Error> = std::result::Result<T, E>;

/// The number of cores, at least 1.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// The error every operation returns once its token is cancelled.
pub(crate) fn interrupted(what: &str) -> coffer_core::Error {
    coffer_core::Error::new(
        coffer_core::ErrorKind::Interrupted,
        format!("{what} was interrupted"),
    )
}

/// Runs `work` until it ends or `cancel` fires; on cancellation `work` is dropped (so only use
/// this for work that may stop at any await point: reading, or writing in an order a crash
/// survives) and the operation fails as interrupted.
pub(crate) async fn or_cancelled<T>(
    cancel: &CancellationToken,
    what: &str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        r = work => r,
        _ = cancel.cancelled() => Err(interrupted(what)),
    }
}

/// A database snapshot taken at `secs` seconds after the epoch with `tags`, for unit tests of
/// snapshot choices (the same source every time).
#[cfg(test)]
pub(crate) fn test_snapshot(secs: i64, tags: &[&str]) -> coffer_core::snapshot::Snapshot {
    let mut s = coffer_core::snapshot::Snapshot::new(
        coffer_core::snapshot::SourceInfo {
            kind: "postgres".into(),
            location: "postgres://app@db/app".into(),
            paths: Vec::new(),
        },
        coffer_core::Id::sha256(&secs.to_le_bytes()),
    );
    s.time = chrono::DateTime::from_timestamp(secs, 0).expect("a valid time");
    s.tags = tags.iter().map(|t| t.to_string()).collect();
    s
}
