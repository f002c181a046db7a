//! `coffer`: back up, restore, verify and check repositories.

// This crate's `println!`, `print!`, `eprintln!` and `eprint!`: the standard ones panic when the
// output is closed (`coffer snapshots | head`); these end the process quietly instead (see
// `output::write_or_exit`). Defined before the modules, so every module uses them.
macro_rules! println {
    () => { $crate::output::print_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::print_out(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! eprintln {
    () => { $crate::output::print_err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::print_err(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::output::print_err(format_args!($($arg)*)) };
}

mod cli;
mod commands;
mod context;
mod output;

use clap::Parser;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Raises the soft limit on open files to the hard limit, as Go programs (restic) do: a file
/// backup keeps hundreds of files open ahead of its readers, and the usual soft limit of 1024
/// would shorten that queue (the backup then adapts to the limit it finds).
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Buffers of at least this many bytes get their own mapping from glibc's malloc, returned to
/// the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 * 1024 * 1024;

/// Fixes glibc's mmap threshold. By default it rises to the size of the largest block freed (up
/// to 32 MiB), after which the 16 to 20 MiB pack buffers are carved from per-thread heaps that
/// keep freed memory: the peak RSS of the same backup then varied from 176 to 240 MiB between
/// runs (the Rust toolchain, 52k files). With a fixed threshold it is 123 MiB every time, at the
/// same speed.
fn fixed_mmap_threshold() {
    // SAFETY: mallopt only changes an allocator setting; called before any other thread starts.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// How long tasks that outlive the command get to finish.
const CLEANUP_GRACE: Duration = Duration::from_secs(2);

/// Waits until no task is left on the runtime, for at most [`CLEANUP_GRACE`]. Closing an SFTP
/// connection is such a task: it tells the connection's ssh master to exit (`ssh -O exit`), and
/// the master runs with `ControlPersist=yes`, so a command that ended without it left an ssh
/// process (and a session on the server) behind for good. Lock refreshers are aborted with their
/// lock; on a local repository nothing is left and this returns at once.
fn let_cleanup_finish(rt: &tokio::runtime::Runtime) {
    let deadline = Instant::now() + CLEANUP_GRACE;
    rt.block_on(async {
        while rt.metrics().num_alive_tasks() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

/// A command line clap does not accept: its message and usage on stderr, exit 2, and with
/// `--json` (anywhere before `--`) the error document on stdout too, as for every other error.
/// `--help` and `--version` print and exit 0 as clap's own.
fn refuse_command_line(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    let _ = e.print();
    if json {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        let msg = first.strip_prefix("error: ").unwrap_or(first);
        println!(
            "{}",
            serde_json::json!({ "error": msg, "exit_code": output::code::USAGE })
        );
    }
    ExitCode::from(output::code::USAGE)
}

fn main() -> ExitCode {
    raise_open_file_limit();
    fixed_mmap_threshold();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return refuse_command_line(e),
    };
    output::init_logging(args.global.verbose, args.global.quiet);
    let json = args.global.json;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(commands::run(args));
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            let code = output::exit_code_of(&err);
            output::print_error(&err, code, json);
            code
        }
    };
    let_cleanup_finish(&rt);
    // Past the grace, do not wait for what is left (a read stuck on a dead network mount).
    rt.shutdown_background();
    ExitCode::from(code)
}
