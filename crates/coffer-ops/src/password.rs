//! Where a repository's password comes from: given, a file's first line, or a command's first
//! line of output. It is read only when needed (after the repository is known to exist), kept
//! in memory that is wiped when dropped, and never printed: errors name the file or say "the
//! password command", never the password.

use coffer_core::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A password, wiped from memory when dropped.
pub type Password = Zeroizing<Vec<u8>>;

/// Where to get a password.
#[derive(Clone)]
pub enum PasswordSource {
    /// This password.
    Given(Password),
    /// The first line of this file.
    File(PathBuf),
    /// The first line printed by this command (run with `sh -c`).
    Command(String),
    /// None was given: reading it fails with this usage message.
    Missing(String),
}

impl std::fmt::Debug for PasswordSource {
    /// Never shows a given password or a command (which may hold one).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordSource::Given(_) => f.write_str("Given(***)"),
            PasswordSource::File(p) => write!(f, "File({})", p.display()),
            PasswordSource::Command(_) => f.write_str("Command(***)"),
            PasswordSource::Missing(_) => f.write_str("Missing"),
        }
    }
}

impl PasswordSource {
    /// Reads the password.
    pub fn read(&self) -> Result<Password> {
        match self {
            PasswordSource::Given(p) => Ok(p.clone()),
            PasswordSource::File(f) => read_password_file(f),
            PasswordSource::Command(c) => run_password_command(c),
            PasswordSource::Missing(msg) => Err(Error::usage(msg.clone())),
        }
    }
}

/// The first line of `bytes`, without its line end; an empty line is an error naming `what`.
fn first_line(bytes: &[u8], what: &str) -> Result<Password> {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(Error::invalid(format!("{what} gave an empty password")));
    }
    Ok(Zeroizing::new(line.to_vec()))
}

/// Reads a password from a file (its first line).
pub fn read_password_file(path: &Path) -> Result<Password> {
    let data = Zeroizing::new(std::fs::read(path).map_err(|e| {
        // A file that is not there is a mistake in the command or configuration (exit 2).
        if e.kind() == std::io::ErrorKind::NotFound {
            return Error::usage(format!(
                "the password file {} does not exist: check the path",
                path.display()
            ));
        }
        Error::io(
            format!("cannot read the password file {}", path.display()),
            e,
        )
    })?);
    first_line(&data, &format!("the password file {}", path.display()))
}

/// Takes a password from text (an environment variable's value), naming `what` in errors.
pub fn password_from_text(text: &str, what: &str) -> Result<Password> {
    first_line(text.as_bytes(), what)
}

/// Runs `cmd` with `sh -c` and takes the first line it prints as a password. Its standard
/// error goes to ours (it may prompt there).
pub fn run_password_command(cmd: &str) -> Result<Password> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::io("cannot run the password command", e))?;
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("the password command failed ({})", out.status),
        ));
    }
    first_line(&stdout, "the password command")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gives_its_first_line_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\r\nsecond line\n").unwrap();
        assert_eq!(
            PasswordSource::File(f.clone()).read().unwrap().as_slice(),
            b"s3cret"
        );
        std::fs::write(&f, "\nx").unwrap();
        let e = read_password_file(&f).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let missing = read_password_file(&dir.path().join("nope")).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::Usage);
    }

    #[test]
    fn a_command_gives_its_first_line_and_a_failure_says_so_without_the_command() {
        let pw = run_password_command("printf 'abc\\ndef'").unwrap();
        assert_eq!(pw.as_slice(), b"abc");
        let e = run_password_command("echo hunter2; exit 3").unwrap_err();
        assert!(!format!("{e:#}").contains("hunter2"), "{e:#}");
        let dbg = format!("{:?}", PasswordSource::Command("echo hunter2".into()));
        assert!(!dbg.contains("hunter2"));
    }

    #[test]
    fn a_missing_password_is_a_usage_error() {
        let e = PasswordSource::Missing("no password given".into())
            .read()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
    }
}
