//! Loading SQL scripts into a server through the `mariadb` (or `mysql`) client, fed from a
//! snapshot stream or from memory; its error output becomes the error message.

use super::conn::{Credentials, Server};
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
        let feeder = std::thread::spawn(move || -> std::io::Result<u64> {
            let n = match input {
                Input::Stream(mut r) => copy(&mut r, &mut stdin),
                Input::Bytes(b) => stdin.write_all(&b).map(|_| b.len() as u64),
            };
            drop(stdin);
            n
        });
        let out = child
            .wait_with_output()
            .map_err(|e| source_error(format!("{what}: waiting for {program}: {e}")))?;
        let fed = feeder
            .join()
            .map_err(|_| source_error(format!("{what}: the stream feeder panicked")))?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if let Err(e) = &fed {
            if e.kind() == std::io::ErrorKind::InvalidData {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!("{what}: the snapshot's stream is damaged: {e}"),
                ));
            }
        }
        if !out.status.success() {
            return Err(source_error(format!(
                "{what} failed ({program} {}): {}",
                out.status,
                if stderr.is_empty() {
                    "no error output"
                } else {
                    &stderr
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
