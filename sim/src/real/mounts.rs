//! Mounts with `size=` quotas on the host, for the conformance suite's QEMUs (a real run's
//! destination mounts in its own namespace instead, `isolation.rs`). Every guard removes what
//! it made when dropped: on success, on error, and on a panic.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::mount::{MountFlags, UnmountFlags};

/// Whether this process may mount and change the huge page pool.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A fresh private directory under the temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> std::io::Result<TempDir> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!("vmemsim-{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tmpfs or hugetlbfs mounted on a private directory; unmounted (lazily, so a process that
/// still maps it cannot block it) and removed on drop.
pub struct Mount {
    dir: TempDir,
}

impl Mount {
    /// `fstype` is "tmpfs" or "hugetlbfs"; `size` None mounts without a quota.
    pub fn new(fstype: &str, size: Option<u64>, huge_page: Option<u64>) -> std::io::Result<Mount> {
        let dir = TempDir::new(fstype)?;
        let mut opts = Vec::new();
        if let Some(p) = huge_page {
            opts.push(format!("pagesize={p}"));
        }
        if let Some(s) = size {
            opts.push(format!("size={s}"));
        }
        let data = std::ffi::CString::new(opts.join(",")).map_err(std::io::Error::other)?;
        rustix::mount::mount(fstype, dir.path(), fstype, MountFlags::NOSUID | MountFlags::NODEV, Some(data.as_c_str()))?;
        Ok(Mount { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(self.dir.path(), UnmountFlags::DETACH);
    }
}
