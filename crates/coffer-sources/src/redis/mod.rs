//! The Redis source: `redis://[USER:PASSWORD@]HOST:PORT[/DB]` (`rediss://` for TLS).
//!
//! [`RedisEngine`] implements [`DatabaseEngine`]:
//!
//! * Backup (`backup.rs`): a point-in-time RDB snapshot over the replication protocol (the
//!   server forks; it is never stopped), streamed into the snapshot as `rdb/head`, one
//!   `rdb/dbN` per db and `rdb/end` (so an unchanged db dedups to nothing even though the
//!   header holds the time), while a skipping parser counts the keys of every db (see `rdb`). With a db in the URL, only that db is kept
//!   (the copy is re-checksummed, so it stays a valid RDB file). The server sends the snapshot
//!   straight over the socket (diskless); it waits `repl-diskless-sync-delay` (5 s by default)
//!   for other replicas first. `?sync=disk` in the URL asks for a disk-based transfer instead
//!   (the server writes its dump file, then sends it).
//! * Restore (`restore.rs`): each key is loaded with `RESTORE ... REPLACE ABSTTL` after the
//!   dbs it replaces are emptied; key counts are compared with the manifest.
//! * Dump (`dump` below): the RDB file itself, which `redis-server --dbfilename` loads.
//!
//! The password comes from the URL, the password file (the CLI puts it in the URL) or
//! `REDISCLI_AUTH`. `rediss://` connects over TLS (rustls; see `tls`): the server's
//! certificate must be valid for the URL's host and signed by a CA the system trusts, or by
//! the one `?tls_ca=/path/ca.pem` names; `?tls_cert=...&tls_key=...` give a client
//! certificate; `?tls_insecure=1` skips the certificate check (with a warning).

mod backup;
mod chan;
pub mod crc64;
pub mod lzf;
pub mod rdb;
mod reply;
mod resp;
mod restore;
mod tls;

use crate::database::{
    BackupContext, DatabaseEngine, DbManifest, DbUrl, DumpRequest, Engine, RestoreReport,
    RestoreRequest, StreamSource, TargetState,
};
use async_trait::async_trait;
use coffer_core::{Error, ErrorKind, Result};
use futures::StreamExt;

/// The Redis engine ([`DatabaseEngine`]).
pub struct RedisEngine;

#[async_trait]
impl DatabaseEngine for RedisEngine {
    fn engine(&self) -> Engine {
        Engine::Redis
    }

    fn example_target(&self) -> &'static str {
        "redis://HOST:6379"
    }

    async fn backup(&self, ctx: &BackupContext) -> Result<DbManifest> {
        backup::backup(ctx).await
    }

    async fn probe_target(&self, m: &DbManifest, req: &RestoreRequest) -> Result<TargetState> {
        restore::probe_target(m, req).await
    }

    async fn restore(
        &self,
        src: &StreamSource,
        m: &DbManifest,
        req: &RestoreRequest,
    ) -> Result<RestoreReport> {
        restore::restore(src, m, req).await
    }

    async fn dump(
        &self,
        src: &StreamSource,
        m: &DbManifest,
        req: &DumpRequest,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<()> {
        dump(src, m, req, out).await
    }
}

/// The folder of the streams holding the RDB file: `head`, one `dbN` per db, `end`; in the
/// order the manifest lists them (`details.segments`), they concatenate to the file.
pub const SEGMENT_PREFIX: &str = "rdb";

/// The db a URL names (`redis://host:port/3`), if any.
pub fn db_number(url: &DbUrl) -> Result<Option<u32>> {
    match url.database.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(d) => d.parse::<u32>().map(Some).map_err(|_| {
            Error::invalid(format!(
                "{}: a Redis URL names a db by its number (redis://HOST:PORT/0), not {d:?}",
                url.redacted()
            ))
        }),
    }
}

/// The streams that make up the RDB file, in order; each must be in the snapshot.
fn segments(m: &DbManifest, src: &StreamSource) -> Result<Vec<String>> {
    let list: Vec<String> = match m.details.get("segments").and_then(|v| v.as_array()) {
        Some(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        None => Vec::new(),
    };
    if list.is_empty() {
        return Err(Error::corrupt(
            "the snapshot's manifest lists no RDB streams: it is not a Redis backup Coffer can read",
        ));
    }
    if let Some(missing) = list.iter().find(|p| !src.contains(p)) {
        return Err(Error::corrupt(format!(
            "the snapshot has no stream {missing}, which its manifest lists"
        )));
    }
    Ok(list)
}

/// Writes the snapshot's RDB file to `out` (only db `req.database` when given and the snapshot
/// holds others too). `redis-check-rdb` accepts it and `redis-server --dbfilename` loads it.
async fn dump(
    src: &StreamSource,
    m: &DbManifest,
    req: &DumpRequest,
    out: &mut (dyn std::io::Write + Send),
) -> Result<()> {
    if !req.tables.is_empty() {
        return Err(Error::invalid(
            "a Redis snapshot has no tables: dump it whole, or one db with --database N",
        ));
    }
    if req.schema_only {
        return Err(Error::invalid(
            "a Redis snapshot has no schema: --schema-only does not apply",
        ));
    }
    let segs = segments(m, src)?;
    let only = match req.database.as_deref() {
        None => None,
        Some(s) => {
            let d: u32 = s.parse().map_err(|_| {
                Error::invalid(format!(
                    "--database {s:?}: a Redis db is a number (0, 1, ...)"
                ))
            })?;
            if !m.databases.iter().any(|x| x.name == s) {
                return Err(Error::not_found(format!(
                    "the snapshot holds no keys in db {d} (dbs with keys: {})",
                    m.databases
                        .iter()
                        .map(|x| x.name.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            (m.databases.len() > 1).then_some(d)
        }
    };
    let write_err = |e: std::io::Error| Error::io("writing the RDB file", e);
    match only {
        None => {
            for seg in &segs {
                let mut chunks = Box::pin(src.chunks(seg)?);
                while let Some(c) = chunks.next().await {
                    out.write_all(&c?).map_err(write_err)?;
                }
            }
        }
        Some(db) => {
            let (in_tx, input) = chan::chan_reader(8);
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
            let parser = tokio::task::spawn_blocking(move || -> Result<()> {
                let opts = rdb::Options {
                    only_db: Some(db),
                    ..rdb::Options::default()
                };
                let w = chan::ChanWriter::new(tx);
                rdb::Parser::with_output(input, Some(w), opts)?.finish()?;
                Ok(())
            });
            let forward = chan::forward_segments(src, &segs, in_tx);
            let write = async {
                while let Some(b) = rx.recv().await {
                    out.write_all(&b).map_err(write_err)?;
                }
                Ok::<(), Error>(())
            };
            let ((), written) = tokio::join!(forward, write);
            parser.await.map_err(|e| {
                Error::new(ErrorKind::Source, format!("the RDB parser panicked: {e}"))
            })??;
            written?;
        }
    }
    out.flush().map_err(write_err)
}
