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
#[path = "cli/prune.rs"]
mod prune;
#[path = "cli/remote.rs"]
mod remote;
#[path = "cli/roundtrip.rs"]
mod roundtrip;
#[path = "cli/schedule.rs"]
mod schedule;
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

/// A fresh environment with an initialised repository.
pub fn env_with_repo() -> CofferEnv {
    let e = env();
    e.init();
    e
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
