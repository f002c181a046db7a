//! Reaching a MySQL/MariaDB server: `mysql_async` connections, the client tools
//! (`mariadb-dump`, `mariadb`) with their connection options, and the password handed to those
//! tools through a private defaults file, never on their command line.

use crate::database::{source_error, DbUrl};
use coffer_core::{Error, ErrorKind, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Session settings of every connection Coffer opens: backslash escapes on, no ANSI quotes,
/// UTC timestamps, utf8mb4.
const SESSION_SETUP: &[&str] = &[
    "SET SESSION sql_mode='NO_ENGINE_SUBSTITUTION'",
    "SET NAMES utf8mb4",
    "SET SESSION time_zone='+00:00'",
];

/// The install hint for the client tools.
const TOOLS_HINT: &str =
    "install the MariaDB or MySQL client tools (Debian: apt-get install mariadb-client)";

/// One server as a URL names it, with the password resolved (URL or password file, else
/// `MYSQL_PWD`).
#[derive(Clone)]
pub struct Server {
    url: DbUrl,
    user: String,
    password: Option<String>,
}

impl Server {
    /// The server of `url` (its database is ignored: each call names the database it wants).
    pub fn new(url: &DbUrl) -> Server {
        let user = url
            .user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "root".to_string());
        let password = url
            .password
            .clone()
            .or_else(|| std::env::var("MYSQL_PWD").ok());
        Server {
            url: url.clone(),
            user,
            password,
        }
    }

    /// The server, for messages: `127.0.0.1:3306` or the socket path.
    pub fn address(&self) -> String {
        match (&self.url.socket, &self.url.host) {
            (Some(s), _) => s.display().to_string(),
            (None, Some(h)) => format!("{h}:{}", self.url.port.unwrap_or(3306)),
            (None, None) => format!("localhost:{}", self.url.port.unwrap_or(3306)),
        }
    }

    /// Opens a connection (to `db` when given) with Coffer's session settings.
    pub async fn connect(&self, db: Option<&str>) -> Result<Conn> {
        let mut opts = OptsBuilder::default()
            .user(Some(self.user.clone()))
            .pass(self.password.clone())
            .db_name(db.map(str::to_string))
            .prefer_socket(false)
            .setup(SESSION_SETUP.iter().map(|s| s.to_string()).collect());
        match (&self.url.socket, &self.url.host) {
            (Some(sock), _) => {
                opts = opts.socket(Some(sock.display().to_string()));
            }
            (None, host) => {
                opts = opts
                    .ip_or_hostname(host.clone().unwrap_or_else(|| "localhost".to_string()))
                    .tcp_port(self.url.port.unwrap_or(3306));
            }
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.connect_error(e, db)),
            Err(_) => Err(source_error(format!(
                "cannot connect to the MySQL/MariaDB server at {}: no answer within {}s",
                self.address(),
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    fn connect_error(&self, e: mysql_async::Error, db: Option<&str>) -> Error {
        let at = self.address();
        match &e {
            mysql_async::Error::Server(s) if s.code == 1045 => Error::new(
                ErrorKind::Source,
                format!(
                    "the MySQL/MariaDB server at {at} refused the login of user {:?} (access denied): check the password (in the URL, --db-password-file or MYSQL_PWD) and the user's host",
                    self.user
                ),
            ),
            mysql_async::Error::Server(s) if s.code == 1049 => Error::new(
                ErrorKind::NotFound,
                format!(
                    "the MySQL/MariaDB server at {at} has no database {:?}: check its name (SHOW DATABASES lists them)",
                    db.unwrap_or_default()
                ),
            ),
            mysql_async::Error::Server(s) if s.code == 1044 => Error::new(
                ErrorKind::Source,
                format!(
                    "user {:?} may not use database {:?} on {at}: {}",
                    self.user,
                    db.unwrap_or_default(),
                    s.message
                ),
            ),
            mysql_async::Error::Io(_) => source_error(format!(
                "cannot connect to the MySQL/MariaDB server at {at}: {e} (is it running, and is the host and port right?)"
            )),
            _ => source_error(format!(
                "cannot connect to the MySQL/MariaDB server at {at}: {}",
                describe(&e)
            )),
        }
    }

    /// Writes the password (if any) to a private defaults file for a child tool.
    pub fn credentials(&self) -> Result<Credentials> {
        Credentials::new(self.password.as_deref())
    }

    /// A command running `tool` against this server: `--defaults-extra-file` first (when a
    /// password is known), then host, port or socket, and user.
    pub fn command(&self, tool: &Path, creds: &Credentials) -> Command {
        let mut cmd = Command::new(tool);
        if let Some(path) = &creds.path {
            cmd.arg(format!("--defaults-extra-file={}", path.display()));
        }
        match (&self.url.socket, &self.url.host) {
            (Some(sock), _) => {
                cmd.arg(format!("--socket={}", sock.display()));
            }
            (None, Some(host)) => {
                cmd.arg(format!("--host={host}"));
                cmd.arg("--protocol=TCP");
                cmd.arg(format!("--port={}", self.url.port.unwrap_or(3306)));
            }
            (None, None) => {
                if let Some(p) = self.url.port {
                    cmd.arg(format!("--port={p}"));
                }
            }
        }
        cmd.arg(format!("--user={}", self.user));
        cmd.env_remove("MYSQL_HOST");
        cmd
    }
}

/// A query error with the statement's purpose.
pub fn query_error(what: &str, e: mysql_async::Error) -> Error {
    source_error(format!("{what} failed: {}", describe(&e)))
}

/// The error's message without the driver's decoration.
pub fn describe(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} (error {})", s.message, s.code),
        other => other.to_string(),
    }
}

/// The server error code of `e`, if it is one.
pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Runs statements one after the other.
pub async fn run_all(conn: &mut Conn, what: &str, statements: &[String]) -> Result<()> {
    for s in statements {
        conn.query_drop(s.as_str())
            .await
            .map_err(|e| query_error(what, e))?;
    }
    Ok(())
}

static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A 0600 option file holding the password for `--defaults-extra-file`, removed on drop.
pub struct Credentials {
    path: Option<PathBuf>,
}

impl Credentials {
    fn new(password: Option<&str>) -> Result<Credentials> {
        let Some(password) = password else {
            return Ok(Credentials { path: None });
        };
        let name = format!(
            "coffer-mysql-{}-{}-{}.cnf",
            std::process::id(),
            FILE_COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default()
        );
        let path = std::env::temp_dir().join(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("creating a private option file for the MySQL tools", e))?;
        let creds = Credentials { path: Some(path) };
        let escaped = password.replace('\\', "\\\\").replace('"', "\\\"");
        f.write_all(format!("[client]\npassword=\"{escaped}\"\n").as_bytes())
            .map_err(|e| Error::io("writing a private option file for the MySQL tools", e))?;
        Ok(creds)
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = fs::remove_file(p);
        }
    }
}

/// The first of `names` found on `PATH`.
pub fn find_tool(names: &[&str]) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(Error::new(
        ErrorKind::NotFound,
        format!(
            "{} is not installed (not found on PATH): {TOOLS_HINT}",
            names.join(" or ")
        ),
    ))
}

/// `mariadb-dump`, else `mysqldump`.
pub fn dump_tool() -> Result<PathBuf> {
    find_tool(&["mariadb-dump", "mysqldump"])
}

/// The `mariadb` client, else `mysql`.
pub fn client_tool() -> Result<PathBuf> {
    find_tool(&["mariadb", "mysql"])
}

/// The (major, minor) of a MariaDB or MySQL version string, and whether it is MariaDB:
/// `10.11.6-MariaDB-0+deb12u1` gives ((10, 11), true); a tool's `--version` line
/// (`mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, ...`, `mysqldump  Ver 8.0.36 for Linux`)
/// gives the server release it ships with.
pub fn release_of(version: &str) -> Option<((u32, u32), bool)> {
    let mariadb = version.contains("MariaDB");
    let text = match version.split_once("Distrib ") {
        Some((_, rest)) => rest,
        None => match version.split_once(" Ver ") {
            Some((_, rest)) => rest.trim_start(),
            None => version,
        },
    };
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    Some(((major, minor), mariadb))
}

/// Refuses a dump tool older than the server of the same family (an old `mysqldump` can miss
/// or mangle newer objects); across families, or when a version cannot be read, it goes ahead.
pub fn check_tool_not_older(tool: &Path, tool_version: &str, server_version: &str) -> Result<()> {
    let (Some((t, t_maria)), Some((s, s_maria))) =
        (release_of(tool_version), release_of(server_version))
    else {
        return Ok(());
    };
    if t_maria == s_maria && t < s {
        return Err(Error::new(
            ErrorKind::Source,
            format!(
                "{} is version {}.{}, older than the server ({server_version}): install the client tools of version {}.{} or newer ({TOOLS_HINT})",
                tool.display(),
                t.0,
                t.1,
                s.0,
                s.1
            ),
        ));
    }
    Ok(())
}

/// The first line of `tool --version`.
pub fn tool_version(tool: &Path) -> String {
    Command::new(tool)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn dump_tools_older_than_the_server_are_refused() {
        let maria =
            "mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)";
        assert_eq!(release_of(maria), Some(((10, 11), true)));
        assert_eq!(
            release_of("10.11.6-MariaDB-0+deb12u1"),
            Some(((10, 11), true))
        );
        assert_eq!(
            release_of("mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)"),
            Some(((8, 0), false))
        );
        assert_eq!(release_of("8.4.2"), Some(((8, 4), false)));
        let tool = Path::new("/usr/bin/mariadb-dump");
        assert!(check_tool_not_older(tool, maria, "10.11.6-MariaDB-0+deb12u1").is_ok());
        assert!(check_tool_not_older(tool, maria, "10.6.18-MariaDB").is_ok());
        let e = check_tool_not_older(tool, maria, "11.4.2-MariaDB").unwrap_err();
        assert!(e.to_string().contains("older than the server"), "{e}");
        let mysql = "mysqldump  Ver 8.0.36 for Linux on x86_64";
        assert!(check_tool_not_older(Path::new("mysqldump"), mysql, "8.4.2").is_err());
        // Across families Coffer cannot compare: it goes ahead.
        assert!(check_tool_not_older(tool, maria, "8.4.2").is_ok());
    }

    #[test]
    fn the_password_goes_to_a_private_file_never_argv() {
        let url = DbUrl::parse("mysql://me:p%22w%5Cx@127.0.0.1:3307/app").unwrap();
        let server = Server::new(&url);
        let creds = server.credentials().unwrap();
        let path = creds.path.clone().unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "[client]\npassword=\"p\\\"w\\\\x\"\n"
        );
        let cmd = server.command(Path::new("mariadb-dump"), &creds);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args[0].starts_with("--defaults-extra-file="), "{args:?}");
        assert!(args.iter().all(|a| !a.contains("p\"w")), "{args:?}");
        assert!(args.contains(&"--port=3307".to_string()), "{args:?}");
        drop(creds);
        assert!(!path.exists(), "the option file outlived its use");
    }
}
