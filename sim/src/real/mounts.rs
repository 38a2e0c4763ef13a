//! Private mounts with `size=` quotas and the huge page pool behind them. Every guard restores
//! what it found when dropped: on success, on error, and on a panic.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use rustix::mount::{MountFlags, UnmountFlags};

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";
const FREE_HUGEPAGES: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

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

fn read_u64(path: &str) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| std::io::Error::other(format!("{path}: '{}' is not a number", text.trim())))
}

/// Free 2 MiB huge pages in the global pool.
pub fn free_huge_pages() -> u64 {
    read_u64(FREE_HUGEPAGES).unwrap_or(0)
}

/// Makes at least `pages` 2 MiB huge pages free by growing the global pool, never shrinking it
/// below what it found; restores the size it found on drop. Guards nest: an inner one that
/// finds enough free pages changes nothing.
pub struct HugePool {
    found: u64,
    changed: bool,
}

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

impl HugePool {
    pub fn ensure_free(pages: u64) -> std::io::Result<HugePool> {
        Self::grow(pages, free_huge_pages)
    }

    /// `ensure_free` with the count of free pages read by `free_pages` (a test stands in for a
    /// kernel that gives fewer pages than asked).
    fn grow(pages: u64, free_pages: impl Fn() -> u64) -> std::io::Result<HugePool> {
        let guard = lock();
        let found = read_u64(NR_HUGEPAGES)?;
        let free = free_pages();
        let mut pool = HugePool { found, changed: false };
        if free < pages {
            std::fs::write(NR_HUGEPAGES, (found + pages - free).to_string())?;
            pool.changed = true;
            let now = free_pages();
            if now < pages {
                // `pool` restores the size it found when dropped, and takes the lock to do so:
                // release it first (returning with it held deadlocked here when another process
                // took free pages in between).
                drop(guard);
                return Err(std::io::Error::other(format!("the kernel gave only {now} free huge pages of the {pages} needed")));
            }
        }
        Ok(pool)
    }
}

impl Drop for HugePool {
    fn drop(&mut self) {
        if self.changed {
            let _lock = lock();
            let _ = std::fs::write(NR_HUGEPAGES, self.found.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool the kernel cannot grow far enough: an error, the size it found restored, and no
    /// hang (the guard's restore takes the same lock as the grow).
    #[test]
    fn a_grow_the_kernel_cannot_satisfy_fails_and_restores_the_pool() {
        if !is_root() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true runs as root, but this process is not root");
            eprintln!("skipping: not root (the huge page pool needs root)");
            return;
        }
        let found = read_u64(NR_HUGEPAGES).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The first read is the real one; after the grow the kernel "gave" nothing.
            let reads = std::sync::atomic::AtomicU32::new(0);
            let free = || if reads.fetch_add(1, Ordering::Relaxed) == 0 { free_huge_pages() } else { 0 };
            let wanted = free_huge_pages() + 1;
            let _ = tx.send(HugePool::grow(wanted, free).map(|_| ()).map_err(|e| e.to_string()));
        });
        let result = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("HugePool::grow deadlocked on its failure path");
        let err = result.expect_err("a grow the kernel did not satisfy is an error");
        assert!(err.contains("the kernel gave only 0 free huge pages"), "{err}");
        assert_eq!(read_u64(NR_HUGEPAGES).unwrap(), found, "the pool is restored to the size found");
    }
}
