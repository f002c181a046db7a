//! What an operation reports while it runs: typed events sent to a [`Progress`] sink. The CLI
//! draws them on a terminal, the daemon logs the notable ones, and the server streams them
//! (server-sent events); none of them is needed for the operation's result, which is its report.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The step an operation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Opening the repository (key derivation, index).
    Opening,
    /// Reading the source and storing what is new.
    BackingUp,
    /// Taking the safety backup of a restore target.
    SafetyBackup,
    /// Writing the target of a restore.
    Restoring,
    /// Reading snapshot data to check it.
    Verifying,
    /// Checking the repository.
    Checking,
    /// Applying a retention policy.
    Forgetting,
    /// Freeing unused data.
    Pruning,
    /// Copying snapshots to another repository.
    Copying,
    /// Copying a new snapshot to the repository's mirrors.
    Mirroring,
    /// Writing a database snapshot's plain dump.
    Dumping,
}

/// How far an operation has come. Totals are `None` while unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Bytes read (a backup) or written (a restore) so far.
    pub bytes_done: u64,
    /// Bytes to do in all, once known.
    pub bytes_total: Option<u64>,
    /// Items (files, streams, snapshots) done.
    pub items_done: u64,
    /// Items to do in all, once known.
    pub items_total: Option<u64>,
    /// New bytes stored in the repository (backups and copies).
    pub bytes_stored: Option<u64>,
    /// The item being worked on, when there is one worth naming.
    pub current: Option<String>,
}

/// One thing an operation reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A new step began.
    Phase {
        /// The step.
        phase: Phase,
    },
    /// Counters, sent a few times a second while they change.
    Progress(Counts),
    /// Something a person would want to know now (a full backup instead of an incremental one,
    /// the safety backup's id).
    Note {
        /// The sentence.
        message: String,
    },
    /// Something that went differently than asked but did not stop the operation.
    Warning {
        /// The sentence.
        message: String,
    },
}

/// Receives an operation's events. Implementations must be cheap and must not block: they are
/// called from the operation's tasks.
pub trait Progress: Send + Sync {
    /// One event.
    fn event(&self, event: Event);

    /// Shorthand for [`Event::Phase`].
    fn phase(&self, phase: Phase) {
        self.event(Event::Phase { phase });
    }

    /// Shorthand for [`Event::Note`].
    fn note(&self, message: String) {
        self.event(Event::Note { message });
    }

    /// Shorthand for [`Event::Warning`].
    fn warn(&self, message: String) {
        self.event(Event::Warning { message });
    }
}

impl<F: Fn(Event) + Send + Sync> Progress for F {
    fn event(&self, event: Event) {
        self(event)
    }
}

/// A sink that drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: Event) {}
}

/// Counters an operation's workers update and a ticker turns into [`Event::Progress`].
#[derive(Debug, Default)]
pub struct Meter {
    /// Bytes done.
    pub bytes: AtomicU64,
    /// Bytes in all (0: unknown).
    pub bytes_total: AtomicU64,
    /// Items done.
    pub items: AtomicU64,
    /// Items in all (0: unknown).
    pub items_total: AtomicU64,
    /// New bytes stored.
    pub stored: AtomicU64,
}

impl Meter {
    /// The counters as an event's counts.
    pub fn counts(&self) -> Counts {
        let total = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|&n| n > 0);
        Counts {
            bytes_done: self.bytes.load(Ordering::Relaxed),
            bytes_total: total(&self.bytes_total),
            items_done: self.items.load(Ordering::Relaxed),
            items_total: total(&self.items_total),
            bytes_stored: Some(self.stored.load(Ordering::Relaxed)),
            current: None,
        }
    }
}

/// How often counters are sent.
const TICK: Duration = Duration::from_millis(250);

/// Sends `read()`'s counts to `progress` every [`TICK`] while they change, until dropped.
pub(crate) struct Ticker {
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    /// Starts sending.
    pub(crate) fn start(
        progress: Arc<dyn Progress>,
        read: impl Fn() -> Counts + Send + Sync + 'static,
    ) -> Ticker {
        let task = tokio::spawn(async move {
            let mut last = None;
            loop {
                tokio::time::sleep(TICK).await;
                let now = read();
                if last.as_ref() != Some(&now) {
                    progress.event(Event::Progress(now.clone()));
                    last = Some(now);
                }
            }
        });
        Ticker { task }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
