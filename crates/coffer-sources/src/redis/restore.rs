//! The Redis restore: the snapshot's RDB is parsed as it streams out of the repository, and
//! every key is sent to the target with `RESTORE key ttl payload REPLACE ABSTTL` (the payload is
//! the key's serialized value exactly as the RDB holds it, with a version and CRC-64, so the
//! target's own loader decodes it), pipelined. The dbs it replaces are emptied first. Keys are
//! counted in the target afterwards (`DBSIZE`) and compared with the manifest.

use super::chan::{chan_reader, forward_segments};
use super::rdb::{self, dump_payload, show_key, Item, Options, Parser};
use super::resp::{info, keyspace, rdb_version_of, Conn, Reply};
use super::{db_number, segments};
use crate::database::{
    source_error, CountCheck, DbManifest, RestoreReport, RestoreRequest, StreamSource, TargetState,
};
use coffer_core::{Error, ErrorKind, Result};
use std::collections::BTreeMap;

/// Commands sent before their replies are read.
const BATCH_COMMANDS: usize = 512;
/// Bytes sent before the replies are read.
const BATCH_BYTES: usize = 8 << 20;

/// Which dbs of the target the restore empties.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Flush {
    /// The whole server (`FLUSHALL`).
    All,
    /// These dbs (`FLUSHDB`).
    Dbs(Vec<u32>),
}

/// Where each db of the snapshot goes.
#[derive(Debug, Clone)]
struct Plan {
    /// Snapshot db to target db.
    map: BTreeMap<u32, u32>,
    flush: Flush,
}

fn snapshot_dbs(m: &DbManifest) -> Result<Vec<u32>> {
    m.databases
        .iter()
        .map(|d| {
            d.name.parse::<u32>().map_err(|_| {
                Error::corrupt(format!(
                    "the snapshot's manifest names Redis db {:?}, which is not a number",
                    d.name
                ))
            })
        })
        .collect()
}

fn plan(m: &DbManifest, req: &RestoreRequest) -> Result<Plan> {
    if !req.tables.is_empty() {
        return Err(Error::invalid(
            "a Redis snapshot has no tables: restore whole dbs (--database N picks one)",
        ));
    }
    if req.schema_only {
        return Err(Error::invalid(
            "a Redis snapshot has no schema: --schema-only does not apply",
        ));
    }
    let target = req.target()?;
    let have = snapshot_dbs(m)?;
    let selected = match req.database.as_deref() {
        None => None,
        Some(s) => {
            let d: u32 = s.parse().map_err(|_| {
                Error::invalid(format!(
                    "--database {s:?}: a Redis db is a number (0, 1, ...)"
                ))
            })?;
            if !have.contains(&d) {
                return Err(Error::not_found(format!(
                    "the snapshot holds no keys in db {d} (dbs with keys: {})",
                    list(&have)
                )));
            }
            Some(d)
        }
    };
    let sources: Vec<u32> = match selected {
        Some(d) => vec![d],
        None => have.clone(),
    };
    let only_db = m
        .details
        .get("only_db")
        .and_then(|v| v.as_u64())
        .map(|d| d as u32);
    match db_number(target)? {
        Some(t) => {
            if sources.len() > 1 {
                return Err(Error::invalid(format!(
                    "the snapshot holds dbs {}, and the target names one db: pick the db to \
                     restore with --database N, or give a target without a db \
                     (redis://HOST:PORT) to restore every db into its own number",
                    list(&sources)
                )));
            }
            Ok(Plan {
                map: sources.iter().map(|s| (*s, t)).collect(),
                flush: Flush::Dbs(vec![t]),
            })
        }
        None => {
            let map: BTreeMap<u32, u32> = sources.iter().map(|s| (*s, *s)).collect();
            let flush = if m.whole_server && selected.is_none() {
                Flush::All
            } else if map.is_empty() {
                Flush::Dbs(only_db.into_iter().collect())
            } else {
                Flush::Dbs(map.values().copied().collect())
            };
            Ok(Plan { map, flush })
        }
    }
}

fn list(dbs: &[u32]) -> String {
    if dbs.is_empty() {
        return "none".into();
    }
    dbs.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The keys the restore would replace: per affected db of the target.
fn affected(plan: &Plan, space: &BTreeMap<u32, u64>) -> BTreeMap<u32, u64> {
    space
        .iter()
        .filter(|(db, _)| match &plan.flush {
            Flush::All => true,
            Flush::Dbs(d) => d.contains(db),
        })
        .map(|(d, k)| (*d, *k))
        .collect()
}

/// Describes the target server: reachable, and the keys in the dbs the restore would replace.
pub async fn probe_target(m: &DbManifest, req: &RestoreRequest) -> Result<TargetState> {
    let plan = plan(m, req)?;
    let target = req.target()?;
    let mut conn = Conn::connect(target).await?;
    let version = info(&mut conn, "server")
        .await?
        .into_iter()
        .find(|(k, _)| k == "redis_version")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let space = keyspace(&mut conn).await?;
    let hit = affected(&plan, &space);
    let total: u64 = hit.values().sum();
    let what = match &plan.flush {
        Flush::All => "the whole server".to_string(),
        Flush::Dbs(d) => format!("db {}", list(d)),
    };
    let summary = if total == 0 {
        format!("Redis {version} at {}: {what} holds no keys", conn.addr)
    } else {
        format!(
            "Redis {version} at {}: {what} holds {total} key{} ({})",
            conn.addr,
            plural(total),
            hit.iter()
                .map(|(d, k)| format!("db{d}: {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok(TargetState {
        exists: true,
        empty: total == 0,
        summary,
        conflicts: hit
            .iter()
            .map(|(d, k)| format!("db{d} ({k} key{})", plural(*k)))
            .collect(),
    })
}

/// What has been done so far, for error messages.
#[derive(Default)]
struct Progress {
    flushed: bool,
    restored: BTreeMap<u32, u64>,
}

impl Progress {
    fn state(&self, plan: &Plan) -> String {
        if !self.flushed {
            return "the target was not changed".into();
        }
        let emptied = match &plan.flush {
            Flush::All => "every db of the target was emptied".to_string(),
            Flush::Dbs(d) => format!("db {} of the target was emptied", list(d)),
        };
        let done: u64 = self.restored.values().sum();
        format!(
            "{emptied} and holds the {done} key{} restored so far",
            plural(done)
        )
    }
}

/// Loads the snapshot into the target server, replacing the data of the dbs it restores.
pub async fn restore(
    src: &StreamSource,
    m: &DbManifest,
    req: &RestoreRequest,
) -> Result<RestoreReport> {
    let plan = plan(m, req)?;
    let target = req.target()?;
    if let Some(why) = m.details.get("unparsed").and_then(|v| v.as_str()) {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "this snapshot cannot be restored key by key: {why}. Write the RDB file with \
                 `coffer dump SNAPSHOT > dump.rdb` and start redis-server with it (and the \
                 module loaded): redis-server --dir DIR --dbfilename dump.rdb"
            ),
        ));
    }
    let segs = segments(m, src)?;
    let mut progress = Progress::default();
    let mut conn = Conn::connect(target).await?;
    let result = run(src, m, req, &plan, &segs, &mut conn, &mut progress).await;
    match result {
        Ok(r) => Ok(r),
        Err(e) => {
            let e = e.context(format!(
                "restoring into {} ({})",
                target.redacted(),
                progress.state(&plan)
            ));
            Err(if progress.flushed { e } else { e.untouched() })
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    src: &StreamSource,
    m: &DbManifest,
    req: &RestoreRequest,
    plan: &Plan,
    segs: &[String],
    conn: &mut Conn,
    progress: &mut Progress,
) -> Result<RestoreReport> {
    let target = req.target()?;
    let server = info(conn, "server").await?;
    let version = server
        .iter()
        .find(|(k, _)| k == "redis_version")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let snap_rdb = m
        .details
        .get("rdb_version")
        .and_then(|v| v.as_u64())
        .unwrap_or(rdb::MAX_VERSION as u64) as u32;
    let target_rdb = rdb_version_of(&version).unwrap_or(snap_rdb);
    let payload_version = snap_rdb.min(target_rdb);

    let space = keyspace(conn).await?;
    let hit = affected(plan, &space);
    if !req.clean && !hit.is_empty() {
        return Err(Error::invalid(format!(
            "the target is not empty ({}): restore with --clean to replace its data",
            hit.iter()
                .map(|(d, k)| format!("db{d}: {k} key{}", plural(*k)))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    match &plan.flush {
        Flush::All => {
            conn.call_ok("FLUSHALL (emptying the target)", &[b"FLUSHALL"])
                .await?;
        }
        Flush::Dbs(dbs) => {
            for d in dbs {
                let n = d.to_string();
                conn.call_ok(&format!("SELECT {d}"), &[b"SELECT", n.as_bytes()])
                    .await?;
                conn.call_ok(&format!("FLUSHDB (emptying db {d})"), &[b"FLUSHDB"])
                    .await?;
            }
        }
    }
    progress.flushed = true;

    // The parser runs on a blocking thread and hands over one key at a time.
    let (in_tx, reader) = chan_reader(8);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(64);
    let parser = tokio::task::spawn_blocking(move || -> Result<()> {
        let opts = Options {
            decode_keys: true,
            capture_values: true,
            ..Options::default()
        };
        let mut p = Parser::new(reader, opts)?;
        while let Some(item) = p.next_item()? {
            if tx.blocking_send(item).is_err() {
                return Ok(()); // the sender side failed; its error is reported
            }
        }
        p.finish().map(|_| ())
    });

    let mut selected: Option<u32> = None;
    let mut pending: Vec<String> = Vec::new();
    let mut expired: BTreeMap<u32, u64> = BTreeMap::new();
    let mut functions: Vec<u8> = Vec::new();
    let mut sent: BTreeMap<u32, u64> = BTreeMap::new();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let sending = async {
        while let Some(item) = rx.recv().await {
            let e = match item {
                Item::Function(body) => {
                    functions.extend_from_slice(&body);
                    continue;
                }
                Item::Entry(e) => e,
            };
            let Some(&dst) = plan.map.get(&e.db) else {
                continue;
            };
            if e.expire_ms.is_some_and(|t| t <= now_ms) {
                *expired.entry(e.db).or_default() += 1;
                continue;
            }
            if rdb::type_min_version(e.value_type) > target_rdb {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "the key {} of db {} is a {} stored in a format Redis {version} \
                         cannot read (RDB type {}): restore into a newer Redis",
                        show_key(&e.key),
                        e.db,
                        rdb::type_name(e.value_type),
                        e.value_type
                    ),
                ));
            }
            if selected != Some(dst) {
                let n = dst.to_string();
                conn.queue(&[b"SELECT", n.as_bytes()]);
                pending.push(format!("SELECT {dst}"));
                selected = Some(dst);
            }
            let ttl = e.expire_ms.unwrap_or(0).to_string();
            let payload = dump_payload(e.payload, payload_version);
            conn.queue(&[
                b"RESTORE",
                &e.key,
                ttl.as_bytes(),
                &payload,
                b"REPLACE",
                b"ABSTTL",
            ]);
            pending.push(format!(
                "RESTORE of the key {} ({}) into db {dst}",
                show_key(&e.key),
                rdb::type_name(e.value_type)
            ));
            *sent.entry(dst).or_default() += 1;
            if pending.len() >= BATCH_COMMANDS || conn.queued_bytes() >= BATCH_BYTES {
                drain(conn, &mut pending, &sent, progress).await?;
            }
        }
        let r = drain(conn, &mut pending, &sent, progress).await;
        drop(rx);
        r
    };
    let ((), send_result) = tokio::join!(forward_segments(src, segs, in_tx), sending);
    let parsed = parser
        .await
        .map_err(|e| Error::new(ErrorKind::Source, format!("the RDB parser panicked: {e}")))?;
    parsed.map_err(|e| e.context("reading the snapshot's RDB"))?;
    send_result?;

    let mut warnings = Vec::new();
    if !functions.is_empty() {
        if plan.flush == Flush::All {
            let payload = dump_payload(functions, payload_version);
            let reply = conn
                .call(&[b"FUNCTION", b"RESTORE", &payload, b"REPLACE"])
                .await?;
            if let Reply::Error(e) = reply {
                warnings.push(format!(
                    "the snapshot's function libraries were not restored: {e}"
                ));
            }
        } else {
            warnings.push(
                "the snapshot holds function libraries; they are restored only into a whole \
                 server (a target URL without a db)"
                    .into(),
            );
        }
    }

    let mut report = RestoreReport {
        target: target.redacted(),
        ..RestoreReport::default()
    };
    for (src_db, dst) in &plan.map {
        let n = dst.to_string();
        conn.call_ok(&format!("SELECT {dst}"), &[b"SELECT", n.as_bytes()])
            .await?;
        let actual = match conn.call_ok("DBSIZE", &[b"DBSIZE"]).await? {
            Reply::Int(n) => n.max(0) as u64,
            r => return Err(source_error(format!("DBSIZE answered {r:?}"))),
        };
        let in_manifest = m
            .databases
            .iter()
            .find(|d| d.name == src_db.to_string())
            .and_then(|d| d.keys)
            .unwrap_or(0);
        let gone = expired.get(src_db).copied().unwrap_or(0);
        if gone > 0 {
            warnings.push(format!(
                "{gone} key{} of db {src_db} had expired since the backup and {} not restored",
                plural(gone),
                if gone == 1 { "was" } else { "were" }
            ));
        }
        report.counts.push(CountCheck {
            object: format!("db{dst}"),
            expected: in_manifest.saturating_sub(gone),
            actual,
        });
        report.restored.push(if src_db == dst {
            format!("db{dst}")
        } else {
            format!("db{src_db} -> db{dst}")
        });
    }
    report.warnings = warnings;
    Ok(report)
}

/// Sends the queued commands and checks every reply.
async fn drain(
    conn: &mut Conn,
    pending: &mut Vec<String>,
    sent: &BTreeMap<u32, u64>,
    progress: &mut Progress,
) -> Result<()> {
    conn.flush().await?;
    let mut first_error = None;
    for what in pending.drain(..) {
        if let Reply::Error(e) = conn.reply().await? {
            if first_error.is_none() {
                first_error = Some(source_error(format!("the {what} failed: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    progress.restored = sent.clone();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::{DatabaseInfo, DbUrl};

    fn manifest(dbs: &[u32], whole: bool) -> DbManifest {
        DbManifest {
            engine: "redis".into(),
            whole_server: whole,
            databases: dbs
                .iter()
                .map(|d| DatabaseInfo {
                    name: d.to_string(),
                    keys: Some(1),
                    ..DatabaseInfo::default()
                })
                .collect(),
            ..DbManifest::default()
        }
    }

    fn req(target: &str, database: Option<&str>) -> RestoreRequest {
        RestoreRequest {
            target: Some(DbUrl::parse(target).unwrap()),
            database: database.map(str::to_string),
            ..RestoreRequest::default()
        }
    }

    #[test]
    fn plans_map_dbs() {
        let whole = manifest(&[0, 3], true);
        let p = plan(&whole, &req("redis://h:1", None)).unwrap();
        assert_eq!(p.flush, Flush::All);
        assert_eq!(p.map, BTreeMap::from([(0, 0), (3, 3)]));
        let e = plan(&whole, &req("redis://h:1/5", None)).unwrap_err();
        assert!(e.to_string().contains("--database"), "{e}");
        let p = plan(&whole, &req("redis://h:1/5", Some("3"))).unwrap();
        assert_eq!(p.map, BTreeMap::from([(3, 5)]));
        assert_eq!(p.flush, Flush::Dbs(vec![5]));
        let p = plan(&whole, &req("redis://h:1", Some("3"))).unwrap();
        assert_eq!(p.flush, Flush::Dbs(vec![3]));
        assert!(plan(&whole, &req("redis://h:1", Some("7"))).is_err());
        assert!(plan(&whole, &req("redis://h:1", Some("x"))).is_err());
        let mut r = req("redis://h:1", None);
        r.tables = vec!["t".into()];
        assert!(plan(&whole, &r).is_err());

        let one = manifest(&[2], false);
        let p = plan(&one, &req("redis://h:1", None)).unwrap();
        assert_eq!(p.flush, Flush::Dbs(vec![2]));
    }
}
