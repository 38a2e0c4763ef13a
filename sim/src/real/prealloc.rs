//! Ways to preallocate plugged memory, measured against each other in `benches/prealloc.rs` and
//! selectable per scenario (`[destination] prealloc_strategy`) for the real adapter.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;

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
    /// All cores, each claiming the next 64 MiB of plugged bytes for MADV_POPULATE_WRITE, all
    /// starting together.
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

/// The bytes one parallel claim covers: short enough that a slow core leaves its share to the
/// other, long enough that a claim costs nothing next to zeroing it (about 3-5 ms on hugetlb).
pub const CHUNK: usize = 64 << 20;

/// Cuts `runs` into pieces of at most `chunk` bytes at page boundaries, in order: the claims of
/// the parallel strategy, so that work is balanced by bytes, not by runs.
pub fn chunks(runs: &[(usize, usize)], chunk: usize, page: usize) -> Vec<(usize, usize)> {
    let chunk = (chunk / page).max(1) * page;
    let mut out = Vec::new();
    for &(mut off, mut len) in runs {
        while len > 0 {
            let take = len.min(chunk);
            out.push((off, take));
            off += take;
            len -= take;
        }
    }
    out
}

/// All cores populate `runs`, each claiming the next chunk until none is left or one fails.
/// No thread starts before all exist: a long MADV_POPULATE_WRITE holds the mmap lock for read,
/// and the next thread's stack mapping waits for it, which serialized the threads here (12 GiB/s
/// on 2 cores instead of 20). QEMU waits the same way (`threads_created_flag` in
/// `do_madv_populate_write_pages`, util/oslib-posix.c).
fn parallel(map: &Mapping, runs: &[(usize, usize)]) -> Result<(), Errno> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let work = chunks(runs, CHUNK, map.page_size);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let start = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    while !failed.load(Ordering::Relaxed) {
                        let Some(&(o, l)) = work.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                        if let Err(e) = populate(map, o, l) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("populate threads do not panic")).collect::<Result<Vec<()>, Errno>>().map(|_| ())
    })
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
        Strategy::PerBlock => chunks(runs, block, map.page_size).into_iter().try_for_each(|(o, l)| populate(map, o, l)),
        Strategy::Parallel => parallel(map, runs),
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
    fn chunks_cut_runs_at_pages_and_keep_every_byte() {
        let runs = [(0, 8 << 20), (16 << 20, 2 << 20), (32 << 20, 5 << 20)];
        let got = chunks(&runs, 3 << 20, 2 << 20);
        assert_eq!(got, vec![(0, 2 << 20), (2 << 20, 2 << 20), (4 << 20, 2 << 20), (6 << 20, 2 << 20), (16 << 20, 2 << 20), (32 << 20, 2 << 20), (34 << 20, 2 << 20), (36 << 20, 1 << 20)]);
        assert_eq!(chunks(&runs, CHUNK, 4096), runs.to_vec());
    }
}
