//! Reading a client tool's output into memory within limits. The tools (`pg_restore`,
//! `mariadb-dump`, `mariadb`) print what a server or a snapshot gives them, so what they print
//! is as hostile as its origin: output that Coffer needs whole (a list, a schema) is refused
//! past a limit, and messages (standard error) keep only their beginning and end.

use coffer_core::{Error, ErrorKind, Result};
use std::io::Read;

/// The most output [`read_capped`] callers accept: far above any schema or list.
pub const MAX_OUTPUT: u64 = 1 << 30;

/// How much of a tool's messages is kept: this much of their beginning and of their end.
pub const MESSAGES_KEPT: usize = 256 * 1024;

/// Reads `r` to its end, failing once it passes `limit` bytes. `what` names the output.
pub fn read_capped(r: impl Read, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Error::io(format!("{what}: reading its output"), e))?;
    if out.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("{what}: its output passed {limit} bytes, the most Coffer reads into memory"),
        ));
    }
    Ok(out)
}

/// Reads a tool's messages to their end (so the tool never blocks on a full pipe), keeping the
/// first and last [`MESSAGES_KEPT`] bytes, with a line saying how much was left out between.
pub fn read_messages(r: impl Read) -> String {
    read_messages_keeping(r, MESSAGES_KEPT)
}

fn read_messages_keeping(mut r: impl Read, keep: usize) -> String {
    let mut head = Vec::new();
    let mut tail = std::collections::VecDeque::new();
    let mut dropped: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut data = &buf[..n];
        if head.len() < keep {
            let k = data.len().min(keep - head.len());
            head.extend_from_slice(&data[..k]);
            data = &data[k..];
        }
        tail.extend(data.iter().copied());
        if tail.len() > keep {
            let extra = tail.len() - keep;
            tail.drain(..extra);
            dropped += extra as u64;
        }
    }
    let mut out = String::from_utf8_lossy(&head).into_owned();
    if dropped > 0 {
        out.push_str(&format!(
            "\n[... {dropped} bytes of messages left out ...]\n"
        ));
    }
    out.push_str(&String::from_utf8_lossy(tail.make_contiguous()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_limit_is_refused() {
        assert_eq!(read_capped(&b"abcd"[..], 4, "t").unwrap(), b"abcd");
        let e = read_capped(std::io::repeat(b'x'), 10, "pg_restore -l").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("passed 10 bytes"), "{e}");
    }

    #[test]
    fn messages_keep_their_beginning_and_end() {
        assert_eq!(read_messages_keeping(&b"short"[..], 8), "short");
        let text = "first line\n".to_string() + &"x".repeat(1000) + "\nlast error";
        let got = read_messages_keeping(text.as_bytes(), 11);
        assert_eq!(
            got,
            format!(
                "first line\n\n[... {} bytes of messages left out ...]\n\nlast error",
                text.len() - 22
            )
        );
        // Endless messages are read to their end without being held.
        let got = read_messages_keeping(std::io::repeat(b'y').take(10 << 20), 4);
        assert!(got.starts_with("yyyy\n[... "), "{got}");
        assert!(got.ends_with(" ...]\nyyyy"), "{got}");
    }
}
