//! Integration tests of the `coffer` command, run as a subprocess in a sealed environment (see
//! `coffer_testkit::cli`). One test binary; the modules under `tests/cli/` group the behaviours.

#[path = "cli/backup_types.rs"]
mod backup_types;
#[path = "cli/concurrency.rs"]
mod concurrency;
#[path = "cli/copy.rs"]
mod copy;
#[path = "cli/damage.rs"]
mod damage;
#[path = "cli/db_faults.rs"]
mod db_faults;
#[path = "cli/db_mysql.rs"]
mod db_mysql;
#[path = "cli/db_postgres.rs"]
mod db_postgres;
#[path = "cli/db_redis.rs"]
mod db_redis;
#[path = "cli/db_sqlite.rs"]
mod db_sqlite;
#[path = "cli/default_repo.rs"]
mod default_repo;
#[path = "cli/diff.rs"]
mod diff;
#[path = "cli/disk_full.rs"]
mod disk_full;
#[path = "cli/errors.rs"]
mod errors;
#[path = "cli/excludes.rs"]
mod excludes;
#[path = "cli/faults.rs"]
mod faults;
#[path = "cli/forget.rs"]
mod forget;
#[path = "cli/format_fixture.rs"]
mod format_fixture;
#[path = "cli/interrupt.rs"]
mod interrupt;
#[path = "cli/keys.rs"]
mod keys;
#[path = "cli/limits.rs"]
mod limits;
#[path = "cli/maintenance.rs"]
mod maintenance;
#[path = "cli/object_lock.rs"]
mod object_lock;
#[path = "cli/open_files.rs"]
mod open_files;
#[path = "cli/prune.rs"]
mod prune;
#[path = "cli/read_only.rs"]
mod read_only;
#[path = "cli/remote.rs"]
mod remote;
#[path = "cli/roundtrip.rs"]
mod roundtrip;
#[path = "cli/schedule.rs"]
mod schedule;
#[path = "cli/settings.rs"]
mod settings;
#[path = "cli/snapshots.rs"]
mod snapshots;
#[path = "cli/unreadable.rs"]
mod unreadable;

use std::path::{Path, PathBuf};

use coffer_testkit::cli::CofferEnv;

/// A fresh environment (empty temporary folder, no repository yet) for the binary under test.
pub fn env() -> CofferEnv {
    CofferEnv::new(env!("CARGO_BIN_EXE_coffer"))
}

/// A fresh environment whose commands run as an unprivileged user: as `nobody` (the whole
/// environment, binary included, handed to that user) when the tests run as root, who may read
/// and write everything; as the current user otherwise.
pub fn unprivileged_env() -> CofferEnv {
    const NOBODY: u32 = 65534;
    if coffer_testkit::tree::is_root() {
        CofferEnv::new_as_user(env!("CARGO_BIN_EXE_coffer"), NOBODY, NOBODY)
    } else {
        env()
    }
}

/// A fresh environment with an initialised repository.
pub fn env_with_repo() -> CofferEnv {
    let e = env();
    e.init();
    e
}

/// A backup of a fresh random file, started as a child process and frozen (SIGSTOP) once it
/// holds its lock, so commands can be tried against a held lock without racing its end.
pub struct PausedBackup {
    child: std::process::Child,
}

impl PausedBackup {
    /// Starts `coffer backup` of `size` random bytes (seed `seed`) and pauses it under its lock.
    pub fn start(env: &CofferEnv, size: u64, seed: u64) -> PausedBackup {
        let src = env.path("paused-src");
        std::fs::create_dir_all(&src).unwrap();
        coffer_testkit::tree::write_random_file(&src.join("big.bin"), size, seed);
        let child = env
            .cmd(["backup", s(&src)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let locks = env.repo_path("locks");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::fs::read_dir(&locks).map(|d| d.count()).unwrap_or(0) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the backup never took its lock"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // SAFETY: signalling our own child process.
        assert_eq!(
            unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) },
            0,
            "the backup ended before it could be paused"
        );
        PausedBackup { child }
    }

    /// Resumes the backup and waits for it; returns whether it succeeded.
    pub fn resume(mut self) -> bool {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
        self.child.wait().unwrap().success()
    }
}

/// Write each `(relative path, content)` under `dir` (creating folders), then give every file and
/// folder an old, distinct mtime so that no file looks "just modified" to a backup.
pub fn write_files(dir: &Path, files: &[(&str, &[u8])]) {
    std::fs::create_dir_all(dir).unwrap();
    for (rel, data) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    coffer_testkit::tree::set_distinct_mtimes(dir);
}

/// `path` as a `&str` (temporary paths are ASCII).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A path under the environment's folder, as a `PathBuf`.
pub fn p(env: &CofferEnv, rel: &str) -> PathBuf {
    env.path(rel)
}
