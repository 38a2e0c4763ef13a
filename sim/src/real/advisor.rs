//! `vmemsim prealloc`: the preallocation strategies of `prealloc.rs` measured on this host's
//! memory, each on a fresh mapping per run, beside the bandwidth of the same memory (memset over
//! it once populated), in one run. Huge pages come from the free pool or, as root with
//! `grow_pool`, from a pool grown through the ledger (`pool.rs`) with a guardian, as real runs
//! do; a tmpfs is a private mount in this process's own mount namespace (`isolation.rs`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmemsim_model::Bytes;

use super::advisor_kinds::{Kind, Layout};
use super::advisor_report::{case, recommend, KindReport, Machine, PoolUse, Report, Skip};
use super::guardian::Guardian;
use super::isolation::{private_mounts, MountSpec};
use super::mapping::{Backing, Mapping};
use super::mounts::is_root;
use super::pool::HugePool;
use super::prealloc::{preallocate, Strategy};
use crate::error::SimError;

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    pub kinds: Vec<Kind>,
    /// The region per case (`None`: each kind's default).
    pub size: Option<Bytes>,
    pub plugged_percent: u8,
    pub layouts: Vec<Layout>,
    pub repeat: u32,
    pub grow_pool: bool,
    /// This program, for the guardian (`exe __guard`).
    pub exe: PathBuf,
}

/// Where one kind's mappings come from.
enum Place {
    Anon,
    Memfd { hugetlb: bool },
    Dir(PathBuf),
}

impl Place {
    fn map(&self, kind: Kind, len: usize, reserve: bool) -> std::io::Result<Mapping> {
        let backing = match self {
            Place::Anon => Backing::PrivateAnonymous,
            Place::Memfd { hugetlb } => Backing::Memfd { hugetlb: *hugetlb },
            Place::Dir(d) => Backing::TempFile(d),
        };
        Mapping::new(backing, len, kind.page_size().0 as usize, "vmemsim-prealloc", reserve)
    }
}

fn interrupted() -> Result<(), SimError> {
    super::interrupt::received().map_or(Ok(()), |signal| Err(SimError::Interrupted { signal }))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The value of a `/proc/meminfo` line, in bytes.
fn meminfo(key: &str) -> u64 {
    read("/proc/meminfo").lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()).map_or(0, |kb| kb.saturating_mul(1024))
}

/// The selected value of a sysfs choice like `always [madvise] never`.
fn selected(path: &str) -> String {
    let text = read(path);
    text.split_whitespace().find_map(|w| w.strip_prefix('[')?.strip_suffix(']')).unwrap_or("unknown").to_string()
}

pub fn machine() -> Machine {
    let cpu = read("/proc/cpuinfo").lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string())).unwrap_or_else(|| "unknown".into());
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpu,
        memory_bytes: meminfo("MemTotal"),
        thp: selected("/sys/kernel/mm/transparent_hugepage/enabled"),
        shmem_thp: selected("/sys/kernel/mm/transparent_hugepage/shmem_enabled"),
    }
}

fn gib_s(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64().max(1e-9) / f64::from(1u32 << 30)
}

fn median(mut times: Vec<Duration>) -> Duration {
    assert!(!times.is_empty(), "at least one run");
    times.sort();
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2
    }
}

/// `repeat` memsets over the region, populated first (the bandwidth of this memory).
fn memsets(kind: Kind, place: &Place, len: usize, repeat: u32) -> Result<Vec<Duration>, SimError> {
    let real = |message: String| SimError::Real { message };
    let map = place.map(kind, len, false).map_err(|e| real(format!("{}: map the bandwidth region: {e}", kind.name())))?;
    preallocate(&map, &[(0, len)], kind.block_size().0 as usize, Strategy::Qemu).map_err(|e| real(format!("{}: populate the bandwidth region: {e}", kind.name())))?;
    let mut times = Vec::new();
    for _ in 0..repeat {
        interrupted()?;
        let t = Instant::now();
        // SAFETY: the whole mapping is ours, populated, and nothing else refers to it.
        unsafe { std::ptr::write_bytes(map.at(0, len), 0x11, len) };
        times.push(t.elapsed());
    }
    Ok(times)
}

/// Huge pages for one kind: the free pool's, or an increment through the ledger, and the
/// region they cover; `Err` is why the kind is skipped. When the kernel gives fewer pages than
/// asked and the size is the default, the region shrinks to what it gave (at least two pages),
/// and the note says so.
fn huge_pages(kind: Kind, region: Bytes, plan: &Plan, guardian: &mut Option<Guardian>) -> Result<(Option<HugePool>, PoolUse, Bytes, Option<String>), String> {
    let pool = kind.pool().expect("hugetlb kinds have a pool");
    let page = kind.page_size();
    let need = region.0 / page.0;
    let free = pool.available();
    if free >= need {
        return Ok((None, PoolUse { pool: pool.0.clone(), pages_needed: need, grown_by: 0 }, region, None));
    }
    let short = format!("{free} free {page} huge pages, {need} needed for a {region} region");
    if !plan.grow_pool {
        return Err(format!("{short}: --grow-pool (as root) grows the pool for the run and gives the pages back"));
    }
    if !is_root() {
        return Err(format!("{short}, and --grow-pool needs root (the pool is the host's)"));
    }
    if guardian.is_none() {
        *guardian = Some(Guardian::spawn(&plan.exe).map_err(|e| format!("cannot start the guardian {}: {e}", plan.exe.display()))?);
    }
    let (held, new) = HugePool::grow_some(pool.clone(), need, |t| t).map_err(|e| format!("{short}, and growing the pool failed: {e}"))?;
    let used = PoolUse { pool: pool.0.clone(), pages_needed: need, grown_by: held.added() };
    let have = pool.available().min(need);
    if have >= need {
        return Ok((Some(held), used, region, None));
    }
    let gave = format!("the kernel gave only {new} new {page} huge pages of the {need} asked for ({})", pool.describe());
    if plan.size.is_some() || have < 2 {
        // `held` goes back to the pool as this returns.
        return Err(format!("{short}, and {gave}: free or compact memory (echo 1 > /proc/sys/vm/compact_memory) and retry{}", if plan.size.is_none() { "" } else { ", or ask for a smaller --size" }));
    }
    let smaller = Bytes(have * page.0);
    Ok((Some(held), used, smaller, Some(format!("{gave}: measured on a {smaller} region instead of {region}"))))
}

/// The place of a tmpfs region: a private mount with the region as its quota as root, else
/// the host's /dev/shm when it is a tmpfs with room; `Err` is why tmpfs is skipped.
fn tmpfs(region: Bytes) -> Result<(Place, String, bool), String> {
    if is_root() {
        let dirs = private_mounts(&[MountSpec { fstype: "tmpfs".into(), quota: Some(region.0), huge_page: None, used_up: false }]).map_err(|e| format!("cannot make a private tmpfs mount: {e}"))?;
        let dir = dirs.into_iter().next().expect("one mount asked, one made");
        return Ok((Place::Dir(dir), format!("files without a name (O_TMPFILE) on a private tmpfs mount (size={region}, own mount namespace)"), true));
    }
    let shm = Path::new("/dev/shm");
    let fs = rustix::fs::statfs(shm).map_err(|e| format!("not root (no private mount), and /dev/shm: {e}"))?;
    // TMPFS_MAGIC, include/uapi/linux/magic.h
    if fs.f_type as u64 != 0x0102_1994 {
        return Err("not root (no private mount), and /dev/shm is not a tmpfs".into());
    }
    let room = (fs.f_bavail as u64).saturating_mul(fs.f_bsize as u64);
    if room < region.0 {
        return Err(format!("not root (no private mount), and /dev/shm has {} free, less than the {region} region", Bytes(room)));
    }
    Ok((Place::Dir(shm.into()), "files without a name (O_TMPFILE) on the host's /dev/shm tmpfs (not root: no private mount)".into(), false))
}

/// How one kind is mapped, once its pages or its mount are there.
struct Setup {
    kind: Kind,
    region: Bytes,
    place: Place,
    backing: String,
    /// Whether a `touch` cannot find the memory gone (a SIGBUS).
    touch_certain: bool,
    pool: Option<PoolUse>,
    note: Option<String>,
}

/// The huge pages, mount or nothing a kind needs; `Err` is why it is skipped. The pool
/// increment (if any) is returned to be held until the kind is measured.
fn set_up(kind: Kind, plan: &Plan, guardian: &mut Option<Guardian>) -> Result<(Setup, Option<HugePool>), String> {
    if let Some(why) = kind.missing() {
        return Err(why);
    }
    let region = kind.region(plan.size)?;
    // 4 KiB memory comes from RAM: leave a quarter of what is available to the others.
    let available = meminfo("MemAvailable");
    if !kind.is_hugetlb() && region.0 > available / 4 * 3 {
        return Err(format!("a {region} region is more than 3/4 of the {} of memory available", Bytes(available)));
    }
    let plain = |place, backing: &str| Setup { kind, region, place, backing: backing.into(), touch_certain: true, pool: None, note: None };
    Ok(match kind {
        Kind::Hugetlb2m | Kind::Hugetlb1g => {
            let (held, used, covered, note) = huge_pages(kind, region, plan, guardian)?;
            let flag = if kind == Kind::Hugetlb1g { "MFD_HUGE_1GB" } else { "MFD_HUGE_2MB" };
            let backing = format!("memfd, MFD_HUGETLB | {flag} (as memory-backend-memfd hugetlb=on)");
            // `touch` maps without MAP_NORESERVE: the kernel reserves every page at mmap.
            (Setup { region: covered, pool: Some(used), note, ..plain(Place::Memfd { hugetlb: true }, &backing) }, held)
        }
        Kind::Tmpfs => {
            let (place, backing, certain) = tmpfs(region)?;
            (Setup { touch_certain: certain, ..plain(place, &backing) }, None)
        }
        Kind::Memfd => (plain(Place::Memfd { hugetlb: false }, "memfd (as memory-backend-memfd)"), None),
        Kind::Anon => (plain(Place::Anon, "private anonymous (as memory-backend-ram)"), None),
    })
}

/// Why a strategy does not apply to a kind, if it does not.
fn not_applicable(s: Strategy, setup: &Setup) -> Option<String> {
    match s {
        Strategy::Fallocate if matches!(setup.place, Place::Anon) => Some("anonymous memory has no fd to fallocate".into()),
        Strategy::Touch if !setup.touch_certain => Some("the memory is not certainly there (a shared tmpfs can fill up), and a touch that finds it gone is a SIGBUS".into()),
        _ => None,
    }
}

/// Every layout and applicable strategy of one kind, and its bandwidth.
fn measure_kind(setup: Setup, plan: &Plan) -> Result<KindReport, SimError> {
    let Setup { kind, region, ref place, .. } = setup;
    let real = |message: String| SimError::Real { message };
    let len = region.0 as usize;
    let block = kind.block_size();
    let strategies: Vec<Strategy> = Strategy::ALL.into_iter().filter(|s| not_applicable(*s, &setup).is_none()).collect();
    // The bandwidth before and after the strategies, so that a slower spell of a shared host
    // weighs on both sides of the fraction.
    let mut bw = memsets(kind, place, len, plan.repeat)?;
    let mut measured = Vec::new();
    for &layout in &plan.layouts {
        let runs = layout.runs(region.0 / block.0, plan.plugged_percent, block.0);
        let plugged: u64 = runs.iter().map(|r| r.1 as u64).sum();
        // Round by round, every strategy once per round: a burst of load hits all alike.
        let mut times = vec![Vec::new(); strategies.len()];
        for _ in 0..plan.repeat {
            for (i, &s) in strategies.iter().enumerate() {
                interrupted()?;
                let reserve = s == Strategy::Touch && kind.is_hugetlb();
                let map = place.map(kind, len, reserve).map_err(|e| real(format!("cannot map the region for {}: {e}", s.name())))?;
                let t = Instant::now();
                preallocate(&map, &runs, block.0 as usize, s).map_err(|e| real(format!("{} failed: {e} (did another process take the memory?)", s.name())))?;
                times[i].push(t.elapsed());
            }
        }
        let rates: Vec<(Strategy, f64)> = strategies.iter().copied().zip(times).map(|(s, t)| (s, gib_s(plugged, median(t)))).collect();
        measured.push((layout, plugged, runs.len(), rates));
    }
    bw.extend(memsets(kind, place, len, plan.repeat)?);
    let bandwidth = gib_s(region.0, median(bw));
    let cases: Vec<_> = measured.iter().filter_map(|(layout, plugged, runs, m)| case(*layout, *plugged, *runs, m, bandwidth)).collect();
    let recommendation = recommend(kind, &cases).ok_or_else(|| real("no strategy measured".into()))?;
    Ok(KindReport {
        memory: kind,
        title: kind.title().into(),
        backing: setup.backing,
        page_size: kind.page_size().0,
        block_size: block.0,
        region_bytes: region.0,
        pool: setup.pool,
        note: setup.note,
        bandwidth_gib_s: bandwidth,
        cases,
        recommendation,
    })
}

/// Measures every kind of the plan; `progress` hears one line per kind. A kind that cannot be
/// set up or measured is skipped with the reason; only a signal ends the run early.
pub fn measure(plan: &Plan, mut progress: impl FnMut(&str)) -> Result<Report, SimError> {
    let mut skipped = Vec::new();
    let mut kinds = Vec::new();
    let mut guardian = None;
    // tmpfs last: its private mount covers the temp dir for the rest of this process.
    let mut order = plan.kinds.clone();
    order.sort_by_key(|k| *k == Kind::Tmpfs);
    for kind in order {
        interrupted()?;
        let skip = |reason: String| Skip { memory: kind, strategy: None, reason };
        // The pool increment (if any) is held until this kind is measured.
        let (setup, _pool) = match set_up(kind, plan, &mut guardian) {
            Ok(s) => s,
            Err(why) => {
                skipped.push(skip(why));
                continue;
            }
        };
        progress(&format!("measuring {} on a {} region ({})", kind.title(), setup.region, setup.backing));
        skipped.extend(Strategy::ALL.into_iter().filter_map(|s| Some(Skip { memory: kind, strategy: Some(s), reason: not_applicable(s, &setup)? })));
        match measure_kind(setup, plan) {
            Ok(k) => kinds.push(k),
            Err(e @ SimError::Interrupted { .. }) => return Err(e),
            Err(e) => skipped.push(skip(format!("measuring failed: {e}"))),
        }
    }
    drop(guardian);
    kinds.sort_by_key(|k| Kind::ALL.iter().position(|a| *a == k.memory));
    Ok(Report {
        schema: "vmemsim/1",
        command: "prealloc",
        machine: machine(),
        plugged_percent: plan.plugged_percent,
        repeat: plan.repeat,
        statistic: "median",
        exit_code: u8::from(kinds.is_empty()),
        kinds,
        skipped,
    })
}
