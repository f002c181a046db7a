//! RESP2 replies and their parser. A server's reply is hostile input: every length it states is
//! checked against a limit before anything is read or allocated for it (a line's length, a
//! bulk string's length, an array's element count, the nesting of arrays, the whole reply's
//! size and element count), and exceeding one is an error that names the limit. Memory grows
//! only with the bytes that actually arrive, never with a stated length alone.
//!
//! The limits are far above any reply to the commands Coffer sends (`AUTH`, `PING`, `INFO`,
//! `REPLCONF`, `PSYNC`, `SELECT`, `FLUSHDB`, `RESTORE`, `FUNCTION RESTORE`, `DBSIZE`), whose
//! largest, `INFO`, is a few kilobytes.

use crate::database::source_error;
use coffer_core::{Error, Result};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// The longest line (a status, an error, a length header, a replication header) read.
pub const MAX_LINE: usize = 64 * 1024;
/// The longest bulk string a reply may hold.
pub const MAX_BULK: u64 = 16 << 20;
/// The most elements a reply may hold, in all its arrays together.
pub const MAX_ELEMENTS: u64 = 1 << 16;
/// The deepest nesting of arrays in a reply.
pub const MAX_DEPTH: usize = 16;
/// The most bytes one reply may take, lines and bulk strings together.
pub const MAX_REPLY: u64 = 64 << 20;

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$...` (`None`: the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*...` (`None`: the null array).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a status or bulk reply.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// One line without its `\r\n` (or `\n`), at most [`MAX_LINE`] bytes. `addr` names the server
/// in errors.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, addr: &str) -> Result<Vec<u8>> {
    let mut line = Vec::new();
    // Room for the longest line and its `\r\n`.
    let limit = MAX_LINE as u64 + 2;
    let n = (&mut *r)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| lost(addr, e))?;
    if n == 0 {
        return Err(closed(addr));
    }
    if line.last() != Some(&b'\n') {
        if n as u64 == limit {
            return Err(source_error(format!(
                "Redis at {addr} sent a line longer than {MAX_LINE} bytes, the limit of a line \
                 Coffer reads (starting {})",
                shown(&line)
            )));
        }
        return Err(closed(addr));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(line)
}

/// Reads one whole reply.
pub async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R, addr: &str) -> Result<Reply> {
    // The arrays being filled: their elements so far and how many they announced.
    let mut stack: Vec<(Vec<Reply>, u64)> = Vec::new();
    let mut bytes: u64 = 0;
    let mut elements: u64 = 0;
    loop {
        let line = read_line(r, addr).await?;
        bytes += line.len() as u64 + 2;
        let bad = || protocol(addr, &line);
        let (kind, rest) = line.split_first().ok_or_else(|| protocol(addr, &line))?;
        let mut value = match kind {
            b'+' => Reply::Status(String::from_utf8_lossy(rest).into_owned()),
            b'-' => Reply::Error(String::from_utf8_lossy(rest).into_owned()),
            b':' => Reply::Int(number(rest).ok_or_else(bad)?),
            b'$' => match length(rest, "bulk string", addr).ok_or_else(bad)?? {
                None => Reply::Bulk(None),
                Some(n) => {
                    if n > MAX_BULK {
                        return Err(too_big(
                            addr,
                            format!("a bulk string of {n} bytes"),
                            format!("{MAX_BULK} bytes, the limit of a bulk string"),
                        ));
                    }
                    bytes += n + 2;
                    check_size(addr, bytes)?;
                    let mut b = Vec::new();
                    let got = (&mut *r)
                        .take(n + 2)
                        .read_to_end(&mut b)
                        .await
                        .map_err(|e| lost(addr, e))?;
                    if (got as u64) < n + 2 {
                        return Err(closed(addr));
                    }
                    if !b.ends_with(b"\r\n") {
                        return Err(source_error(format!(
                            "Redis at {addr} sent a bulk string of {n} bytes not followed by \
                             \\r\\n: it does not speak the Redis protocol as expected"
                        )));
                    }
                    b.truncate(n as usize);
                    Reply::Bulk(Some(b))
                }
            },
            b'*' => match length(rest, "array", addr).ok_or_else(bad)?? {
                None => Reply::Array(None),
                Some(0) => Reply::Array(Some(Vec::new())),
                Some(n) => {
                    if elements + n > MAX_ELEMENTS {
                        return Err(too_big(
                            addr,
                            format!("an array of {n} elements"),
                            format!("{MAX_ELEMENTS} elements, the limit of a reply"),
                        ));
                    }
                    if stack.len() >= MAX_DEPTH {
                        return Err(too_big(
                            addr,
                            format!("arrays nested more than {MAX_DEPTH} deep"),
                            format!("{MAX_DEPTH} levels, the limit of a reply"),
                        ));
                    }
                    // Announced elements count now, so nested arrays cannot each claim the
                    // whole allowance; room grows as elements arrive.
                    elements += n;
                    stack.push((Vec::with_capacity(n.min(64) as usize), n));
                    continue;
                }
            },
            _ => return Err(protocol(addr, &line)),
        };
        check_size(addr, bytes)?;
        loop {
            let Some((items, want)) = stack.last_mut() else {
                return Ok(value);
            };
            items.push(value);
            if (items.len() as u64) < *want {
                break;
            }
            let (items, _) = stack.pop().expect("not empty");
            value = Reply::Array(Some(items));
        }
    }
}

/// An integer of a reply (`:42`, a length): an optional `-` and digits, nothing else (no `+`,
/// no spaces), within `i64`.
fn number(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A bulk string's or array's length: `Some(Ok(None))` for the null value (`-1`), an error
/// for any other negative length, `None` for text that is not a number.
fn length(text: &[u8], what: &str, addr: &str) -> Option<Result<Option<u64>>> {
    let n = number(text)?;
    Some(match n {
        -1 => Ok(None),
        n if n < 0 => Err(source_error(format!(
            "Redis at {addr} announced a {what} of length {n}: a length is -1 (null) or at \
             least 0"
        ))),
        n => Ok(Some(n as u64)),
    })
}

fn check_size(addr: &str, bytes: u64) -> Result<()> {
    if bytes > MAX_REPLY {
        return Err(too_big(
            addr,
            format!("a reply of more than {bytes} bytes"),
            format!("{MAX_REPLY} bytes, the limit of a reply"),
        ));
    }
    Ok(())
}

fn too_big(addr: &str, what: String, limit: String) -> Error {
    source_error(format!(
        "Redis at {addr} sent {what}, more than {limit} Coffer reads; no reply to the commands \
         Coffer sends is that large: is it a Redis server?"
    ))
}

fn protocol(addr: &str, line: &[u8]) -> Error {
    source_error(format!(
        "{addr} does not speak the Redis protocol as expected (got {})",
        shown(line)
    ))
}

/// The first bytes of a line, escaped and quoted, for messages.
fn shown(line: &[u8]) -> String {
    let mut s = line[..line.len().min(100)].escape_ascii().to_string();
    s.truncate(100);
    format!("{s:?}")
}

fn closed(addr: &str) -> Error {
    source_error(format!("Redis at {addr} closed the connection"))
}

/// A failed read or write on the connection; the I/O error (which may carry a TLS error) stays
/// the source, for callers that look at it.
pub fn lost(addr: &str, e: std::io::Error) -> Error {
    source_error(format!("the connection to Redis at {addr} failed")).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Reply> {
        let mut r = bytes;
        read_reply(&mut r, "test:6379").await
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn err(bytes: &[u8]) -> String {
        format!("{:#}", run(parse(bytes)).unwrap_err())
    }

    #[test]
    fn well_formed_replies() {
        run(async {
            assert_eq!(parse(b"+OK\r\n").await.unwrap(), Reply::Status("OK".into()));
            assert_eq!(
                parse(b"-ERR no\r\n").await.unwrap(),
                Reply::Error("ERR no".into())
            );
            assert_eq!(parse(b":-42\r\n").await.unwrap(), Reply::Int(-42));
            assert_eq!(parse(b"$-1\r\n").await.unwrap(), Reply::Bulk(None));
            assert_eq!(
                parse(b"$5\r\na\r\nbc\r\n").await.unwrap(),
                Reply::Bulk(Some(b"a\r\nbc".to_vec()))
            );
            assert_eq!(parse(b"*-1\r\n").await.unwrap(), Reply::Array(None));
            assert_eq!(
                parse(b"*2\r\n*1\r\n:1\r\n$0\r\n\r\n").await.unwrap(),
                Reply::Array(Some(vec![
                    Reply::Array(Some(vec![Reply::Int(1)])),
                    Reply::Bulk(Some(Vec::new()))
                ]))
            );
            // Two replies in a row: each read takes one.
            let mut r: &[u8] = b"+A\r\n:2\r\n";
            assert_eq!(
                read_reply(&mut r, "x").await.unwrap(),
                Reply::Status("A".into())
            );
            assert_eq!(read_reply(&mut r, "x").await.unwrap(), Reply::Int(2));
        });
    }

    #[test]
    fn oversized_lengths_are_refused_before_anything_is_read_for_them() {
        // A stated length over the limit fails at once, with nothing behind it.
        let e = err(format!("${}\r\n", MAX_BULK + 1).as_bytes());
        assert!(
            e.contains("bulk string") && e.contains(&MAX_BULK.to_string()),
            "{e}"
        );
        let e = err(b"$9223372036854775807\r\n");
        assert!(e.contains(&MAX_BULK.to_string()), "{e}");
        let e = err(format!("*{}\r\n", MAX_ELEMENTS + 1).as_bytes());
        assert!(e.contains(&format!("{MAX_ELEMENTS} elements")), "{e}");
        // Nested arrays share one allowance of elements.
        let half = MAX_ELEMENTS / 2 + 1;
        let e = err(format!("*{half}\r\n*{half}\r\n").as_bytes());
        assert!(e.contains(&format!("{MAX_ELEMENTS} elements")), "{e}");
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        let e = err(deep.as_bytes());
        assert!(e.contains(&format!("{MAX_DEPTH} levels")), "{e}");
        // Just inside the depth limit is fine.
        let ok = "*1\r\n".repeat(MAX_DEPTH) + ":1\r\n";
        assert!(run(parse(ok.as_bytes())).is_ok());
    }

    #[test]
    fn the_whole_reply_is_capped() {
        // Bulk strings each within their limit, more than a reply's limit together: the one
        // that would pass the limit is refused at its header, before its bytes.
        let n = MAX_BULK as usize;
        let count = MAX_REPLY as usize / n;
        let mut data = format!("*{count}\r\n").into_bytes();
        for _ in 0..count - 1 {
            data.extend_from_slice(format!("${n}\r\n").as_bytes());
            data.extend(std::iter::repeat_n(b'x', n));
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(format!("${n}\r\n").as_bytes());
        let e = err(&data);
        assert!(e.contains(&format!("{MAX_REPLY} bytes")), "{e}");
    }

    #[test]
    fn long_lines_are_refused() {
        let mut long = vec![b'+'];
        long.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
        long.extend_from_slice(b"\r\n");
        let e = err(&long);
        assert!(e.contains(&format!("longer than {MAX_LINE} bytes")), "{e}");
        // A line of exactly the limit passes.
        let mut ok = vec![b'+'];
        ok.extend(std::iter::repeat_n(b'a', MAX_LINE - 1));
        ok.extend_from_slice(b"\r\n");
        assert!(run(parse(&ok)).is_ok());
    }

    #[test]
    fn negative_and_garbage_lengths_are_protocol_errors() {
        for bad in [&b"$-2\r\n"[..], b"*-7\r\n", b"$-9223372036854775808\r\n"] {
            let e = err(bad);
            assert!(e.contains("-1 (null) or at least 0"), "{e}");
        }
        for bad in [
            &b"$abc\r\n"[..],
            b"* 3\r\n",
            b"$+3\r\nabc\r\n",
            b":12x\r\n",
            b"$99999999999999999999\r\n",
            b"?what\r\n",
            b"\r\n",
        ] {
            let e = err(bad);
            assert!(
                e.contains("does not speak the Redis protocol"),
                "{bad:?}: {e}"
            );
        }
        // A bulk string whose bytes are not followed by CRLF.
        let e = err(b"$3\r\nabcde\r\n");
        assert!(e.contains("not followed by"), "{e}");
    }

    #[test]
    fn replies_cut_short_say_the_connection_closed() {
        for cut in [&b""[..], b"+OK", b"$10\r\nabc", b"*2\r\n:1\r\n"] {
            let e = err(cut);
            assert!(e.contains("closed the connection"), "{cut:?}: {e}");
        }
    }
}
