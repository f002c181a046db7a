//! A private temporary folder for the small files `pg_restore` needs (the schema archive, an
//! entry list), removed when dropped. Never holds table data.

use coffer_core::{Error, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A temporary folder (mode 0700), removed on drop.
pub struct Stage {
    dir: PathBuf,
}

impl Stage {
    /// Creates it under the system's temporary folder (`TMPDIR`).
    pub fn new() -> Result<Stage> {
        use std::os::unix::fs::DirBuilderExt;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "coffer-pg-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                Error::io(
                    format!("creating the temporary folder {}", dir.display()),
                    e,
                )
            })?;
        Ok(Stage { dir })
    }

    /// Writes `data` to the file `name` in it and returns its path.
    pub fn write(&self, name: &str, data: &[u8]) -> Result<PathBuf> {
        let p = self.dir.join(name);
        std::fs::write(&p, data)
            .map_err(|e| Error::io(format!("writing the temporary file {}", p.display()), e))?;
        Ok(p)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
