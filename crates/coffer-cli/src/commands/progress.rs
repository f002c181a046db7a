//! A progress line for backups, drawn only on a terminal.

use crate::context::Ctx;
use coffer_core::BackupSession;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A running progress display (or nothing when not on a terminal).
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the display.
pub fn start(ctx: &Ctx, session: Arc<BackupSession>) -> Progress {
    if !crate::output::progress_allowed(ctx.global.quiet) || ctx.global.json {
        return Progress {
            bar: None,
            task: None,
        };
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("template"),
    );
    let weak = Arc::downgrade(&session);
    drop(session);
    let b = bar.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let Some(s) = weak.upgrade() else { break };
            let c = s.counters();
            b.set_message(format!(
                "read {}, added {}",
                crate::output::size(c.bytes_read.load(Ordering::Relaxed)),
                crate::output::size(c.bytes_added.load(Ordering::Relaxed))
            ));
            b.tick();
        }
    });
    Progress {
        bar: Some(bar),
        task: Some(task),
    }
}

impl Progress {
    /// Clears the display.
    pub fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
