//! The Redis backup: a point-in-time RDB snapshot taken over the replication protocol, the way
//! a new replica (or `redis-cli --rdb`) gets one. The server forks and serializes its data as
//! of that instant; it is never stopped and keeps serving writes. The bytes stream from the
//! socket into the snapshot (as `rdb/head`, one `rdb/dbN` per db and `rdb/end`, which
//! concatenate to the file) while a skipping parser counts the keys of each db and checks the
//! file's checksum. Nothing is staged on disk or held whole in memory.

use super::chan::{chan_reader, ChanReader};
use super::rdb::{Options, Parser, RdbSink, Summary};
use super::resp::{info, keyspace, Conn};
use super::{db_number, SEGMENT_PREFIX};
use crate::database::{
    source_error, BackupContext, DatabaseInfo, DbManifest, StreamSink, StreamWriter,
};
use bytes::Bytes;
use coffer_core::{Error, ErrorKind, Result};
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The mark of a transfer that stopped because the parser stopped taking bytes (its own error
/// says why): the source of the transfer's error, found by type.
#[derive(Debug)]
struct ParserStopped;

impl std::fmt::Display for ParserStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the RDB parser stopped")
    }
}

impl std::error::Error for ParserStopped {}

impl ParserStopped {
    /// Whether `e` is a transfer that stopped because the parser did.
    fn is(e: &Error) -> bool {
        let mut cur = std::error::Error::source(e);
        while let Some(s) = cur {
            if s.is::<ParserStopped>() {
                return true;
            }
            cur = s.source();
        }
        false
    }
}

/// The longest the server may stay silent (no keepalive either) during the transfer.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Backs up the server `ctx.url` names (only its db when the URL names one).
pub async fn backup(ctx: &BackupContext) -> Result<DbManifest> {
    let url = &ctx.url;
    let only_db = if ctx.all_databases {
        None
    } else {
        db_number(url)?
    };
    let mut conn = Conn::connect(url).await?;
    let server = info(&mut conn, "server").await?;
    let memory = info(&mut conn, "memory").await?;
    let before = keyspace(&mut conn).await?;
    let field = |fields: &[(String, String)], k: &str| {
        fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    let version = field(&server, "redis_version").unwrap_or_default();

    let started = Instant::now();
    let (tx, rx) = chan_reader(16);
    let sink = ctx.sink.clone();
    let parser = tokio::task::spawn_blocking(move || parse_into_sink(sink, rx, only_db));
    let disk = url.params.iter().any(|(k, v)| k == "sync" && v == "disk");
    let transfer = transfer(&mut conn, tx, ctx.sink.clone(), disk).await;
    let parsed = parser
        .await
        .map_err(|e| Error::new(ErrorKind::Source, format!("the RDB parser panicked: {e}")))?;
    let form = match (transfer, parsed) {
        (Ok(form), Ok(summary)) => (form, summary),
        // The transfer stopped because the parser did: its error says why.
        (Err(t), Err(e)) if ParserStopped::is(&t) => {
            return Err(e.context(format!("backing up {}", url.redacted())))
        }
        (Err(e), _) | (_, Err(e)) => {
            return Err(e.context(format!("backing up {}", url.redacted())))
        }
    };
    let ((form, rdb_bytes), (summary, segments)) = form;
    let seconds = started.elapsed().as_secs_f64();
    let tls = conn.tls;
    drop(conn);

    let mut databases = Vec::new();
    let counted = summary.unparsed.is_none();
    if counted {
        for (db, c) in &summary.dbs {
            if c.keys > 0 {
                databases.push(DatabaseInfo {
                    name: db.to_string(),
                    size_bytes: c.bytes,
                    keys: Some(c.keys),
                    ..DatabaseInfo::default()
                });
            }
        }
    } else {
        // The parser stopped: name the dbs INFO saw, without exact counts.
        for db in before.keys() {
            if only_db.is_none_or(|d| d == *db) {
                databases.push(DatabaseInfo {
                    name: db.to_string(),
                    ..DatabaseInfo::default()
                });
            }
        }
    }
    let aux: serde_json::Map<String, serde_json::Value> = summary
        .aux
        .iter()
        .filter(|(k, _)| !k.starts_with("repl-"))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let details = json!({
        "segments": segments,
        "rdb_version": summary.version,
        "rdb_bytes": summary.output_bytes,
        "transfer_bytes": rdb_bytes,
        "transfer": form,
        "tls": tls,
        "transfer_seconds": (seconds * 1000.0).round() / 1000.0,
        "only_db": only_db,
        "used_memory": field(&memory, "used_memory").and_then(|v| v.parse::<u64>().ok()),
        "used_memory_human": field(&memory, "used_memory_human"),
        "redis_mode": field(&server, "redis_mode"),
        "os": field(&server, "os"),
        "keys_with_ttl": summary.dbs.values().map(|d| d.expires).sum::<u64>(),
        "functions": summary.functions,
        "module_aux": summary.module_aux,
        "key_counts": if counted { "exact, from the RDB snapshot" } else { "not counted" },
        "unparsed": summary.unparsed,
        "checksum": if summary.had_checksum { "verified" } else { "absent (rdbchecksum no)" },
        "aux": aux,
    });
    Ok(DbManifest {
        engine: "redis".into(),
        server_version: version,
        whole_server: only_db.is_none(),
        databases,
        streams: Vec::new(),
        details,
    })
}

/// The parser's side: reads the socket bytes from `input`, copies them (or one db of them)
/// into the snapshot's segments, counts the keys.
fn parse_into_sink(
    sink: Arc<StreamSink>,
    input: ChanReader,
    only_db: Option<u32>,
) -> Result<(Summary, Vec<String>)> {
    let out = Segments {
        sink,
        cur: None,
        paths: Vec::new(),
    };
    let opts = Options {
        only_db,
        tolerate_unparsed: only_db.is_none(),
        // Names keys in messages (a value Coffer cannot parse).
        decode_keys: true,
        ..Options::default()
    };
    let result = Parser::with_output(input, Some(out), opts).and_then(|p| p.finish());
    match result {
        Ok((summary, Some(out))) => Ok((summary, out.finish()?)),
        Ok((_, None)) => unreachable!("the parser was given a writer"),
        Err(e) => Err(e.context("reading the snapshot")),
    }
}

/// The RDB copy as several streams, so an unchanged db dedups to nothing even when the
/// header (which holds the time) changes: `rdb/head` (header, aux fields, functions), one
/// `rdb/dbN` per db, `rdb/end` (EOF opcode and checksum). Their concatenation is the file.
struct Segments {
    sink: Arc<StreamSink>,
    cur: Option<StreamWriter>,
    paths: Vec<String>,
}

impl Segments {
    fn open(&mut self, path: String) -> std::io::Result<()> {
        self.close()?;
        let path = if self.paths.contains(&path) {
            format!("{path}-{}", self.paths.len())
        } else {
            path
        };
        self.cur = Some(self.sink.add_writer(&path).map_err(std::io::Error::other)?);
        self.paths.push(path);
        Ok(())
    }

    fn close(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.cur.take() {
            w.finish().map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<String>> {
        self.close()
            .map_err(|e| Error::new(ErrorKind::Storage, "storing the RDB").with_source(e))?;
        Ok(self.paths)
    }
}

impl Write for Segments {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.cur.is_none() {
            self.open(format!("{SEGMENT_PREFIX}/head"))?;
        }
        self.cur.as_mut().expect("open").write(data)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl RdbSink for Segments {
    fn begin_db(&mut self, db: u32) -> std::io::Result<()> {
        self.open(format!("{SEGMENT_PREFIX}/db{db}"))
    }

    fn begin_end(&mut self) -> std::io::Result<()> {
        self.open(format!("{SEGMENT_PREFIX}/end"))
    }
}

/// Asks for a full resynchronization and forwards the RDB bytes to `tx`. Returns the transfer
/// form (`disk` or `diskless`) and the byte count.
async fn transfer(
    conn: &mut Conn,
    tx: tokio::sync::mpsc::Sender<Result<Bytes>>,
    sink: Arc<StreamSink>,
    disk: bool,
) -> Result<(&'static str, u64)> {
    let addr = conn.addr.clone();
    // Redis 7: only the RDB, no replication stream after it (older servers refuse; fine).
    let _ = conn.call(&[b"REPLCONF", b"rdb-only", b"1"]).await?;
    // Diskless by default (the server writes no file); `?sync=disk` asks for a file on the
    // server's disk instead (no `repl-diskless-sync-delay` wait).
    let capa: &[u8] = if disk { b"none" } else { b"eof" };
    if let super::resp::Reply::Error(e) = conn.call(&[b"REPLCONF", b"capa", capa]).await? {
        return Err(source_error(format!(
            "Redis at {addr} refused REPLCONF ({e}); the user needs the replication \
             commands (ACL: +psync +replconf +sync)"
        )));
    }
    conn.queue(&[b"PSYNC", b"?", b"-1"]);
    conn.flush().await?;
    // Newlines are keepalives while the server prepares (forks, waits for more replicas).
    let first = next_line(conn).await?;
    if first.starts_with(b"-") {
        return Err(source_error(format!(
            "Redis at {addr} refused to send a snapshot: {}; the user needs the replication \
             commands (ACL: +psync +replconf +sync), and a replica must be connected to its \
             master",
            String::from_utf8_lossy(&first[1..])
        )));
    }
    let header = if first.starts_with(b"+FULLRESYNC") || first.starts_with(b"+CONTINUE") {
        next_line(conn).await?
    } else {
        first
    };
    let header = String::from_utf8_lossy(&header).into_owned();
    let Some(spec) = header.strip_prefix('$') else {
        return Err(source_error(format!(
            "Redis at {addr} answered PSYNC with {header:?}, not a snapshot"
        )));
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    let cancelled = || {
        sink.session()
            .is_cancelled()
            .then(|| Error::new(ErrorKind::Interrupted, "the backup was interrupted"))
    };
    if let Some(mark) = spec.strip_prefix("EOF:") {
        // Diskless: the RDB streams as it is produced and ends with the 40-byte mark.
        let mark = mark.as_bytes().to_vec();
        if mark.len() != 40 {
            return Err(source_error(format!(
                "Redis at {addr} sent a malformed end mark ({} bytes)",
                mark.len()
            )));
        }
        let mut tail: Vec<u8> = Vec::new();
        loop {
            if let Some(e) = cancelled() {
                return Err(e);
            }
            let n = read_some(conn, &mut buf).await?;
            if n == 0 {
                return Err(source_error(format!(
                    "Redis at {addr} closed the connection in the middle of the snapshot \
                     (after {total} bytes)"
                )));
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.ends_with(&mark) {
                tail.truncate(tail.len() - mark.len());
                total += tail.len() as u64;
                send(&tx, std::mem::take(&mut tail)).await?;
                return Ok(("diskless", total));
            }
            if tail.len() > mark.len() {
                let keep = tail.split_off(tail.len() - mark.len());
                let out = std::mem::replace(&mut tail, keep);
                total += out.len() as u64;
                send(&tx, out).await?;
            }
        }
    }
    let len: u64 = spec.parse().map_err(|_| {
        source_error(format!(
            "Redis at {addr} announced a snapshot of {spec:?} bytes"
        ))
    })?;
    while total < len {
        if let Some(e) = cancelled() {
            return Err(e);
        }
        let want = (len - total).min(buf.len() as u64) as usize;
        let n = read_some(conn, &mut buf[..want]).await?;
        if n == 0 {
            return Err(source_error(format!(
                "Redis at {addr} closed the connection in the middle of the snapshot (after \
                 {total} of {len} bytes)"
            )));
        }
        total += n as u64;
        send(&tx, buf[..n].to_vec()).await?;
    }
    Ok(("disk", total))
}

async fn send(tx: &tokio::sync::mpsc::Sender<Result<Bytes>>, data: Vec<u8>) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    tx.send(Ok(Bytes::from(data))).await.map_err(|_| {
        Error::new(ErrorKind::Source, "the snapshot transfer stopped").with_source(ParserStopped)
    })
}

async fn read_some(conn: &mut Conn, buf: &mut [u8]) -> Result<usize> {
    let addr = conn.addr.clone();
    tokio::time::timeout(IDLE_TIMEOUT, conn.read_raw(buf))
        .await
        .map_err(|_| {
            source_error(format!(
                "Redis at {addr} sent nothing for {}s during the snapshot transfer",
                IDLE_TIMEOUT.as_secs()
            ))
        })?
}

/// The next non-empty line, skipping keepalive newlines.
async fn next_line(conn: &mut Conn) -> Result<Vec<u8>> {
    let addr = conn.addr.clone();
    let deadline = IDLE_TIMEOUT * 10;
    tokio::time::timeout(deadline, async {
        loop {
            let l = conn.line().await?;
            if !l.is_empty() {
                return Ok(l);
            }
        }
    })
    .await
    .map_err(|_| {
        source_error(format!(
            "Redis at {addr} did not start the snapshot within {}s",
            deadline.as_secs()
        ))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stopped_parser_is_known_by_type_not_by_text() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let e = send(&tx, vec![1]).await.unwrap_err();
        assert!(ParserStopped::is(&e));
        assert!(ParserStopped::is(&e.context("backing up")));
        let same_text = Error::new(ErrorKind::Source, "the snapshot transfer stopped")
            .with_source(std::io::Error::other("the RDB parser stopped"));
        assert!(!ParserStopped::is(&same_text));
    }
}
