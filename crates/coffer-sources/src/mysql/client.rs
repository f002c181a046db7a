//! Loading SQL scripts into a server through the `mariadb` (or `mysql`) client, fed from a
//! snapshot stream or from memory; its error output becomes the error message.

use super::conn::{Credentials, Server};
use crate::database::capture::read_messages;
use crate::database::{source_error, StreamReader};
use coffer_core::{Error, ErrorKind, Result};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// What the client reads.
pub enum Input {
    /// A snapshot stream.
    Stream(StreamReader),
    /// A script held in memory.
    Bytes(Vec<u8>),
}

/// How a client run went, when it did not fail.
pub struct Loaded {
    /// The client's error output (statements that failed under `--force`).
    pub stderr: String,
}

/// A client command for `db` (or no database), ready to be fed.
pub fn command(
    server: &Server,
    client: &Path,
    creds: &Credentials,
    db: Option<&str>,
    force: bool,
) -> Command {
    let mut cmd = server.command(client, creds);
    cmd.args([
        "--default-character-set=utf8mb4",
        "--max-allowed-packet=1073741824",
        "--batch",
    ]);
    if force {
        cmd.arg("--force");
    }
    if let Some(db) = db {
        cmd.arg(format!("--database={db}"));
    }
    cmd
}

/// Runs `cmd` with `input` on its standard input. `what` names the step for errors
/// (`loading the data of table app.users`).
pub async fn load(mut cmd: Command, input: Input, what: String) -> Result<Loaded> {
    tokio::task::spawn_blocking(move || {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .spawn()
            .map_err(|e| source_error(format!("{what}: cannot run {program}: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        // The client echoes each failed statement (rows of data): its messages are held within
        // a limit, read on their own thread so the client never blocks on them.
        let err = child.stderr.take().expect("piped stderr");
        let messages = std::thread::spawn(move || read_messages(err));
        let feeder = std::thread::spawn(move || -> std::io::Result<u64> {
            block_sigpipe();
            let n = match input {
                Input::Stream(mut r) => copy(&mut r, &mut stdin),
                Input::Bytes(b) => stdin.write_all(&b).map(|_| b.len() as u64),
            };
            drop(stdin);
            n
        });
        let status = child
            .wait()
            .map_err(|e| source_error(format!("{what}: waiting for {program}: {e}")))?;
        let fed = feeder
            .join()
            .map_err(|_| source_error(format!("{what}: the stream feeder panicked")))?;
        let stderr = messages
            .join()
            .map_err(|_| source_error(format!("{what}: the message reader panicked")))?
            .trim()
            .to_string();
        if let Err(e) = &fed {
            if e.kind() == std::io::ErrorKind::InvalidData {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!("{what}: the snapshot's stream is damaged: {e}"),
                ));
            }
        }
        if !status.success() {
            let errors = client_errors(&stderr);
            return Err(source_error(format!(
                "{what} failed ({program} {status}): {}",
                if errors.is_empty() {
                    "no error output"
                } else {
                    &errors
                }
            )));
        }
        if let Err(e) = fed {
            return Err(source_error(format!("{what}: feeding {program}: {e}")));
        }
        Ok(Loaded { stderr })
    })
    .await
    .map_err(|e| source_error(format!("a client run panicked: {e}")))?
}

/// The longest line of the client's error output quoted in an error.
const MAX_LINE: usize = 300;

/// The client's error output made fit for a message: without the statements it echoes between
/// `--------------` lines (an INSERT of a few megabytes of row data), each line cut to
/// [`MAX_LINE`] characters, and a hint for errors whose cause is not in their text.
fn client_errors(stderr: &str) -> String {
    let mut lines = Vec::new();
    let mut in_statement = false;
    for line in stderr.lines().map(str::trim) {
        if line.len() >= 10 && line.bytes().all(|b| b == b'-') {
            in_statement = !in_statement;
            continue;
        }
        if in_statement || line.is_empty() {
            continue;
        }
        let mut line = line.to_string();
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str("...");
        }
        // The client's text is all there is to go on (its exit status is 1 for every error);
        // the code only adds a hint to the message.
        if line.starts_with("ERROR 1114 ") {
            line.push_str(" (the server's disk is full, or the table reached its size limit)");
        }
        lines.push(line);
    }
    lines.join(" | ")
}

/// Blocks SIGPIPE in the calling thread. The `coffer` binary ignores SIGPIPE, but a program
/// using this library may give it its default action (which ends the process): then a client
/// that stops reading
/// (it failed on a statement: a full disk, a bad row) would kill Coffer silently mid-write
/// instead of the write failing with EPIPE and the client's error being reported. SIGPIPE is
/// sent to the writing thread, so blocking it here affects nothing else.
fn block_sigpipe() {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGPIPE);
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}

fn copy(r: &mut impl Read, w: &mut impl Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::client_errors;

    #[test]
    fn echoed_statements_are_left_out_and_causes_explained() {
        let stderr = format!(
            "--------------\nINSERT INTO `big` VALUES (1,0x{})\n--------------\n\nERROR 1114 (HY000) at line 9: The table 'big' is full\n",
            "AB".repeat(100_000)
        );
        assert_eq!(
            client_errors(&stderr),
            "ERROR 1114 (HY000) at line 9: The table 'big' is full (the server's disk is full, or the table reached its size limit)"
        );
        let long = "é".repeat(400);
        let got = client_errors(&format!("ERROR 1064 (42000) at line 1: {long}"));
        assert!(got.len() <= MAX + 3 && got.ends_with("..."), "{got}");
    }

    const MAX: usize = super::MAX_LINE;
}
