//! A real small file system for fault-injection tests (feature `failpoints`): a tmpfs of a
//! chosen size that really fills up, can grow, and can turn read-only. Shared by the fault
//! suites of every crate that writes collections.

use std::path::Path;
use std::process::Command;

/// A tmpfs mounted on a fresh temporary directory, unmounted when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts `bytes` of tmpfs; `None` when this process may not mount (not root). A mount that
    /// fails as root panics: the test would otherwise pass without testing anything.
    pub fn mount(bytes: u64) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let tmpfs = Tmpfs { dir };
        tmpfs.mount_with(&["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"]);
        Some(tmpfs)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Grows (or shrinks) the file system to `bytes`.
    pub fn resize(&self, bytes: u64) {
        self.mount_with(&["-o", &format!("remount,size={bytes}")]);
    }

    /// Remounts it read-only.
    pub fn make_read_only(&self) {
        self.mount_with(&["-o", "remount,ro"]);
    }

    fn mount_with(&self, args: &[&str]) {
        let ok = Command::new("mount")
            .args(args)
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount {args:?} {} failed", self.dir.path().display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
