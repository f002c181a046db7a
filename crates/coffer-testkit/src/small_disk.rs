//! A small tmpfs mounted for a test's lifetime: a real disk that fills up (backups and
//! restores onto a full disk). Needs root, as the test harness runs.

use crate::tree::is_root;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a fixed size, unmounted when dropped.
pub struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`6m`, `12m`) at `path` (created if missing).
    pub fn mount(path: &Path, size: &str) -> SmallDisk {
        assert!(
            is_root(),
            "the disk-full tests mount a small tmpfs and need root: run the tests as root (scripts/test.sh does)"
        );
        std::fs::create_dir_all(path).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mount -t tmpfs failed: these tests need a machine where root may mount tmpfs"
        );
        SmallDisk(path.to_path_buf())
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Makes room: the same mount, bigger (what is on it stays).
    pub fn grow(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remounting the tmpfs at {size} failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
