//! The PostgreSQL client tools Coffer runs (`pg_dump`, `pg_restore`, `pg_dumpall`): found in
//! `COFFER_PG_BINDIR` when set, else on `PATH` and in the standard install folders
//! (`/usr/lib/postgresql/*/bin`, `/usr/pgsql-*/bin`); the one chosen has a major version at
//! least the server's (or the archive's).

use super::connect::PgConn;
use crate::database::capture::{read_capped, read_messages};
use crate::database::source_error;
use coffer_core::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A PostgreSQL version as compared for tool compatibility: `(15, 0)` for 15.x, `(9, 6)` for 9.6.x.
pub type Major = (u32, u32);

/// The major version of a `server_version_num` (`150008` -> 15, `90624` -> 9.6).
pub fn major_of_num(num: u32) -> Major {
    if num >= 100_000 {
        (num / 10_000, 0)
    } else {
        (num / 10_000, (num / 100) % 100)
    }
}

/// Prints a major version (`15`, `9.6`).
pub fn show_major(m: Major) -> String {
    if m.0 >= 10 {
        m.0.to_string()
    } else {
        format!("{}.{}", m.0, m.1)
    }
}

/// The version in `pg_dump (PostgreSQL) 15.8 (Debian 15.8-1)`.
pub fn parse_tool_version(out: &str) -> Option<(Major, String)> {
    let word = out
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let mut parts = word.split(|c: char| !c.is_ascii_digit());
    let a: u32 = parts.next()?.parse().ok()?;
    let b: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let major = if a >= 10 { (a, 0) } else { (a, b) };
    Some((major, word.to_string()))
}

/// One client tool, found and versioned.
#[derive(Debug, Clone)]
pub struct Tool {
    /// Its path.
    pub path: PathBuf,
    /// Its major version.
    pub major: Major,
    /// Its full version (`15.8`).
    pub version: String,
}

fn candidates(name: &str) -> (Vec<PathBuf>, String) {
    if let Some(dir) = std::env::var_os("COFFER_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        let where_ = format!("COFFER_PG_BINDIR={}", dir.display());
        return (vec![dir.join(name)], where_);
    }
    let mut out = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            out.push(dir.join(name));
        }
    }
    for (parent, prefix) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        if let Ok(rd) = std::fs::read_dir(parent) {
            let mut dirs: Vec<PathBuf> = rd
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path().join("bin").join(name))
                .collect();
            dirs.sort();
            out.extend(dirs);
        }
    }
    (
        out,
        "PATH, /usr/lib/postgresql/*/bin and /usr/pgsql-*/bin".to_string(),
    )
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds `name` (`pg_dump`, ...) with a major version at least `min`, preferring exactly
/// `prefer`, else the oldest newer one. Errors name what was found and what to install.
pub fn find(name: &str, min: Major, prefer: Major) -> Result<Tool> {
    let (paths, where_) = candidates(name);
    let mut found: Vec<Tool> = Vec::new();
    for p in paths {
        if !is_executable(&p) {
            continue;
        }
        // Debian's pg_wrapper (/usr/bin/pg_dump) picks a version by itself: use the real
        // binaries it points to, which the install folders list.
        if std::fs::canonicalize(&p)
            .map(|c| c.ends_with("pg_wrapper"))
            .unwrap_or(false)
        {
            continue;
        }
        let Ok(out) = Command::new(&p)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some((major, version)) = parse_tool_version(&text) {
            if !found.iter().any(|t| t.path == p) {
                found.push(Tool {
                    path: p,
                    major,
                    version,
                });
            }
        }
    }
    let install = format!(
        "install the PostgreSQL {} client tools (Debian: apt-get install postgresql-client-{}), or set COFFER_PG_BINDIR to their folder",
        show_major(min),
        show_major(min)
    );
    if found.is_empty() {
        return Err(source_error(format!(
            "{name} was not found (looked in {where_}): {install}"
        )));
    }
    let mut ok: Vec<&Tool> = found.iter().filter(|t| t.major >= min).collect();
    if ok.is_empty() {
        let newest = found.iter().max_by_key(|t| t.major).expect("not empty");
        return Err(source_error(format!(
            "{name} {} ({}) is older than PostgreSQL {} and cannot work with it: {install}",
            newest.version,
            newest.path.display(),
            show_major(min)
        )));
    }
    ok.sort_by_key(|t| (t.major != prefer, t.major));
    Ok(ok[0].clone())
}

/// A running tool with its stderr collected on a thread.
pub struct Running {
    /// The child process.
    pub child: Child,
    what: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Tool {
    /// A command running this tool with `conn`'s connection in its environment.
    pub fn command(&self, conn: Option<&PgConn>) -> Command {
        let mut cmd = Command::new(&self.path);
        // Only what we pass: no PGSERVICE/PGOPTIONS surprises from the caller's environment
        // overriding the target.
        for k in [
            "PGSERVICE",
            "PGDATABASE",
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGUSER",
            "PGPASSWORD",
        ] {
            cmd.env_remove(k);
        }
        if let Some(c) = conn {
            cmd.envs(c.tool_env());
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Starts `cmd` (from [`Tool::command`]) with stdout piped and stderr collected; `what`
    /// names the step in errors.
    pub fn spawn(&self, mut cmd: Command, what: &str, stdin: bool) -> Result<Running> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|e| {
            source_error(format!("{what}: cannot run {}", self.path.display())).with_source(e)
        })?;
        let err = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || read_messages(err));
        Ok(Running {
            child,
            what: what.to_string(),
            stderr: Some(stderr),
        })
    }
}

impl Running {
    /// Waits for the tool; an exit status other than 0 is an error quoting its messages.
    pub fn wait(mut self) -> Result<String> {
        let status = self
            .child
            .wait()
            .map_err(|e| Error::io(format!("{}: waiting for the tool", self.what), e))?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if !status.success() {
            // Only the tool's text says which of its lines are errors; they are picked for the
            // message, nothing is decided by them (the exit status says it failed).
            let errors: Vec<&str> = stderr
                .lines()
                .map(str::trim)
                .filter(|l| l.contains("error:") || l.contains("ERROR:"))
                .take(4)
                .collect();
            let msg = if errors.is_empty() {
                tail_lines(&stderr, 12)
            } else {
                errors.join(" | ")
            };
            return Err(source_error(format!(
                "{} failed ({status}){}",
                self.what,
                if msg.is_empty() {
                    String::new()
                } else {
                    format!(": {msg}")
                }
            )));
        }
        Ok(stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `n` non-empty lines of a tool's messages, joined.
fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join(" | ")
}

/// Runs a tool to completion, returning its stdout (for small outputs: lists, schema SQL). An
/// output over `limit` bytes stops the tool and is an error.
pub fn run_capture(tool: &Tool, cmd: Command, what: &str, limit: u64) -> Result<Vec<u8>> {
    let mut r = tool.spawn(cmd, what, false)?;
    let stdout = r.child.stdout.take().expect("piped");
    let out = read_capped(stdout, limit, what)?;
    r.wait()?;
    Ok(out)
}

/// Runs a tool to completion, reading and dropping its stdout.
pub fn run_to_end(tool: &Tool, cmd: Command, what: &str) -> Result<()> {
    let mut r = tool.spawn(cmd, what, false)?;
    let mut stdout = r.child.stdout.take().expect("piped");
    std::io::copy(&mut stdout, &mut std::io::sink())
        .map_err(|e| Error::io(format!("{what}: reading its output"), e))?;
    r.wait()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)\n")
                .unwrap()
                .0,
            (15, 0)
        );
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 9.6.24").unwrap().0,
            (9, 6)
        );
        assert_eq!(
            parse_tool_version("pg_restore (PostgreSQL) 17devel")
                .unwrap()
                .0,
            (17, 0)
        );
        assert_eq!(major_of_num(150008), (15, 0));
        assert_eq!(major_of_num(90624), (9, 6));
        assert!((9, 6) < (10, 0));
        assert_eq!(show_major((9, 6)), "9.6");
    }
}
