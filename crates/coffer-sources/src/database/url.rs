//! Database URLs (`postgres://`, `mysql://`, `sqlite:///`, `redis://`): parsing, and printing
//! them with the password removed.

use coffer_core::{Error, Result};
use std::path::PathBuf;

/// The database engines Coffer backs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`).
    Mysql,
    /// SQLite (`sqlite:///PATH`).
    Sqlite,
    /// Redis (`redis://`, `rediss://`).
    Redis,
}

impl Engine {
    /// The name stored as the snapshot's source kind.
    pub fn kind(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Sqlite => "sqlite",
            Engine::Redis => "redis",
        }
    }

    /// The engine of a snapshot's source kind, if it is a database.
    pub fn from_kind(kind: &str) -> Option<Engine> {
        Some(match kind {
            "postgres" => Engine::Postgres,
            "mysql" => Engine::Mysql,
            "sqlite" => Engine::Sqlite,
            "redis" => Engine::Redis,
            _ => return None,
        })
    }

    fn from_scheme(scheme: &str) -> Option<Engine> {
        Some(match scheme {
            "postgres" | "postgresql" => Engine::Postgres,
            "mysql" | "mariadb" => Engine::Mysql,
            "sqlite" => Engine::Sqlite,
            "redis" | "rediss" => Engine::Redis,
            _ => return None,
        })
    }
}

/// A parsed database URL. The password never appears in `Debug` or [`DbUrl::redacted`].
#[derive(Clone)]
pub struct DbUrl {
    /// The engine.
    pub engine: Engine,
    /// The scheme as written (`postgresql`, `rediss`, ...).
    pub scheme: String,
    /// User name, when given.
    pub user: Option<String>,
    /// Password from the URL or a password file (secret: never print it).
    pub password: Option<String>,
    /// Host name or address; `None` for a unix socket or SQLite.
    pub host: Option<String>,
    /// Port, when given.
    pub port: Option<u16>,
    /// Database name (PostgreSQL, MySQL), db number (Redis); `None` for a whole server.
    pub database: Option<String>,
    /// Unix socket directory (`?host=/dir` for PostgreSQL) or socket path (`?socket=` for MySQL).
    pub socket: Option<PathBuf>,
    /// The database file (SQLite).
    pub path: Option<PathBuf>,
    /// Whether TLS was asked for (`rediss://`, `?sslmode=require`).
    pub tls: bool,
    /// Other query parameters, as given (never secrets: `password=` is moved to `password`).
    pub params: Vec<(String, String)>,
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbUrl({})", self.redacted())
    }
}

/// Whether `s` looks like a database URL (so `coffer backup` treats it as one, not as a path).
pub fn is_database_url(s: &str) -> bool {
    s.split_once(':')
        .is_some_and(|(scheme, _)| Engine::from_scheme(&scheme.to_ascii_lowercase()).is_some())
}

impl DbUrl {
    /// Parses a database URL. Errors name what is wrong without echoing a password.
    pub fn parse(s: &str) -> Result<DbUrl> {
        let (scheme, _) = s
            .split_once(':')
            .ok_or_else(|| bad(s, "it has no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let engine = Engine::from_scheme(&scheme).ok_or_else(|| {
            bad(
                s,
                "use postgres://, mysql://, mariadb://, sqlite:///PATH, redis:// or rediss://",
            )
        })?;
        if engine == Engine::Sqlite {
            let rest = &s[scheme.len() + 1..];
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(bad(s, "it names no file: use sqlite:///PATH/TO/DB"));
            }
            let decoded = percent_decode(path);
            return Ok(DbUrl {
                engine,
                scheme,
                user: None,
                password: None,
                host: None,
                port: None,
                database: None,
                socket: None,
                path: Some(PathBuf::from(decoded)),
                tls: false,
                params: Vec::new(),
            });
        }
        // `postgres://user@/db?host=/run/postgresql`: the url crate wants a host; lend one.
        let lenient = if s.contains("@/") {
            s.replacen("@/", "@coffer-socket-host/", 1)
        } else {
            s.to_string()
        };
        let u = url::Url::parse(&lenient).map_err(|e| bad(s, &e.to_string()))?;
        let mut url = DbUrl {
            engine,
            scheme: scheme.clone(),
            user: (!u.username().is_empty()).then(|| percent_decode(u.username())),
            password: u.password().map(percent_decode),
            host: u
                .host_str()
                .filter(|h| *h != "coffer-socket-host" && !h.is_empty())
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string()),
            port: u.port(),
            database: None,
            socket: None,
            path: None,
            tls: scheme == "rediss",
            params: Vec::new(),
        };
        let db = u.path().trim_start_matches('/');
        if !db.is_empty() {
            url.database = Some(percent_decode(db));
        }
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "host" if v.starts_with('/') => url.socket = Some(PathBuf::from(v.as_ref())),
                "host" => url.host = Some(v.into_owned()),
                "socket" => url.socket = Some(PathBuf::from(v.as_ref())),
                "port" => {
                    url.port = Some(v.parse().map_err(|_| bad(s, "the port is not a number"))?)
                }
                "user" => url.user = Some(v.into_owned()),
                "password" => url.password = Some(v.into_owned()),
                "dbname" => url.database = Some(v.into_owned()),
                "sslmode" => {
                    url.tls = matches!(v.as_ref(), "require" | "verify-ca" | "verify-full");
                    url.params.push((k.into_owned(), v.into_owned()));
                }
                _ => url.params.push((k.into_owned(), v.into_owned())),
            }
        }
        Ok(url)
    }

    /// The URL without its password, for output, logs and snapshot manifests.
    pub fn redacted(&self) -> String {
        if let Some(p) = &self.path {
            return format!("sqlite://{}", p.display());
        }
        let mut s = format!("{}://", self.scheme);
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        if let Some(h) = &self.host {
            if h.contains(':') {
                s.push_str(&format!("[{h}]"));
            } else {
                s.push_str(h);
            }
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s.push('/');
        if let Some(d) = &self.database {
            s.push_str(d);
        }
        let mut q: Vec<String> = Vec::new();
        if let Some(sock) = &self.socket {
            let key = if self.engine == Engine::Postgres {
                "host"
            } else {
                "socket"
            };
            q.push(format!("{key}={}", sock.display()));
        }
        for (k, v) in &self.params {
            q.push(format!("{k}={v}"));
        }
        if !q.is_empty() {
            s.push('?');
            s.push_str(&q.join("&"));
        }
        s
    }

    /// The same server with another database (`None`: the whole server).
    pub fn with_database(&self, database: Option<&str>) -> DbUrl {
        let mut u = self.clone();
        u.database = database.map(str::to_string);
        u
    }
}

fn bad(url: &str, why: &str) -> Error {
    let shown = DbUrl::redact_str(url);
    Error::invalid(format!(
        "{shown} is not a database URL Coffer understands: {why}"
    ))
}

impl DbUrl {
    /// Removes a password from a URL-shaped string that may not parse (for error messages).
    pub fn redact_str(s: &str) -> String {
        let Some((scheme, rest)) = s.split_once("://") else {
            return s.to_string();
        };
        let (auth, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let auth = match auth.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{user}@{host}")
            }
            None => auth.to_string(),
        };
        // A password passed as a query parameter.
        let tail = match tail.find("password=") {
            Some(i) => {
                let end = tail[i..].find('&').map(|e| i + e).unwrap_or(tail.len());
                format!("{}password=***{}", &tail[..i], &tail[end..])
            }
            None => tail.to_string(),
        };
        format!("{scheme}://{auth}{tail}")
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_forms() {
        let u = DbUrl::parse("postgres://backup:s3cr%40t@db.example:5433/app").unwrap();
        assert_eq!(u.engine, Engine::Postgres);
        assert_eq!(u.user.as_deref(), Some("backup"));
        assert_eq!(u.password.as_deref(), Some("s3cr@t"));
        assert_eq!(u.host.as_deref(), Some("db.example"));
        assert_eq!(u.port, Some(5433));
        assert_eq!(u.database.as_deref(), Some("app"));
        assert_eq!(u.redacted(), "postgres://backup@db.example:5433/app");
        assert!(!format!("{u:?}").contains("s3cr"));

        let s = DbUrl::parse("postgresql://me@/app?host=/run/postgresql").unwrap();
        assert_eq!(s.host, None);
        assert_eq!(
            s.socket.as_deref(),
            Some(std::path::Path::new("/run/postgresql"))
        );
        assert_eq!(s.redacted(), "postgresql://me@/app?host=/run/postgresql");

        let server = DbUrl::parse("postgres://u@127.0.0.1:5432/").unwrap();
        assert_eq!(server.database, None);
    }

    #[test]
    fn other_engines() {
        let m = DbUrl::parse("mariadb://root:pw@127.0.0.1:3307/shop").unwrap();
        assert_eq!(m.engine, Engine::Mysql);
        assert_eq!(m.redacted(), "mariadb://root@127.0.0.1:3307/shop");
        let s = DbUrl::parse("sqlite:///var/lib/app/app.db").unwrap();
        assert_eq!(
            s.path.as_deref(),
            Some(std::path::Path::new("/var/lib/app/app.db"))
        );
        let r = DbUrl::parse("rediss://:pw@cache:6380/2").unwrap();
        assert!(r.tls);
        assert_eq!(r.database.as_deref(), Some("2"));
        assert_eq!(r.password.as_deref(), Some("pw"));
        assert!(!r.redacted().contains("pw"));
    }

    #[test]
    fn redis_tls_options_are_kept_without_secrets() {
        let r = DbUrl::parse(
            "rediss://u:s3cr3t@cache:6380/1?tls_ca=/etc/ca.pem&tls_cert=/c/me.pem&tls_key=/c/me.key",
        )
        .unwrap();
        assert!(r.tls);
        assert_eq!(r.params.len(), 3);
        // Certificate and key paths are not secrets; the password is.
        assert_eq!(
            r.redacted(),
            "rediss://u@cache:6380/1?tls_ca=/etc/ca.pem&tls_cert=/c/me.pem&tls_key=/c/me.key"
        );
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }

    #[test]
    fn detection_and_errors() {
        assert!(is_database_url("postgres://x/y"));
        assert!(is_database_url("SQLite:///a.db"));
        assert!(!is_database_url("/home/me/data"));
        assert!(!is_database_url("s3://bucket"));
        let e = DbUrl::parse("postgres://u:hunter2@[bad/db").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(
            DbUrl::redact_str("mysql://u:pw@h/d?password=x&a=b"),
            "mysql://u@h/d?password=***&a=b"
        );
    }
}
