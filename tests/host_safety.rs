//! Real runs leave the host as they found it: `vmemsim run --backend real` interrupted by
//! SIGKILL, SIGTERM or SIGINT (to its process group, as a terminal's Ctrl-C) at seeded delays,
//! and pairs of runs at once, leave no mount, no folder, no process, no ledger entry and no
//! change of the huge page pool. `VMEMSIM_INTERRUPTED_RUNS=100 VMEMSIM_CONCURRENT_PAIRS=20`
//! runs the full version; the default is a small one.

use std::collections::BTreeSet;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use vmemsim_sim::real::ledger::state_dir;
use vmemsim_sim::real::mounts::is_root;
use vmemsim_sim::real::pool::PoolDir;

const EXE: &str = env!("CARGO_BIN_EXE_vmemsim");

/// The tests compare the host before and after: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The lock of [`SERIAL`] when root; `None` (skip, with the reason printed) when not, which
/// `CI=true` refuses.
fn root_or_skip() -> Option<std::sync::MutexGuard<'static, ()>> {
    if !is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true runs as root, but this process is not root");
        eprintln!("skipping: not root (real runs with mounts and huge pages need root)");
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Scenarios with tmpfs, hugetlbfs and memfd hugetlb destinations, short and ample, quick and
/// slow (the last populates 2 GiB).
const SCENARIOS: [&str; 6] = [
    "scenarios/seed/two-devices-short-hugetlb.toml",
    "scenarios/real/memfd-hugetlb-postcopy.toml",
    "scenarios/real/parallel-prealloc-enough.toml",
    "scenarios/real-qemu/new-prealloc-enough.toml",
    "scenarios/real/hugetlbfs-postcopy-short.toml",
    "scenarios/real/big-sparse-region.toml",
];

/// What a run could leave behind.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    /// All pages of the 2 MiB pool and its surplus pages (a page left free and surplus is a
    /// leak that the persistent size does not show).
    pool: (u64, u64),
    mounts: BTreeSet<String>,
    temp: BTreeSet<String>,
    ledger: BTreeSet<String>,
    processes: BTreeSet<String>,
}

fn host_state() -> HostState {
    let dir = PoolDir::for_page_size(2 << 20);
    let pool = (dir.total().unwrap(), dir.surplus());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter_map(|l| l.split(' ').nth(4)).map(str::to_string).collect();
    let names = |dir: PathBuf| -> BTreeSet<String> { std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default() };
    // The folders real runs of older versions made (their mount points and regular files).
    let ours = |n: &String| ["vmemsim-tmpfs-", "vmemsim-hugetlbfs-", "vmemsim-files-"].iter().any(|p| n.starts_with(p));
    let temp = names(std::env::temp_dir()).into_iter().filter(ours).collect();
    let ledger = names(state_dir().join("pool"));
    let mut processes = BTreeSet::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.first() == Some(&EXE.as_bytes()) && args.iter().any(|a| *a == b"__real-destination" || *a == b"__guard") {
            processes.insert(format!("{} {}", e.file_name().to_string_lossy(), String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    HostState { pool, mounts, temp, ledger, processes }
}

/// Waits until the host is back where it was (a guardian repairs a SIGKILL within moments).
fn settles_to(before: &HostState, what: &str) {
    let start = Instant::now();
    loop {
        let now = host_state();
        if now == *before {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{what}: the host did not return to its state:\nbefore {before:?}\nnow    {now:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn real_run(file: &str) -> Command {
    let mut c = Command::new(EXE);
    c.args(["run", "--backend", "real", file]).current_dir(env!("CARGO_MANIFEST_DIR"));
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0);
    c
}

/// Where in each run the signal comes: a fraction of the run's own uninterrupted time, from 5 %
/// to 95 %, drawn by a small xorshift (the same fractions on every machine: the delays follow
/// the machine's speed, so most runs are interrupted on a fast host as on a slow one).
fn delays(n: usize, full: &[Duration]) -> Vec<Duration> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let percent = 5 + (x % 91) as u32;
            full[i % full.len()] * percent / 100
        })
        .collect()
}

/// One real run of `file` with `signal` after `delay`: the way it ended when the signal came
/// first, `None` when it finished (successfully) before.
fn interrupt_one(file: &str, signal: Signal, delay: Duration, what: &str) -> Option<std::process::ExitStatus> {
    let mut child = real_run(file).spawn().unwrap();
    let pid = Pid::from_raw(child.id() as i32).unwrap();
    let start = Instant::now();
    while start.elapsed() < delay {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "{what}: finished before the signal but failed: {s}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if signal == Signal::INT {
        kill_process_group(pid, signal).unwrap();
    } else {
        kill_process(pid, signal).unwrap();
    }
    let s = child.wait().unwrap();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
    // SIGKILL ends it by the signal; SIGTERM and SIGINT by a clean exit 128 + signal (or the
    // signal itself, when it came before the handlers were installed; or success, when it
    // came as the run was ending).
    let n = signal.as_raw();
    let clean = s.signal() == Some(n) || s.code() == Some(128 + n) || s.success();
    assert!(clean, "{what}: ended with {s}: {err}");
    Some(s)
}

fn count(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn interrupted_and_concurrent_real_runs_leave_the_host_as_found() {
    let Some(_serial) = root_or_skip() else { return };
    let before = host_state();
    let runs = count("VMEMSIM_INTERRUPTED_RUNS", 15);
    let (mut interrupted, mut finished) = (0usize, 0usize);
    // Each scenario's uninterrupted time here, first.
    let full: Vec<Duration> = SCENARIOS
        .iter()
        .map(|file| {
            let start = Instant::now();
            let s = real_run(file).status().unwrap();
            assert!(s.success(), "{file}: {s}");
            start.elapsed()
        })
        .collect();
    settles_to(&before, "the uninterrupted runs");
    for (i, first_delay) in delays(runs, &full).into_iter().enumerate() {
        let file = SCENARIOS[i % SCENARIOS.len()];
        let signal = [Signal::KILL, Signal::TERM, Signal::INT][i % 3];
        // A run that finishes before its signal (a run's time varies, more so under load) is
        // checked and run again with half the delay, until one is interrupted.
        let mut delay = first_delay;
        loop {
            let what = format!("run {i}: {file} with signal {signal:?} after {delay:?}");
            match interrupt_one(file, signal, delay, &what) {
                Some(status) => {
                    interrupted += 1;
                    settles_to(&before, &format!("{what} (ended {status})"));
                    break;
                }
                None => {
                    finished += 1;
                    settles_to(&before, &format!("{what} (finished first)"));
                    assert!(delay > Duration::from_micros(100), "{what}: finished before every delay down to nothing");
                    delay /= 2;
                }
            }
        }
    }
    eprintln!("{runs} real runs interrupted; {finished} more finished before their signal and ran again sooner");
    assert_eq!(interrupted, runs);

    let pairs = count("VMEMSIM_CONCURRENT_PAIRS", 2);
    for p in 0..pairs {
        let (a, b) = (SCENARIOS[p % 2], SCENARIOS[(p + 1) % 2]);
        let mut ca = real_run(a).spawn().unwrap();
        let mut cb = real_run(b).spawn().unwrap();
        for (c, f) in [(&mut ca, a), (&mut cb, b)] {
            let s = c.wait().unwrap();
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err);
            assert!(s.success(), "pair {p}: {f} beside another run: {s}: {err}");
        }
        settles_to(&before, &format!("pair {p}"));
    }
}

/// Another program holds every free huge page (and some of the pool): a real run still gets
/// its own, because it grows the pool by what it needs instead of counting on free pages.
#[test]
fn a_real_run_gets_its_pages_when_another_process_holds_the_pool() {
    let Some(_serial) = root_or_skip() else { return };
    let pool = PoolDir::for_page_size(2 << 20);
    let before = pool.persistent().unwrap();
    let held = hold_free_pages();
    assert_eq!(pool.available(), 0, "the holder took every free page");
    let s = real_run(SCENARIOS[0]).stdout(Stdio::piped()).output().unwrap();
    let out = String::from_utf8_lossy(&s.stdout);
    assert!(s.status.success() && out.contains("agreement"), "{}\n{}", out, String::from_utf8_lossy(&s.stderr));
    drop(held);
    assert_eq!(pool.persistent().unwrap(), before);
}

/// A stand-in for another program: grows the pool by 16 pages and populates every free page of
/// it in a memfd, so HugePages_Free reads 0.
fn hold_free_pages() -> (vmemsim_sim::real::pool::HugePool, std::fs::File, usize) {
    use std::os::fd::AsFd;
    let grown = vmemsim_sim::real::pool::HugePool::ensure_free(16).unwrap();
    let pages = PoolDir::for_page_size(2 << 20).available() as usize;
    let fd = rustix::fs::memfd_create("holder", rustix::fs::MemfdFlags::HUGETLB | rustix::fs::MemfdFlags::HUGE_2MB).unwrap();
    let len = pages * (2 << 20);
    rustix::fs::fallocate(fd.as_fd(), rustix::fs::FallocateFlags::empty(), 0, len as u64).unwrap();
    (grown, std::fs::File::from(fd), len)
}

/// `vmemsim cleanup` repairs what a killed run of an older version (or a killed conformance
/// test) left: a mount and a folder of a process that is gone, and a ledger entry of one; and
/// says so, one line each. A second cleanup finds nothing.
#[test]
fn cleanup_repairs_leftovers_of_processes_that_are_gone() {
    let Some(_serial) = root_or_skip() else { return };
    let pool = PoolDir::for_page_size(2 << 20);
    let before = pool.persistent().unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let tmp = std::env::temp_dir();
    let mount = tmp.join(format!("vmemsim-tmpfs-{dead}-0"));
    let folder = tmp.join(format!("vmemsim-files-{dead}-1"));
    std::fs::create_dir_all(&mount).unwrap();
    std::fs::create_dir_all(folder.join("inside")).unwrap();
    rustix::mount::mount("tmpfs", &mount, "tmpfs", rustix::mount::MountFlags::empty(), Some(c"size=1M")).unwrap();
    {
        let lock = vmemsim_sim::real::ledger::HostLock::take().unwrap();
        std::fs::write("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", (before + 2).to_string()).unwrap();
        let mut e = vmemsim_sim::real::ledger::Entry::new("hugepages-2048kB", 2, None);
        e.owner.pid = dead;
        e.write(&lock).unwrap();
    }
    let out = Command::new(EXE).arg("cleanup").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("unmounted {} (left by process {dead})", mount.display())), "{text}");
    assert!(text.contains(&format!("removed {} (left by process {dead})", mount.display())), "{text}");
    assert!(text.contains(&format!("removed {} (left by process {dead})", folder.display())), "{text}");
    assert!(text.contains(&format!("hugepages-2048kB: took back 2 huge pages that process {dead} added")), "{text}");
    assert!(!mount.exists() && !folder.exists());
    assert_eq!(pool.persistent().unwrap(), before);
    let again = Command::new(EXE).arg("cleanup").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "nothing to repair: no leftover of a vmemsim run on this host");
}
