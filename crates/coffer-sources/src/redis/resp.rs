//! A small Redis client speaking RESP2 over TCP or TLS (`rediss://`, see `tls`): connect,
//! authenticate, send commands (one at a time or pipelined) and read replies (parsed, within
//! limits, by `reply`); also the raw reads the replication transfer needs. Errors name the
//! server (never the password) and what to do.

pub use super::reply::Reply;
use super::reply::{lost, read_line, read_reply};
use super::tls::TlsOptions;
use crate::database::{source_error, DbUrl};
use coffer_core::{Error, ErrorKind, Result};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a command's reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// A byte stream to the server: plain TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection.
pub struct Conn {
    io: BufReader<Box<dyn Io>>,
    out: Vec<u8>,
    /// `host:port`, for messages.
    pub addr: String,
    /// How the server's certificate was checked (`None`: a plain connection).
    pub tls: Option<&'static str>,
}

/// The host and port a URL names (defaults: 127.0.0.1, 6379).
pub fn address(url: &DbUrl) -> Result<String> {
    if url.socket.is_some() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "{}: Redis over a unix socket is not supported; use redis://HOST:PORT",
                url.redacted()
            ),
        ));
    }
    let host = url.host.as_deref().unwrap_or("127.0.0.1");
    let port = url.port.unwrap_or(6379);
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// The password to use: the URL's (or the password file's, which the CLI puts there), else
/// `REDISCLI_AUTH`.
fn password(url: &DbUrl) -> Option<String> {
    url.password.clone().filter(|p| !p.is_empty()).or_else(|| {
        std::env::var("REDISCLI_AUTH")
            .ok()
            .filter(|p| !p.is_empty())
    })
}

impl Conn {
    /// Connects to the server `url` names (over TLS for `rediss://`) and authenticates (URL
    /// password, password file or `REDISCLI_AUTH`). Fails with a clear message on a refused
    /// connection, a failed TLS handshake or untrusted certificate, a wrong or missing
    /// password.
    pub async fn connect(url: &DbUrl) -> Result<Conn> {
        let addr = address(url)?;
        let tls = TlsOptions::from_url(url)?;
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(source_error(format!(
                    "cannot connect to Redis at {addr} ({}): {e}; is the server running, and \
                     are the host and port right?",
                    url.redacted()
                )))
            }
            Err(_) => {
                return Err(source_error(format!(
                    "cannot connect to Redis at {addr} ({}): no answer within {}s",
                    url.redacted(),
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        let (io, mode): (Box<dyn Io>, _) = match &tls {
            None => (Box::new(stream), None),
            Some(o) => {
                let host = url.host.as_deref().unwrap_or("127.0.0.1");
                let shown = url.redacted();
                let hs = o.handshake(stream, host, &addr, &shown);
                let s = tokio::time::timeout(CONNECT_TIMEOUT, hs)
                    .await
                    .map_err(|_| {
                        source_error(format!(
                            "the TLS handshake with Redis at {addr} ({shown}) got no answer \
                             within {}s; is it Redis's TLS port (redis-server --tls-port)?",
                            CONNECT_TIMEOUT.as_secs()
                        ))
                    })??;
                (Box::new(s), Some(o.mode()))
            }
        };
        let mut c = Conn {
            io: BufReader::with_capacity(256 * 1024, io),
            out: Vec::new(),
            addr,
            tls: mode,
        };
        // A TLS-only port drops a plain client at its first command, and a server that wants
        // a client certificate refuses a TLS 1.3 session only then: say what to do.
        let plain_hint = |c: &Conn, e: Error| -> Error {
            match c.tls {
                None => e.context(format!(
                    "talking to {} (if it takes TLS connections only, use rediss://HOST:PORT)",
                    c.addr
                )),
                Some(_) if tls_alert(&e).is_some() => e.context(format!(
                    "the server at {} refused the TLS session: if it requires client \
                     certificates (tls-auth-clients yes), give one signed by a CA it trusts \
                     with ?tls_cert=/path/to/cert.pem&tls_key=/path/to/key.pem",
                    c.addr
                )),
                Some(_) => e,
            }
        };
        if let Some(pw) = password(url) {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(u) = url.user.as_deref().filter(|u| !u.is_empty()) {
                args.push(u.as_bytes());
            }
            args.push(pw.as_bytes());
            let r = match c.call(&args).await {
                Ok(r) => r,
                Err(e) => return Err(plain_hint(&c, e)),
            };
            match r {
                // The server's reply text is all RESP2 gives: the error code (`ERR`) is shared
                // with every other failure, so only the text tells "no password is set" apart.
                Reply::Error(e) if e.contains("without any password configured") => {
                    tracing::warn!("{}: the server has no password; ignoring it", c.addr);
                }
                Reply::Error(e) => {
                    let who = url.user.as_deref().unwrap_or("default");
                    let e = e.replace(&pw, "***");
                    return Err(source_error(format!(
                        "Redis at {} refused the password for user {who}: {e}; check the \
                         password (in the URL, --db-password-file or REDISCLI_AUTH)",
                        c.addr
                    )));
                }
                _ => {}
            }
        }
        let r = match c.call(&[b"PING"]).await {
            Ok(r) => r,
            Err(e) => return Err(plain_hint(&c, e)),
        };
        match r {
            // A Redis error reply starts with its error code: the protocol's only typed part.
            Reply::Error(e) if e.starts_with("NOAUTH") => Err(source_error(format!(
                "Redis at {} needs a password: give it in the URL (redis://:PASSWORD@HOST:PORT), \
                 with --db-password-file FILE or in REDISCLI_AUTH",
                c.addr
            ))),
            Reply::Error(e) => Err(source_error(format!(
                "Redis at {} answered PING with an error: {e}",
                c.addr
            ))),
            _ => Ok(c),
        }
    }

    /// Queues a command (sent by [`Conn::flush`]).
    pub fn queue(&mut self, args: &[&[u8]]) {
        self.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            self.out
                .extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
    }

    /// Bytes queued and not yet sent.
    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

    /// Sends the queued commands.
    pub async fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let addr = self.addr.clone();
        let io = self.io.get_mut();
        io.write_all(&out).await.map_err(|e| lost(&addr, e))?;
        // TLS holds records back until flushed (a no-op for plain TCP).
        io.flush().await.map_err(|e| lost(&addr, e))?;
        self.out = out;
        self.out.clear();
        Ok(())
    }

    /// Sends one command and reads its reply (error replies are returned, not raised).
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Reply> {
        self.queue(args);
        self.flush().await?;
        self.reply().await
    }

    /// Like [`Conn::call`], but an error reply is an error naming `what`.
    pub async fn call_ok(&mut self, what: &str, args: &[&[u8]]) -> Result<Reply> {
        match self.call(args).await? {
            Reply::Error(e) => Err(source_error(format!(
                "Redis at {} refused {what}: {e}",
                self.addr
            ))),
            r => Ok(r),
        }
    }

    /// Reads the reply to the oldest queued command.
    pub async fn reply(&mut self) -> Result<Reply> {
        let addr = self.addr.clone();
        let r = tokio::time::timeout(REPLY_TIMEOUT, self.read_reply())
            .await
            .map_err(|_| {
                source_error(format!(
                    "Redis at {addr} sent no reply within {}s",
                    REPLY_TIMEOUT.as_secs()
                ))
            })??;
        Ok(r)
    }

    async fn read_reply(&mut self) -> Result<Reply> {
        read_reply(&mut self.io, &self.addr).await
    }

    /// One line without its `\r\n` (or `\n`), at most [`super::reply::MAX_LINE`] bytes.
    pub async fn line(&mut self) -> Result<Vec<u8>> {
        read_line(&mut self.io, &self.addr).await
    }

    /// Raw bytes (for the RDB transfer): up to `buf.len()`, 0 at the end of the connection.
    pub async fn read_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
        let addr = self.addr.clone();
        self.io.read(buf).await.map_err(|e| lost(&addr, e))
    }
}

/// The TLS alert the server sent, when that is what ended the connection: the I/O error in
/// `e`'s chain carries the rustls error (as in `tls`'s handshake errors).
fn tls_alert(e: &Error) -> Option<rustls::AlertDescription> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::AlertReceived(a)) = inner {
            return Some(*a);
        }
        cur = err.source();
    }
    None
}

/// Runs `INFO section` and returns its `key:value` fields.
pub async fn info(c: &mut Conn, section: &str) -> Result<Vec<(String, String)>> {
    let r = c.call_ok("INFO", &[b"INFO", section.as_bytes()]).await?;
    let text = r.text().unwrap_or_default();
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

/// The keys of each db from `INFO keyspace` (`db3:keys=12,expires=1,...`).
pub async fn keyspace(c: &mut Conn) -> Result<std::collections::BTreeMap<u32, u64>> {
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in info(c, "keyspace").await? {
        let Some(db) = k.strip_prefix("db").and_then(|d| d.parse::<u32>().ok()) else {
            continue;
        };
        let keys = v
            .split(',')
            .find_map(|kv| kv.strip_prefix("keys="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if keys > 0 {
            out.insert(db, keys);
        }
    }
    Ok(out)
}

/// The RDB version a Redis server of version `v` (`7.0.15`) writes and reads.
pub fn rdb_version_of(v: &str) -> Option<u32> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    Some(match (major, minor) {
        (0..=1, _) => return None,
        (2, 0..=5) => 5,
        (2, _) => 6,
        (3, _) => 7,
        (4, _) => 8,
        (5 | 6, _) => 9,
        (7, 0..=1) => 10,
        (7, 2..=3) => 11,
        _ => 12,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_tls_session_is_known_by_the_rustls_error() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, alert);
        let e = lost("127.0.0.1:6380", io).context("PING");
        assert_eq!(
            tls_alert(&e),
            Some(rustls::AlertDescription::CertificateRequired)
        );
        // The same words without the typed error are not a TLS alert.
        let text = std::io::Error::other("received fatal alert: CertificateRequired");
        assert_eq!(tls_alert(&lost("127.0.0.1:6380", text)), None);
    }

    #[test]
    fn rdb_versions() {
        assert_eq!(rdb_version_of("7.0.15"), Some(10));
        assert_eq!(rdb_version_of("7.2.4"), Some(11));
        assert_eq!(rdb_version_of("7.4.1"), Some(12));
        assert_eq!(rdb_version_of("6.2.14"), Some(9));
        assert_eq!(rdb_version_of("x"), None);
    }
}
