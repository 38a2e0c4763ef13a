//! The host-wide record of what vmemsim runs changed on the host: one lock for every process
//! (`flock` on `/run/vmemsim/lock`) and one ledger entry per huge page pool increment, so that
//! concurrent runs add and remove only their own pages and a run that was killed is repaired
//! by the next one. `/run` is a tmpfs: the ledger goes with a reboot, as the pool does.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::FlockOperation;

/// Where the lock and the ledger live (`VMEMSIM_STATE_DIR` overrides it for a private test).
pub fn state_dir() -> PathBuf {
    std::env::var_os("VMEMSIM_STATE_DIR").map_or_else(|| PathBuf::from("/run/vmemsim"), PathBuf::from)
}

/// The host-wide lock, held while it lives. It excludes other processes and other threads of
/// this one alike (a `flock` belongs to the open file, and each holder opens its own), and the
/// kernel releases it when its holder dies, however it dies.
pub struct HostLock {
    _file: File,
}

impl HostLock {
    pub fn take() -> std::io::Result<HostLock> {
        let dir = state_dir();
        std::fs::create_dir_all(&dir)?;
        let file = File::options().create(true).truncate(false).write(true).open(dir.join("lock"))?;
        rustix::fs::flock(file.as_fd(), FlockOperation::LockExclusive)?;
        Ok(HostLock { _file: file })
    }
}

/// The process that made an entry: its pid and its start time (clock ticks after boot, field
/// 22 of `/proc/PID/stat`), so a reused pid is not mistaken for the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub start: u64,
}

impl Owner {
    pub fn me() -> Owner {
        let pid = std::process::id();
        Owner { pid, start: start_time(pid).expect("this process has a /proc entry") }
    }

    /// Whether the owner still runs (a zombie has ended: its memory and mounts are gone).
    pub fn alive(&self) -> bool {
        stat_fields(self.pid).is_some_and(|f| f.first().map(String::as_str) != Some("Z") && f.get(19).and_then(|s| s.parse().ok()) == Some(self.start))
    }
}

/// The fields of `/proc/PID/stat` after the command name, from field 3 (the state) on: index
/// 1 is the parent's pid, 19 the start time.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// One increment of one pool, as recorded. `pending_from` is set while the owner, holding the
/// lock, writes the pool (the pool's size before the write): if it dies then, the kernel may
/// have grown the pool by any part of the increment (a signal stops the allocation loop), and
/// the repairer (the next lock holder, so nobody else wrote in between) takes back what the
/// pool has above that size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub owner: Owner,
    /// The pool's folder name under /sys/kernel/mm/hugepages, e.g. `hugepages-2048kB`.
    pub pool: String,
    pub pages: u64,
    pub pending_from: Option<u64>,
}

fn entries_dir() -> PathBuf {
    state_dir().join("pool")
}

impl Entry {
    /// A new entry of this process for `pool` (not yet written).
    pub fn new(pool: &str, pages: u64, pending_from: Option<u64>) -> Entry {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let owner = Owner::me();
        let name = format!("{}-{}-{}-{}", pool, owner.pid, owner.start, SEQ.fetch_add(1, Ordering::Relaxed));
        Entry { path: entries_dir().join(name), owner, pool: pool.to_string(), pages, pending_from }
    }

    /// Writes the entry (whole, then renamed into place, so a reader never sees half of it).
    pub fn write(&self, _lock: &HostLock) -> std::io::Result<()> {
        std::fs::create_dir_all(entries_dir())?;
        let tmp = self.path.with_extension("new");
        let mut f = File::create(&tmp)?;
        let pending = self.pending_from.map_or(String::new(), |t| format!(" pending {t}"));
        writeln!(f, "{} {} {} {}{pending}", self.owner.pid, self.owner.start, self.pool, self.pages)?;
        std::fs::rename(&tmp, &self.path)
    }

    pub fn remove(&self, _lock: &HostLock) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn parse(path: &Path, text: &str) -> Option<Entry> {
        let f: Vec<&str> = text.split_whitespace().collect();
        let owner = Owner { pid: f.first()?.parse().ok()?, start: f.get(1)?.parse().ok()? };
        let pending_from = match f.get(4..) {
            Some(["pending", t]) => Some(t.parse().ok()?),
            Some([]) => None,
            _ => return None,
        };
        Some(Entry { path: path.to_path_buf(), owner, pool: f.get(2)?.to_string(), pages: f.get(3)?.parse().ok()?, pending_from })
    }
}

/// Every entry in the ledger; a file that does not parse is reported by its path.
pub fn entries(_lock: &HostLock) -> std::io::Result<(Vec<Entry>, Vec<PathBuf>)> {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    let dir = match std::fs::read_dir(entries_dir()) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((good, bad)),
        Err(e) => return Err(e),
    };
    for item in dir {
        let path = item?.path();
        match std::fs::read_to_string(&path).ok().and_then(|t| Entry::parse(&path, &t)) {
            Some(e) => good.push(e),
            None => bad.push(path),
        }
    }
    good.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((good, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_back_and_a_dead_owner_is_seen_dead() {
        let e = Entry::new("hugepages-2048kB", 32, Some(96));
        let text = format!("{} {} {} {} pending 96\n", e.owner.pid, e.owner.start, e.pool, e.pages);
        assert_eq!(Entry::parse(&e.path, &text), Some(e.clone()));
        assert_eq!(Entry::parse(&e.path, "1 2 hugepages-2048kB 3 pending"), None);
        assert!(e.owner.alive());
        assert!(!Owner { start: e.owner.start + 1, ..e.owner }.alive(), "a reused pid with another start time is not the owner");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_time(pid);
        child.wait().unwrap();
        assert!(!Owner { pid, start: start.unwrap_or(0) }.alive());
    }
}
