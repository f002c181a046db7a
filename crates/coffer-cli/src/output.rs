//! Output helpers: exit codes, errors, human-readable sizes and durations, logging.

use coffer_core::ErrorKind;
use std::io::IsTerminal;

/// Exit codes, as restic's.
pub mod code {
    /// Success.
    pub const OK: u8 = 0;
    /// Failure, damage found included.
    pub const FAILURE: u8 = 1;
    /// Usage error.
    pub const USAGE: u8 = 2;
    /// Backup saved, some source files unreadable.
    pub const PARTIAL: u8 = 3;
    /// Repository does not exist.
    pub const NO_REPOSITORY: u8 = 10;
    /// Repository locked.
    pub const LOCKED: u8 = 11;
    /// Wrong password.
    pub const WRONG_PASSWORD: u8 = 12;
    /// Interrupted by SIGINT (128 + 2).
    pub const INTERRUPTED: u8 = 130;
}

/// A usage error raised after parsing (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);
impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// Maps an error to its exit code by the core error kind found in its chain.
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<UsageError>().is_some() {
            return code::USAGE;
        }
        if let Some(e) = cause.downcast_ref::<coffer_core::Error>() {
            return match e.kind() {
                ErrorKind::RepositoryNotFound => code::NO_REPOSITORY,
                ErrorKind::Locked => code::LOCKED,
                ErrorKind::WrongPassword => code::WRONG_PASSWORD,
                ErrorKind::Interrupted => code::INTERRUPTED,
                ErrorKind::Usage => code::USAGE,
                _ => code::FAILURE,
            };
        }
    }
    code::FAILURE
}

/// Prints an error on one line (and as JSON on stdout with `--json`).
pub fn print_error(err: &anyhow::Error, code: u8, json: bool) {
    let msg = one_line(err);
    eprintln!("coffer: error: {msg}");
    if json {
        println!("{}", serde_json::json!({ "error": msg, "exit_code": code }));
    }
}

/// The error and its causes on one line, `outer: cause: cause's cause`. Every error in the
/// chain prints only its own message (`coffer_core::error`'s rule), so each appears once.
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

/// Sets up logging to stderr: warnings by default, more with `-v`, errors only with `-q`.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = if quiet {
        "error"
    } else {
        match verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Whether progress may be drawn (stderr is a terminal and not quiet).
pub fn progress_allowed(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// `1.5 GiB`-style sizes.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// `1min 12s`-style durations (written with the units durations are read with: `m` alone is
/// never used, as it is minutes to some and months to others).
pub fn duration(secs: f64) -> String {
    if secs < 10.0 {
        return format!("{secs:.2}s");
    }
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}min {}s", s / 60, s % 60),
        _ => format!("{}h {}min {}s", s / 3600, (s % 3600) / 60, s % 60),
    }
}

/// The exit status a shell reports for a process ended by SIGPIPE (128 + 13).
pub const CLOSED_PIPE_STATUS: i32 = 141;

/// Writes to standard output (this crate's `println!`).
pub fn print_out(args: std::fmt::Arguments<'_>) {
    write_or_exit(&mut std::io::stdout().lock(), args);
}

/// Writes to standard error (this crate's `eprintln!`).
pub fn print_err(args: std::fmt::Arguments<'_>) {
    write_or_exit(&mut std::io::stderr().lock(), args);
}

/// Writes `args`; a closed output (`coffer snapshots | head`) ends the process quietly with the
/// status a shell reports for SIGPIPE, as other Unix tools do. SIGPIPE itself stays ignored
/// (Rust's default) so that writes to a closed socket fail with EPIPE instead of killing the
/// process: with SIGPIPE's default action, a storage connection reset while a request body was
/// being written (hyper writes with `writev`, which cannot pass `MSG_NOSIGNAL`) killed a whole
/// backup. Other write errors are ignored, as `println!`'s are not, but a report that cannot be
/// printed is no reason to undo the work it reports.
fn write_or_exit(w: &mut impl std::io::Write, args: std::fmt::Arguments<'_>) {
    if let Err(e) = w.write_fmt(args).and_then(|_| w.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(CLOSED_PIPE_STATUS);
        }
    }
}

/// Prints a JSON document on stdout.
pub fn print_json(v: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON output serializes")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = coffer_core::Error::io("cannot back up /x", io);
        let err = anyhow::Error::new(e);
        assert_eq!(
            one_line(&err),
            "cannot back up /x: No such file or directory"
        );
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&err), "outer: inner");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.50 KiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.00 GiB");
        assert_eq!(duration(1.234), "1.23s");
        assert_eq!(duration(72.0), "1min 12s");
        assert_eq!(duration(3723.0), "1h 2min 3s");
    }
}
