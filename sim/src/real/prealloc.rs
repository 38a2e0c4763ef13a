//! Ways to preallocate plugged memory, measured against each other in `benches/prealloc.rs` and
//! selectable per scenario (`[destination] prealloc_strategy`) for the real adapter.

use std::os::fd::AsFd;

use rustix::fs::FallocateFlags;
use rustix::io::Errno;
use rustix::mm::Advice;
use serde::{Deserialize, Serialize};

use super::mapping::Mapping;

/// A preallocation strategy.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// QEMU's virtio-mem way: one MADV_POPULATE_WRITE per plugged run, one thread
    /// (`virtio_mem_prealloc_range_cb` → `qemu_prealloc_mem(.., 1, NULL, false, ..)`).
    #[default]
    Qemu,
    /// Touch every page, one thread: QEMU's fallback where MADV_POPULATE_WRITE is missing
    /// (benches only: without QEMU's SIGBUS handler a shortage kills the process).
    Touch,
    /// One MADV_POPULATE_WRITE per block instead of per run.
    PerBlock,
    /// The plugged bytes split evenly across all cores, MADV_POPULATE_WRITE in each.
    Parallel,
    /// fallocate(0) on the fd first (fd-backed memory), then MADV_POPULATE_WRITE per run.
    Fallocate,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [Strategy::Qemu, Strategy::Touch, Strategy::PerBlock, Strategy::Parallel, Strategy::Fallocate];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Qemu => "qemu",
            Strategy::Touch => "touch",
            Strategy::PerBlock => "per-block",
            Strategy::Parallel => "parallel",
            Strategy::Fallocate => "fallocate",
        }
    }

    /// Whether it fails gracefully (an error, not a SIGBUS) when memory runs out.
    pub fn graceful(self) -> bool {
        self != Strategy::Touch
    }
}

fn populate(map: &Mapping, offset: usize, len: usize) -> Result<(), Errno> {
    let addr = map.at(offset, len);
    // SAFETY: the range lies inside the mapping; MADV_POPULATE_WRITE only faults pages in.
    unsafe { rustix::mm::madvise(addr.cast(), len, Advice::LinuxPopulateWrite) }
}

fn touch(map: &Mapping, offset: usize, len: usize) {
    let start = map.at(offset, len);
    for p in (0..len).step_by(map.page_size.min(4096)) {
        // SAFETY: inside the mapping (checked by `at`); a volatile write faults the page in.
        unsafe { std::ptr::write_volatile(start.add(p), 0) };
    }
}

/// Splits `runs` into `n` parts of (almost) equal bytes, cutting runs at page boundaries.
pub fn balance(runs: &[(usize, usize)], n: usize, page: usize) -> Vec<Vec<(usize, usize)>> {
    let total: usize = runs.iter().map(|r| r.1).sum();
    let share = (total / n.max(1)).div_ceil(page) * page;
    let mut parts = vec![Vec::new(); n.max(1)];
    let (mut part, mut room) = (0, share);
    for &(mut off, mut len) in runs {
        while len > 0 {
            if room == 0 && part + 1 < parts.len() {
                part += 1;
                room = share;
            }
            let take = if part + 1 == parts.len() { len } else { len.min(room) };
            parts[part].push((off, take));
            off += take;
            len -= take;
            room = room.saturating_sub(take);
        }
    }
    parts
}

/// Preallocates the plugged `runs` (byte offset, length) of a mapping; `block` is the
/// virtio-mem block size. Stops at the first error.
pub fn preallocate(map: &Mapping, runs: &[(usize, usize)], block: usize, strategy: Strategy) -> Result<(), Errno> {
    match strategy {
        Strategy::Qemu => runs.iter().try_for_each(|&(o, l)| populate(map, o, l)),
        Strategy::Touch => {
            runs.iter().for_each(|&(o, l)| touch(map, o, l));
            Ok(())
        }
        Strategy::PerBlock => runs.iter().try_for_each(|&(o, l)| (o..o + l).step_by(block).try_for_each(|b| populate(map, b, block))),
        Strategy::Parallel => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let parts = balance(runs, threads, map.page_size);
            std::thread::scope(|s| {
                let handles: Vec<_> = parts.iter().map(|part| s.spawn(move || part.iter().try_for_each(|&(o, l)| populate(map, o, l)))).collect();
                handles.into_iter().map(|h| h.join().expect("populate threads do not panic")).collect::<Result<Vec<()>, Errno>>().map(|_| ())
            })
        }
        Strategy::Fallocate => {
            if let Some(fd) = &map.fd {
                runs.iter().try_for_each(|&(o, l)| rustix::fs::fallocate(fd.as_fd(), FallocateFlags::empty(), o as u64, l as u64))?;
            }
            runs.iter().try_for_each(|&(o, l)| populate(map, o, l))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_splits_bytes_not_runs() {
        let runs = [(0, 8 << 20), (16 << 20, 2 << 20), (32 << 20, 6 << 20)];
        let parts = balance(&runs, 2, 4096);
        let sums: Vec<usize> = parts.iter().map(|p| p.iter().map(|r| r.1).sum()).collect();
        assert_eq!(sums, vec![8 << 20, 8 << 20]);
        let all: usize = sums.iter().sum();
        assert_eq!(all, 16 << 20);
        assert_eq!(balance(&runs, 1, 4096), vec![runs.to_vec()]);
    }
}
