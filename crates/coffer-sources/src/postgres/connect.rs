//! Connecting to PostgreSQL: where the host, port, user and password come from (the URL, then
//! `PGHOST`/`PGPORT`/`PGUSER`/`PGPASSWORD`, then `PGPASSFILE` or `~/.pgpass`, as libpq does),
//! the environment handed to `pg_dump`/`pg_restore` (the password only ever in `PGPASSWORD`),
//! errors that name their cause, and SQL quoting.

use crate::database::{source_error, DbUrl};
use coffer_core::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and as whom to connect, with every default resolved.
#[derive(Clone)]
pub struct PgConn {
    /// The URL as given (for messages: use `shown`).
    pub url: DbUrl,
    /// Host name, or `None` for a unix socket.
    pub host: Option<String>,
    /// Unix socket directory.
    pub socket: Option<PathBuf>,
    /// Port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password (secret), when one was found.
    pub password: Option<String>,
    /// Database to connect to.
    pub database: String,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgConn({})", self.shown())
    }
}

impl PgConn {
    /// Resolves `url` (database `None`: the maintenance database `postgres`).
    pub fn new(url: &DbUrl) -> Result<PgConn> {
        if url.tls {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{}: TLS connections to PostgreSQL are not supported yet; use sslmode=disable or prefer, or a unix socket",
                    url.redacted()
                ),
            ));
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (mut host, mut socket) = (url.host.clone(), url.socket.clone());
        if host.is_none() && socket.is_none() {
            match env("PGHOST") {
                Some(h) if h.starts_with('/') => socket = Some(PathBuf::from(h)),
                Some(h) => host = Some(h),
                None if Path::new("/var/run/postgresql").is_dir() => {
                    socket = Some(PathBuf::from("/var/run/postgresql"))
                }
                None => host = Some("localhost".into()),
            }
        }
        let port = match url.port {
            Some(p) => p,
            None => match env("PGPORT") {
                Some(p) => p
                    .parse()
                    .map_err(|_| Error::invalid(format!("PGPORT={p} is not a port number")))?,
                None => 5432,
            },
        };
        let user = url
            .user
            .clone()
            .or_else(|| env("PGUSER"))
            .or_else(os_user)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{}: no user name: put one in the URL (postgres://USER@HOST/DB) or set PGUSER",
                    url.redacted()
                ))
            })?;
        let database = url
            .database
            .clone()
            .unwrap_or_else(|| "postgres".to_string());
        let mut conn = PgConn {
            url: url.clone(),
            host,
            socket,
            port,
            user,
            password: None,
            database,
        };
        conn.password = url
            .password
            .clone()
            .or_else(|| env("PGPASSWORD"))
            .or_else(|| conn.passfile_password());
        Ok(conn)
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, database: &str) -> PgConn {
        let mut c = self.clone();
        c.database = database.to_string();
        if c.url.password.is_none() && std::env::var_os("PGPASSWORD").is_none() {
            // .pgpass lines may be per database.
            c.password = c.passfile_password().or(self.password.clone());
        }
        c
    }

    /// `host:port` or the socket, for messages.
    pub fn server(&self) -> String {
        match (&self.host, &self.socket) {
            (Some(h), _) => format!("{h}:{}", self.port),
            (None, Some(s)) => format!("{} (port {})", s.display(), self.port),
            (None, None) => format!("localhost:{}", self.port),
        }
    }

    /// The connection without its password, for messages.
    pub fn shown(&self) -> String {
        format!(
            "database {} on {} as {}",
            self.database,
            self.server(),
            self.user
        )
    }

    /// The password from `PGPASSFILE` or `~/.pgpass`, as libpq finds it.
    fn passfile_password(&self) -> Option<String> {
        let path = match std::env::var_os("PGPASSFILE") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
        };
        let text = std::fs::read_to_string(&path).ok()?;
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).ok()?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "password file {} is readable by others (mode {:o}): ignored, as libpq does; chmod 600 it",
                    path.display(),
                    mode & 0o777
                );
                return None;
            }
        }
        let host = self.host.clone().unwrap_or_else(|| "localhost".to_string());
        let port = self.port.to_string();
        passfile_lookup(&text, &host, &port, &self.database, &self.user)
    }

    /// A tokio-postgres configuration.
    fn config(&self) -> Config {
        let mut c = Config::new();
        match (&self.host, &self.socket) {
            (Some(h), _) => c.host(h),
            (None, Some(s)) => c.host_path(s),
            (None, None) => c.host("localhost"),
        };
        c.port(self.port)
            .user(&self.user)
            .dbname(&self.database)
            .application_name("coffer")
            .connect_timeout(CONNECT_TIMEOUT)
            .ssl_mode(tokio_postgres::config::SslMode::Disable);
        if let Some(p) = &self.password {
            c.password(p.as_bytes());
        }
        c
    }

    /// Opens a connection (its driver runs on the runtime). Errors say what went wrong:
    /// unreachable server, authentication, missing database.
    pub async fn connect(&self) -> Result<Client> {
        let (client, connection) = self
            .config()
            .connect(NoTls)
            .await
            .map_err(|e| self.connect_error(e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("postgres connection ended: {e}");
            }
        });
        Ok(client)
    }

    fn connect_error(&self, e: tokio_postgres::Error) -> Error {
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                return source_error(format!(
                    "PostgreSQL at {} refused user {}: {} (check the password: URL, --db-password-file, PGPASSWORD or ~/.pgpass)",
                    self.server(),
                    self.user,
                    db.message()
                ));
            }
            if *code == SqlState::INVALID_CATALOG_NAME {
                return Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "database {:?} does not exist on PostgreSQL at {}",
                        self.database,
                        self.server()
                    ),
                );
            }
            return source_error(format!(
                "PostgreSQL at {} refused the connection: {}",
                self.server(),
                db.message()
            ));
        }
        // tokio-postgres says "password missing" only in its text (its error kinds are
        // private). What is known by type: no password was given, and the server answered (no
        // I/O error: it was reached) without a database error. Then the likeliest cause is a
        // password request, said as a hint; the chain below shows the driver's own words.
        if self.password.is_none() && !has_io_error(&e) {
            return source_error(format!(
                "PostgreSQL at {} did not let user {} in, and no password was given: if it asks \
                 for one, put it in the URL, --db-password-file, PGPASSWORD or ~/.pgpass",
                self.server(),
                self.user
            ))
            .with_source(e);
        }
        source_error(format!(
            "cannot connect to PostgreSQL at {} (is the server running and reachable?)",
            self.server()
        ))
        .with_source(e)
    }

    /// Environment variables giving a libpq tool (`pg_dump`, `pg_restore`, `psql`) this
    /// connection. The password goes only here, never on a command line.
    pub fn tool_env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("PGPORT".to_string(), self.port.to_string()),
            ("PGUSER".to_string(), self.user.clone()),
            ("PGDATABASE".to_string(), self.database.clone()),
            ("PGAPPNAME".to_string(), "coffer".to_string()),
            ("PGCONNECT_TIMEOUT".to_string(), "15".to_string()),
        ];
        match (&self.host, &self.socket) {
            (Some(h), _) => v.push(("PGHOST".into(), h.clone())),
            (None, Some(s)) => v.push(("PGHOST".into(), s.display().to_string())),
            (None, None) => {}
        }
        if let Some(p) = &self.password {
            v.push(("PGPASSWORD".into(), p.clone()));
        }
        for (k, val) in &self.url.params {
            if k == "sslmode" {
                v.push(("PGSSLMODE".into(), val.clone()));
            }
        }
        v
    }

    /// A libpq connection string naming only the database (host, user and password come from
    /// [`PgConn::tool_env`]), for `pg_restore -d`.
    pub fn tool_dbname(&self) -> String {
        let escaped = self.database.replace('\\', "\\\\").replace('\'', "\\'");
        format!("dbname='{escaped}'")
    }
}

/// The current OS user's name (libpq's default user).
fn os_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// Finds the password for `host:port:database:user` in `.pgpass` text (`*` matches anything;
/// `\:` and `\\` are escapes).
pub fn passfile_lookup(
    text: &str,
    host: &str,
    port: &str,
    database: &str,
    user: &str,
) -> Option<String> {
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let ok = |pat: &str, val: &str| pat == "*" || pat == val;
        if ok(&fields[0], host)
            && ok(&fields[1], port)
            && ok(&fields[2], database)
            && ok(&fields[3], user)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

/// Quotes an identifier for SQL (`"a""b"`).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// Quotes a string literal for SQL (`'it''s'`; standard_conforming_strings is on since 9.1).
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A query error with its server message and hint, prefixed by what was being done.
pub fn query_error(what: impl std::fmt::Display, e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => {
            let mut msg = format!("{what}: {}", db.message());
            if let Some(d) = db.detail() {
                msg.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                msg.push_str(&format!("; hint: {h}"));
            }
            source_error(msg)
        }
        None => source_error(format!("{what}")).with_source(e),
    }
}

/// Whether an I/O error is among `e`'s causes (the server could not be reached, or the
/// connection broke).
fn has_io_error(e: &tokio_postgres::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<std::io::Error>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passfile_matching() {
        let text = "# comment\n\
                    db.example:5432:app:backup:s3cret\n\
                    *:*:*:other:p\\:w\\\\d\n\
                    localhost:5433:*:backup:local\n";
        assert_eq!(
            passfile_lookup(text, "db.example", "5432", "app", "backup").as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            passfile_lookup(text, "h", "1", "x", "other").as_deref(),
            Some("p:w\\d")
        );
        assert_eq!(
            passfile_lookup(text, "localhost", "5433", "any", "backup").as_deref(),
            Some("local")
        );
        assert_eq!(
            passfile_lookup(text, "db.example", "5432", "app", "nobody"),
            None
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("public", "Orders"), "\"public\".\"Orders\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    /// The no-password hint is for a server that answered: an unreachable one (nothing
    /// listens on the port) is an I/O error, and says so.
    #[tokio::test]
    async fn an_unreachable_server_is_not_taken_for_a_password_request() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = DbUrl::parse(&format!("postgres://nobody@127.0.0.1:{port}/x")).unwrap();
        let mut c = PgConn::new(&url).unwrap();
        c.password = None;
        let raw = c.config().connect(NoTls).await.err().unwrap();
        assert!(has_io_error(&raw), "{raw:?}");
        let e = c.connect().await.err().unwrap();
        assert!(format!("{e}").contains("cannot connect"), "{e:#}");
    }

    #[test]
    fn tool_env_has_no_password_in_dbname() {
        let url = DbUrl::parse("postgres://u:pw@127.0.0.1:5433/we'ird").unwrap();
        let c = PgConn::new(&url).unwrap();
        assert_eq!(c.tool_dbname(), "dbname='we\\'ird'");
        assert!(c.tool_env().contains(&("PGPASSWORD".into(), "pw".into())));
        assert!(!c.shown().contains("pw"));
    }
}
