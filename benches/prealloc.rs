//! Preallocation strategies on real memory: a virtio-mem region with 10 %, 50 % and 100 %
//! plugged contiguously and 50 % plugged in random blocks, on private anonymous 4 KiB, memfd
//! 4 KiB and memfd hugetlb 2 MiB memory; plus the memory bandwidth (memset over populated
//! memory) and the cost of discarding. The region is 4 GiB for hugetlb and 1.5 GiB for 4 KiB
//! memory, whose first-touch faults cost about 1 µs each in this VM, so that `cargo bench` stays
//! under 10 minutes; `VMEMSIM_BENCH_REGION=4G` sets every region (about 20 minutes here).
//! Each group reports bytes per second; the README turns them into GiB/s and ratios.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use rustix::fs::FallocateFlags;
use rustix::mm::Advice;
use vmemsim_model::Bytes;
use vmemsim_sim::real::mapping::{Backing, Mapping};
use vmemsim_sim::real::mounts::is_root;
use vmemsim_sim::real::pool::{free_huge_pages, HugePool};
use vmemsim_sim::real::prealloc::{preallocate, Strategy};

const BLOCK: usize = 2 << 20;

fn region(kind: Kind) -> usize {
    let default = if matches!(kind, Kind::Hugetlb) { 4 << 30 } else { 3 << 29 };
    std::env::var("VMEMSIM_BENCH_REGION").ok().and_then(|s| s.parse::<Bytes>().ok()).map_or(default, |b| b.0 as usize)
}

/// Plugged runs (offset, len) of a layout.
fn layouts(region: usize) -> Vec<(&'static str, Vec<(usize, usize)>)> {
    let blocks = region / BLOCK;
    let contiguous = |percent: usize| vec![(0, blocks * percent / 100 * BLOCK)];
    // Half the blocks, chosen by a fixed xorshift, merged into runs.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for b in 0..blocks {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 2 == 0 {
            match runs.last_mut() {
                Some(r) if r.0 + r.1 == b * BLOCK => r.1 += BLOCK,
                _ => runs.push((b * BLOCK, BLOCK)),
            }
        }
    }
    vec![("contiguous-10", contiguous(10)), ("contiguous-50", contiguous(50)), ("contiguous-100", contiguous(100)), ("fragmented-50", runs)]
}

#[derive(Copy, Clone)]
enum Kind {
    Anon,
    Memfd,
    Hugetlb,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Anon => "anon-4k",
            Kind::Memfd => "memfd-4k",
            Kind::Hugetlb => "hugetlb-2m",
        }
    }
    fn map(self, len: usize) -> Mapping {
        match self {
            Kind::Anon => Mapping::new(Backing::PrivateAnonymous, len, 4096, "bench", false),
            Kind::Memfd => Mapping::new(Backing::Memfd { hugetlb: false }, len, 4096, "bench", false),
            Kind::Hugetlb => Mapping::new(Backing::Memfd { hugetlb: true }, len, 2 << 20, "bench", false),
        }
        .expect("map the bench region")
    }
}

/// Times `f` on a fresh mapping per iteration (mapping and unmapping not counted).
fn timed(kind: Kind, len: usize, iters: u64, mut f: impl FnMut(&Mapping)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let map = kind.map(len);
        let t = Instant::now();
        f(&map);
        total += t.elapsed();
    }
    total
}

fn kinds() -> (Vec<Kind>, Option<HugePool>) {
    let mut kinds = vec![Kind::Anon, Kind::Memfd];
    let pages = (region(Kind::Hugetlb) / (2 << 20)) as u64;
    let pool = if free_huge_pages() >= pages {
        kinds.push(Kind::Hugetlb);
        None
    } else if is_root() && std::env::var("VMEMSIM_BENCH_GROW_POOL").as_deref() == Ok("1") {
        // Grows the pool for the run and restores it after (VMEMSIM_BENCH_GROW_POOL=1, root).
        match HugePool::ensure_free(pages) {
            Ok(p) => {
                kinds.push(Kind::Hugetlb);
                Some(p)
            }
            Err(e) => {
                eprintln!("hugetlb-2m skipped: {e}");
                None
            }
        }
    } else {
        eprintln!(
            "hugetlb-2m skipped: {} free 2 MiB huge pages, {pages} needed (as root, VMEMSIM_BENCH_GROW_POOL=1 grows the pool for the run and restores it)",
            free_huge_pages()
        );
        None
    };
    (kinds, pool)
}

fn strategies(c: &mut Criterion) {
    let (kinds, _pool) = kinds();
    for kind in kinds {
        let region = region(kind);
        for (layout, runs) in layouts(region) {
            let bytes: usize = runs.iter().map(|r| r.1).sum();
            let mut g = c.benchmark_group(format!("prealloc/{}/{layout}", kind.name()));
            // Ten iterations, one per sample: each maps and populates a fresh region.
            g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_millis(1));
            g.throughput(Throughput::Bytes(bytes as u64));
            for s in Strategy::ALL {
                if matches!(s, Strategy::Fallocate) && matches!(kind, Kind::Anon) {
                    continue;
                }
                g.bench_function(BenchmarkId::from_parameter(s.name()), |b| {
                    b.iter_custom(|iters| timed(kind, region, iters, |m| preallocate(m, &runs, BLOCK, s).expect("enough memory")))
                });
            }
            g.finish();
        }
    }
}

fn reference(c: &mut Criterion) {
    let (kinds, _pool) = kinds();
    for kind in kinds {
        let region = region(kind);
        let mut g = c.benchmark_group(format!("reference/{}", kind.name()));
        g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_millis(1));
        g.throughput(Throughput::Bytes(region as u64));
        let whole = [(0usize, region)];
        // The memory bandwidth: memset over memory that is already populated.
        g.bench_function("memset-populated", |b| {
            let map = kind.map(region);
            preallocate(&map, &whole, BLOCK, Strategy::Qemu).expect("enough memory");
            b.iter(|| {
                // SAFETY: the whole mapping is ours and populated.
                unsafe { std::ptr::write_bytes(map.at(0, region), 0x11, region) }
            })
        });
        // Discarding what was populated: PUNCH_HOLE for fd-backed memory, DONTNEED otherwise.
        g.bench_function("discard", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let map = kind.map(region);
                    preallocate(&map, &whole, BLOCK, Strategy::Qemu).expect("enough memory");
                    let t = Instant::now();
                    match &map.fd {
                        Some(fd) => rustix::fs::fallocate(fd, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, 0, region as u64).expect("punch"),
                        // SAFETY: the range is the whole mapping, which nothing borrows.
                        None => unsafe { rustix::mm::madvise(map.at(0, region).cast(), region, Advice::LinuxDontNeed).expect("dontneed") },
                    }
                    total += t.elapsed();
                }
                total
            })
        });
        g.finish();
    }
}

criterion_group!(benches, strategies, reference);
criterion_main!(benches);
