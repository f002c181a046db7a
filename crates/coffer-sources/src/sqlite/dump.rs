//! `coffer dump` of a SQLite snapshot: the database file's bytes, exactly as stored.

use super::{database, stream_path};
use crate::database::{DbManifest, DumpRequest, StreamSource};
use coffer_core::{Error, ErrorKind, Result};
use futures::StreamExt;

/// Writes the snapshot's database file to `out` (its SHA-256 is checked at the end: a
/// mismatch is an error after the bytes were written).
pub async fn dump(
    src: &StreamSource,
    m: &DbManifest,
    req: &DumpRequest,
    out: &mut (dyn std::io::Write + Send),
) -> Result<()> {
    if !req.tables.is_empty() || req.schema_only || req.data_only {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "a SQLite dump is the whole database file: drop --table, --schema-only and --data-only (to take back single tables, use `coffer restore SNAPSHOT --target sqlite:///PATH --table NAME`)",
        ));
    }
    let db = database(m, req.database.as_deref())?;
    let path = stream_path(m, db);
    let mut chunks = Box::pin(src.chunks(&path)?);
    while let Some(c) = chunks.next().await {
        let c = c?;
        out.write_all(&c)
            .map_err(|e| Error::io("writing the dump", e))?;
    }
    out.flush().map_err(|e| Error::io("writing the dump", e))
}
