//! What a real test server said, shown when the test using it fails: the last
//! [`TAIL_LINES`] lines of each of its logs (its output and, for MariaDB, its error log) are
//! printed to stderr, which the test harness shows with the failure, so a CI failure shows the
//! server's side too. With `COFFER_TEST_SERVER_LOGS=DIR` every server's whole logs are also
//! copied into DIR when it stops, failure or not (to read the server's side of a loop of runs).
//!
//! * A server a test owns prints from its `Drop` while the test's panic unwinds
//!   ([`crate::servers::ServerProcess`] calls [`ServerLogs::print_if_panicking`]).
//! * A server shared by the tests of one process is never dropped: each test thread that asks
//!   for it is tied to it ([`ServerLogs::watch_from_this_thread`]), and a panic hook (installed
//!   once, after the previous hook) prints its logs when that thread panics.

use std::cell::RefCell;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// How many lines of each log a failed test prints.
pub const TAIL_LINES: usize = 100;

/// At most this much of a log's end is read (a shared server's log can grow large).
const TAIL_BYTES: u64 = 256 * 1024;

/// A printed line longer than this is cut (a server may log a whole statement).
const LINE_CHARS: usize = 2000;

/// The environment variable naming a folder that keeps every server's logs.
pub const KEEP_ENV: &str = "COFFER_TEST_SERVER_LOGS";

/// The log files of one server process.
#[derive(Debug)]
pub struct ServerLogs {
    name: String,
    files: Vec<PathBuf>,
    /// Whether its tail was printed for the current failure already (a test owning a server
    /// prints it once, however many of its handles are dropped).
    printed: AtomicBool,
}

impl Clone for ServerLogs {
    fn clone(&self) -> Self {
        ServerLogs {
            name: self.name.clone(),
            files: self.files.clone(),
            printed: AtomicBool::new(false),
        }
    }
}

impl ServerLogs {
    /// The logs of the server called `name` (`mariadbd`, `postgres`, ...).
    pub fn new(name: &str, files: Vec<PathBuf>) -> ServerLogs {
        ServerLogs {
            name: name.to_string(),
            files,
            printed: AtomicBool::new(false),
        }
    }

    /// Adds a file the server writes besides its output (MariaDB's `--log-error`).
    pub fn add(&mut self, file: &Path) {
        self.files.push(file.to_path_buf());
    }

    /// The files, in the order they were given.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The last `n` lines of each log under a header naming the server and the file; an empty
    /// log says so, a missing one says why.
    pub fn tail(&self, n: usize) -> String {
        let mut out = String::new();
        for file in &self.files {
            out.push_str(&format!(
                "---- {}: the last {n} lines of {} ----\n",
                self.name,
                file.display()
            ));
            match read_end(file, TAIL_BYTES) {
                Ok(text) if text.trim().is_empty() => out.push_str("(empty)\n"),
                Ok(text) => {
                    for line in last_lines(&text, n).lines() {
                        let cut: String = line.chars().take(LINE_CHARS).collect();
                        out.push_str(&cut);
                        if cut.len() < line.len() {
                            out.push_str(" [...]");
                        }
                        out.push('\n');
                    }
                }
                Err(e) => out.push_str(&format!("(cannot be read: {e})\n")),
            }
        }
        out.push_str(&format!("---- end of {}'s logs ----\n", self.name));
        out
    }

    /// Prints [`ServerLogs::tail`] to stderr when this thread is panicking (a failing test
    /// unwinding), once.
    pub fn print_if_panicking(&self) {
        if std::thread::panicking() && !self.printed.swap(true, Ordering::SeqCst) {
            emit(&self.tail(TAIL_LINES));
        }
    }

    /// Copies every log into the folder `COFFER_TEST_SERVER_LOGS` names, if set (see
    /// [`ServerLogs::keep_in`]).
    pub fn keep(&self, pid: u32) {
        if let Some(dir) = std::env::var_os(KEEP_ENV) {
            self.keep_in(Path::new(&dir), pid);
        }
    }

    /// Copies every log into `dir` (created if missing) as `NAME-PID-FILE` (`pid`: the server's
    /// process id, which tells runs apart).
    pub fn keep_in(&self, dir: &Path, pid: u32) {
        let _ = fs::create_dir_all(dir);
        for file in &self.files {
            let base = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = fs::copy(file, dir.join(format!("{}-{pid}-{base}", self.name)));
        }
    }

    /// Ties this server to the current thread: if the thread panics later, the panic hook
    /// prints the server's logs. For servers shared by the tests of a process.
    pub fn watch_from_this_thread(&self) {
        install_hook();
        let _ = WATCHED.try_with(|w| {
            if let Ok(mut w) = w.try_borrow_mut() {
                if !w.iter().any(|l| l.files == self.files) {
                    w.push(self.clone());
                }
            }
        });
    }
}

thread_local! {
    /// The shared servers the current thread uses.
    static WATCHED: RefCell<Vec<ServerLogs>> = const { RefCell::new(Vec::new()) };
}

/// The tails of the shared servers the current thread uses (empty when it uses none): what the
/// panic hook prints.
pub fn watched_tails() -> String {
    WATCHED
        .try_with(|w| {
            w.try_borrow()
                .map(|w| w.iter().map(|l| l.tail(TAIL_LINES)).collect::<String>())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            let tails = watched_tails();
            if !tails.is_empty() {
                emit(&tails);
            }
        }));
    });
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    match body.rmatch_indices('\n').nth(n - 1) {
        Some((i, _)) => &text[i + 1..],
        None => text,
    }
}

/// The last `max` bytes of `path` as text (lossy; a first partial line is dropped).
fn read_end(path: &Path, max: u64) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        if let Some(i) = text.find('\n') {
            return Ok(text[i + 1..].to_string());
        }
    }
    Ok(text)
}

#[cfg(test)]
thread_local! {
    /// In this crate's tests: where [`emit`] writes instead of stderr, when set.
    static CAPTURED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Writes a report to stderr (which the test harness captures and shows with a failure).
fn emit(text: &str) {
    #[cfg(test)]
    {
        let mut taken = Some(text);
        let _ = CAPTURED.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                if let Some(buf) = c.as_mut() {
                    buf.push_str(taken.take().unwrap_or_default());
                }
            }
        });
        if taken.is_none() {
            return;
        }
    }
    eprint!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servers::ServerProcess;
    use std::process::Command;

    /// Runs `f` on a thread of its own whose reports are captured; returns whether `f`
    /// panicked and what was reported.
    fn captured(f: impl FnOnce() + Send + 'static) -> (bool, String) {
        std::thread::spawn(move || {
            CAPTURED.with(|c| *c.borrow_mut() = Some(String::new()));
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
            (panicked, CAPTURED.with(|c| c.borrow_mut().take()).unwrap())
        })
        .join()
        .unwrap()
    }

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn the_tail_names_the_server_and_each_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let err = dir.path().join("err");
        let text: String = (1..=150).map(|i| format!("line {i}\n")).collect();
        fs::write(&out, text).unwrap();
        fs::write(&err, "").unwrap();
        let mut logs = ServerLogs::new("srv", vec![out.clone()]);
        logs.add(&err);
        logs.add(&dir.path().join("missing"));
        let tail = logs.tail(100);
        assert!(tail.contains(&format!("srv: the last 100 lines of {}", out.display())));
        assert!(
            tail.contains("line 51\n") && tail.contains("line 150\n"),
            "{tail}"
        );
        assert!(!tail.contains("line 50\n"), "{tail}");
        assert!(tail.contains("(empty)"), "{tail}");
        assert!(tail.contains("(cannot be read:"), "{tail}");
        // A long log: only its end is read, from a whole line.
        let long: String = (0..100_000).map(|i| format!("entry {i}\n")).collect();
        fs::write(&out, long).unwrap();
        let tail = ServerLogs::new("srv", vec![out]).tail(3);
        assert!(
            tail.contains("entry 99997\nentry 99998\nentry 99999\n"),
            "{tail}"
        );
    }

    /// A test owning a server that fails prints the server's output; one that passes does not.
    #[test]
    fn a_failing_test_prints_its_servers_logs() {
        let server = || {
            let dir = tempfile::tempdir().unwrap();
            let mut cmd = Command::new("sh");
            cmd.args([
                "-c",
                "echo server says hello; echo and warns >&2; exec sleep 30",
            ]);
            let mut p = ServerProcess::spawn("fake-server", cmd, &dir.path().join("log"));
            fs::write(dir.path().join("err"), "[ERROR] the error log\n").unwrap();
            p.add_log(&dir.path().join("err"));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !p.logs().tail(10).contains("and warns") {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the fake server wrote nothing"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            (dir, p)
        };
        let (panicked, report) = captured(move || {
            let (_dir, _p) = server();
            panic!("the test failed");
        });
        assert!(panicked);
        assert!(
            report.contains("fake-server: the last 100 lines of"),
            "{report}"
        );
        assert!(
            report.contains("server says hello\nand warns\n"),
            "{report}"
        );
        assert!(report.contains("[ERROR] the error log"), "{report}");
        let (panicked, report) = captured(move || drop(server()));
        assert!(!panicked);
        assert_eq!(report, "", "a passing test printed logs");
    }

    /// A thread tied to a shared server prints its logs when it panics; other threads do not.
    #[test]
    fn a_failing_test_prints_the_shared_servers_it_used() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shared.log");
        fs::write(&file, "shared server line\n").unwrap();
        let logs = ServerLogs::new("shared-server", vec![file]);
        let watched = logs.clone();
        let (panicked, report) = captured(move || {
            watched.watch_from_this_thread();
            panic!("the test failed");
        });
        assert!(panicked);
        assert!(
            report.contains("shared-server: the last 100 lines"),
            "{report}"
        );
        assert!(report.contains("shared server line"), "{report}");
        let (panicked, report) = captured(|| panic!("another test failed"));
        assert!(panicked);
        assert!(!report.contains("shared-server"), "{report}");
        assert_eq!(watched_tails(), "", "this thread watches nothing");
        drop(logs);
    }

    #[test]
    fn logs_are_kept_in_the_named_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("err");
        fs::write(&file, "kept line\n").unwrap();
        let keep = dir.path().join("kept");
        ServerLogs::new("srv", vec![file]).keep_in(&keep, 42);
        assert_eq!(
            fs::read_to_string(keep.join("srv-42-err")).unwrap(),
            "kept line\n"
        );
    }
}
