//! The kernel's huge page pools, changed only through the host-wide lock and the ledger
//! (`ledger.rs`): a run grows a pool by the pages it needs, records the increment, and takes
//! back exactly that increment when it ends, so concurrent runs never undo each other and the
//! pool never drops below what the others (vmemsim or not) hold. A run that was killed before
//! it could take its pages back is repaired by the next lock holder ([`repair`]).

use std::path::PathBuf;

use super::ledger::{entries, Entry, HostLock};

/// One pool of the kernel: `/sys/kernel/mm/hugepages/hugepages-<kB>kB`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolDir(pub String);

impl PoolDir {
    pub fn for_page_size(page_size: u64) -> PoolDir {
        PoolDir(format!("hugepages-{}kB", page_size >> 10))
    }

    fn file(&self, name: &str) -> PathBuf {
        PathBuf::from("/sys/kernel/mm/hugepages").join(&self.0).join(name)
    }

    fn read(&self, name: &str) -> std::io::Result<u64> {
        let path = self.file(name);
        let text = std::fs::read_to_string(&path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        text.trim().parse().map_err(|_| std::io::Error::other(format!("{}: '{}' is not a number", path.display(), text.trim())))
    }

    /// All pages of the pool: the sysfs `nr_hugepages` counts surplus pages too
    /// (`nr_hugepages_show_common`, mm/hugetlb.c shows `h->nr_huge_pages`).
    pub fn total(&self) -> std::io::Result<u64> {
        self.read("nr_hugepages")
    }

    /// Surplus (overcommitted) pages.
    pub fn surplus(&self) -> u64 {
        self.read("surplus_hugepages").unwrap_or(0)
    }

    /// The persistent pool size: what a write of `nr_hugepages` sets (`set_max_huge_pages`
    /// compares it with `persistent_huge_pages`, total less surplus).
    pub fn persistent(&self) -> std::io::Result<u64> {
        Ok(self.total()?.saturating_sub(self.surplus()))
    }

    fn write(&self, pages: u64) -> std::io::Result<()> {
        let path = self.file("nr_hugepages");
        std::fs::write(&path, pages.to_string()).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    /// Grows the persistent pool to `pages` (surplus pages become persistent first).
    fn grow_to(&self, pages: u64, _lock: &HostLock) -> std::io::Result<()> {
        self.write(pages)
    }

    /// Shrinks the persistent pool by `pages`. The kernel's shrink (`set_max_huge_pages`) drops
    /// its lock between freeing free pages and making in-use pages surplus: a page freed in
    /// between is left free *and* surplus, and no later write of a smaller size frees it (seen
    /// here after a shrink that raced the exit of a destination, whose mount the kernel tears
    /// down a moment later). So it waits (at most 2 s) until the pages to give back are free,
    /// then makes any surplus pages persistent (freeing such stuck pages with the rest) and
    /// writes the smaller size; pages others still use become surplus again.
    fn shrink_by(&self, pages: u64, lock: &HostLock) -> std::io::Result<u64> {
        let start = std::time::Instant::now();
        while self.available() < pages && start.elapsed() < std::time::Duration::from_secs(2) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (persistent, surplus) = (self.persistent()?, self.surplus());
        if surplus > 0 {
            self.grow_to(persistent + surplus, lock)?;
        }
        let target = persistent.saturating_sub(pages);
        self.write(target)?;
        Ok(target)
    }

    /// Free pages that nobody has reserved: what a new mapping can really get.
    pub fn available(&self) -> u64 {
        let free = self.read("free_hugepages").unwrap_or(0);
        free.saturating_sub(self.read("resv_hugepages").unwrap_or(0))
    }

    /// The pool's counters, for messages.
    pub fn describe(&self) -> String {
        let r = |n| self.read(n).map_or("?".to_string(), |v| v.to_string());
        format!("{}: nr_hugepages {}, free {}, reserved {}, surplus {}", self.0, r("nr_hugepages"), r("free_hugepages"), r("resv_hugepages"), r("surplus_hugepages"))
    }
}

/// Free 2 MiB huge pages nobody has reserved.
pub fn free_huge_pages() -> u64 {
    PoolDir::for_page_size(2 << 20).available()
}

/// Pages added to a pool for one run, taken back on drop (on success, error and panic; a
/// killed process is repaired by [`repair`]).
pub struct HugePool {
    pool: PoolDir,
    entry: Option<Entry>,
}

impl HugePool {
    /// Adds `pages` 2 MiB huge pages to the pool for this run.
    pub fn ensure_free(pages: u64) -> std::io::Result<HugePool> {
        Self::grow(PoolDir::for_page_size(2 << 20), pages, |target| target)
    }

    /// Adds `pages` pages of the pool's size. Free pages already there are not counted on:
    /// another run may be about to take them, so each run adds all it needs (free pages are
    /// fungible, so the sum is enough for everyone). Surplus pages (overcommitted, in use by
    /// others) become persistent on the way, as the kernel does when the pool grows past them
    /// (`set_max_huge_pages`, mm/hugetlb.c), and the increment counts them, so that taking it
    /// back makes them surplus again. `kernel` maps the size asked for to the size written (a
    /// test stands in for a kernel that gives fewer pages).
    pub fn grow(pool: PoolDir, pages: u64, kernel: impl Fn(u64) -> u64) -> std::io::Result<HugePool> {
        let (held, new) = Self::grow_some(pool, pages, kernel)?;
        if new < pages {
            let state = held.pool.describe();
            drop(held);
            return Err(std::io::Error::other(format!(
                "the kernel gave only {new} new huge pages of the {pages} needed ({state}): free memory (or compact it: echo 1 > /proc/sys/vm/compact_memory) and retry"
            )));
        }
        Ok(held)
    }

    /// Like [`grow`](Self::grow), but keeps what the kernel gave when it gives fewer pages than
    /// asked (1 GiB pages need contiguous memory the kernel may not find); also returns how many
    /// new pages the pool has for this run.
    pub fn grow_some(pool: PoolDir, pages: u64, kernel: impl Fn(u64) -> u64) -> std::io::Result<(HugePool, u64)> {
        if pages == 0 {
            return Ok((HugePool { pool, entry: None }, 0));
        }
        let lock = HostLock::take()?;
        repair_locked(&lock)?;
        let before = pool.persistent()?;
        let surplus = pool.surplus();
        let target = before + surplus + pages;
        let mut entry = Entry::new(&pool.0, target - before, Some(before));
        entry.write(&lock)?;
        let written = pool.grow_to(kernel(target), &lock);
        // The kernel gives what it can (and says so in nr_hugepages); the increment is that.
        let after = pool.persistent()?;
        entry.pages = after.saturating_sub(before);
        entry.pending_from = None;
        entry.write(&lock)?;
        let held = HugePool { pool, entry: Some(entry) };
        // The release takes the lock: give it up first on every way out.
        drop(lock);
        written?;
        Ok((held, after.saturating_sub(before + surplus)))
    }

    /// The pages this run added.
    pub fn added(&self) -> u64 {
        self.entry.as_ref().map_or(0, |e| e.pages)
    }
}

impl Drop for HugePool {
    fn drop(&mut self) {
        let Some(entry) = self.entry.take() else { return };
        let Ok(lock) = HostLock::take() else { return };
        let _ = self.pool.shrink_by(entry.pages, &lock);
        let _ = entry.remove(&lock);
    }
}

/// What a repair took back: one line per entry of a process that ended without taking its
/// pages back, or per ledger file that could not be read.
pub fn repair() -> std::io::Result<Vec<String>> {
    let lock = HostLock::take()?;
    repair_locked(&lock)
}

fn repair_locked(lock: &HostLock) -> std::io::Result<Vec<String>> {
    let (good, bad) = entries(lock)?;
    let mut done = Vec::new();
    for e in good.into_iter().filter(|e| !e.owner.alive()) {
        let pool = PoolDir(e.pool.clone());
        let now = pool.persistent()?;
        let give_back = match e.pending_from {
            // It died while writing the pool: what the pool has above the size before.
            Some(before) => now.saturating_sub(before),
            None => e.pages,
        };
        let left = pool.shrink_by(give_back, lock)?;
        e.remove(lock)?;
        done.push(format!("{}: took back {give_back} huge page{} that process {} added and did not release (now {left})", e.pool, if give_back == 1 { "" } else { "s" }, e.owner.pid));
    }
    for path in bad {
        std::fs::remove_file(&path)?;
        done.push(format!("removed the unreadable ledger file {}", path.display()));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::super::mounts::is_root;
    use super::*;

    /// The tests below read the pool's size before and after: one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn root_or_skip() -> Option<std::sync::MutexGuard<'static, ()>> {
        if is_root() {
            return Some(SERIAL.lock().unwrap_or_else(|p| p.into_inner()));
        }
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true runs as root, but this process is not root");
        eprintln!("skipping: not root (the huge page pool needs root)");
        None
    }

    /// A kernel that gives fewer pages than asked: an error that says so, the pool back at the
    /// size found, the ledger without the entry, and no hang (the release takes the same lock).
    #[test]
    fn a_grow_the_kernel_cannot_satisfy_fails_and_restores_the_pool() {
        let Some(_serial) = root_or_skip() else { return };
        let pool = PoolDir::for_page_size(2 << 20);
        let found = pool.persistent().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(HugePool::grow(PoolDir::for_page_size(2 << 20), 4, |target| target - 1).map(|_| ()).map_err(|e| e.to_string()));
        });
        let result = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("HugePool::grow deadlocked on its failure path");
        let err = result.expect_err("a grow the kernel did not satisfy is an error");
        assert!(err.contains("the kernel gave only 3 new huge pages of the 4 needed"), "{err}");
        assert_eq!(pool.persistent().unwrap(), found, "the pool is restored to the size found");
    }

    /// Two increments that overlap in time: each takes back only its own pages, whichever ends
    /// first (restoring the size each found left the pool grown, or shrank it under the other).
    #[test]
    fn overlapping_increments_take_back_only_their_own() {
        let Some(_serial) = root_or_skip() else { return };
        let pool = PoolDir::for_page_size(2 << 20);
        let found = pool.persistent().unwrap();
        let a = HugePool::ensure_free(3).unwrap();
        let b = HugePool::ensure_free(5).unwrap();
        assert_eq!((a.added(), b.added()), (3, 5));
        assert!(pool.persistent().unwrap() >= found + 8);
        drop(a);
        assert!(pool.persistent().unwrap() >= found + 5, "b's pages stay while b lives");
        drop(b);
        assert_eq!(pool.persistent().unwrap(), found);
    }

    /// A process that added pages and died without taking them back is repaired by the next
    /// lock holder, and only its pages are taken back; one that died while the kernel grew the
    /// pool (a signal cuts the growth short) gives back what the pool has above its size before.
    #[test]
    fn an_entry_of_a_dead_process_is_repaired() {
        let Some(_serial) = root_or_skip() else { return };
        let pool = PoolDir::for_page_size(2 << 20);
        let lock = HostLock::take().unwrap();
        let found = pool.persistent().unwrap();
        pool.grow_to(found + 2, &lock).unwrap();
        let mut dead = Entry::new(&pool.0, 2, None);
        dead.owner.start += 1; // this pid, another start time: a process that is gone
        dead.path.set_file_name(format!("{}-dead", dead.path.file_name().unwrap().to_string_lossy()));
        dead.write(&lock).unwrap();
        let repaired = repair_locked(&lock).unwrap();
        assert!(repaired.iter().any(|l| l.contains("took back 2 huge pages")), "{repaired:?}");
        assert_eq!(pool.persistent().unwrap(), found);
        assert!(!dead.path.exists());
        // Asked for 10 more, the kernel had added 3 when the owner died.
        pool.grow_to(found + 3, &lock).unwrap();
        dead.pages = 10;
        dead.pending_from = Some(found);
        dead.write(&lock).unwrap();
        let repaired = repair_locked(&lock).unwrap();
        assert!(repaired.iter().any(|l| l.contains("took back 3 huge pages")), "{repaired:?}");
        assert_eq!(pool.persistent().unwrap(), found);
    }
}
