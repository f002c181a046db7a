//! How the CLI shows an operation's events: a progress line on a terminal (never in a pipe or
//! with `--quiet` or `--json`), notes on stderr unless quiet, warnings on stderr always; and
//! SIGINT turned into the operation's cancellation.

use crate::context::Ctx;
use crate::output;
use coffer_ops::progress::Counts;
use coffer_ops::{CancellationToken, Event, Progress};
use std::sync::Arc;

/// The CLI's sink for operation events.
pub struct Display {
    bar: Option<indicatif::ProgressBar>,
    notes: bool,
}

/// A sink for `ctx`'s output settings.
pub fn display(ctx: &Ctx) -> Arc<Display> {
    let bar = (output::progress_allowed(ctx.global.quiet) && !ctx.global.json).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    Arc::new(Display {
        bar,
        notes: !ctx.global.quiet && !ctx.global.json,
    })
}

impl Display {
    /// Prints a line above the progress line.
    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    /// Clears the progress line (before the summary is printed).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `read 1.2 GiB of 3.4 GiB (35%), 120 of 900 files, added 80 MiB`.
fn describe(c: &Counts) -> String {
    let mut parts = Vec::new();
    let mut bytes = output::size(c.bytes_done);
    if let Some(total) = c.bytes_total {
        let pct = (c.bytes_done as f64 * 100.0 / total.max(1) as f64).min(100.0);
        bytes = format!("{bytes} of {} ({pct:.0}%)", output::size(total));
    }
    parts.push(bytes);
    match c.items_total {
        Some(t) => parts.push(format!("{} of {t} files", c.items_done)),
        None if c.items_done > 0 => parts.push(format!("{} files", c.items_done)),
        None => {}
    }
    if let Some(stored) = c.bytes_stored {
        parts.push(format!("added {}", output::size(stored)));
    }
    parts.join(", ")
}

impl Progress for Display {
    fn event(&self, event: Event) {
        match event {
            Event::Progress(c) => {
                if let Some(bar) = &self.bar {
                    bar.set_message(describe(&c));
                }
            }
            Event::Phase { .. } => {}
            Event::Note { message } => {
                if self.notes {
                    self.line(format!("coffer: {message}"));
                }
            }
            Event::Warning { message } => self.line(format!("coffer: warning: {message}")),
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A cancellation token that SIGINT (Ctrl-C) fires, after printing `what` it means. Dropping
/// the guard stops listening.
pub struct OnSigint {
    /// The token.
    pub token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OnSigint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Cancels the returned token on SIGINT, printing `message` (e.g. "interrupted: saving what was
/// uploaded..."). A second SIGINT ends the process at once (status 130), for an operation that
/// does not reach a safe point soon enough.
pub fn cancel_on_sigint(message: &'static str) -> OnSigint {
    let token = CancellationToken::new();
    let t = token.clone();
    let task = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("coffer: {message}");
            t.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("coffer: interrupted again: stopping now");
                std::process::exit(i32::from(output::code::INTERRUPTED));
            }
        }
    });
    OnSigint { token, task }
}
