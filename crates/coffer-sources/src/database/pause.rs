//! A hidden hook for fault tests: with `COFFER_TEST_DB_PAUSE_AT=<stage>` and
//! `COFFER_TEST_DB_PAUSE_DIR=<dir>` set, a backup that reaches `<stage>` creates
//! `<dir>/<stage>.reached` and waits (at most two minutes) until `<dir>/<stage>.go` exists, so a
//! test can change the database at exactly that instant (drop a table, say). Unset, it does
//! nothing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The variable naming the stage to pause at.
const AT_VAR: &str = "COFFER_TEST_DB_PAUSE_AT";
/// The variable naming the folder of the `.reached` and `.go` files.
const DIR_VAR: &str = "COFFER_TEST_DB_PAUSE_DIR";
/// The longest pause: a test that never says go does not hang the backup forever.
const LONGEST: Duration = Duration::from_secs(120);

/// Pauses at `stage` when the test variables ask for it (see the module docs).
pub(crate) async fn at(stage: &str) {
    if std::env::var(AT_VAR).ok().as_deref() != Some(stage) {
        return;
    }
    let Some(dir) = std::env::var_os(DIR_VAR).map(PathBuf::from) else {
        return;
    };
    let _ = std::fs::write(dir.join(format!("{stage}.reached")), b"");
    let go = dir.join(format!("{stage}.go"));
    let start = Instant::now();
    while !go.exists() && start.elapsed() < LONGEST {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
