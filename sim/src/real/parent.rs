//! The parent side: decides whether a scenario fits real memory, prepares private mounts and
//! huge pages, runs the destination in a child process, and turns what it saw (its report, or
//! its death by SIGBUS) into an outcome to compare with the model's.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmemsim_model::migration::destination::Destination;
use vmemsim_model::migration::drive::feed;
use vmemsim_model::migration::outcome::{FaultSite, Outcome, Stage};
use vmemsim_model::migration::source;
use vmemsim_model::{BackendKind, Bytes, LimitId, OutcomeClass, Vm};

use super::guardian::Guardian;
use super::isolation::{die_with_parent, MountSpec};
use super::mounts::is_root;
use super::pool::{HugePool, PoolDir};
use crate::build::Built;
use crate::error::SimError;

/// The most a real run may populate (the machine has 24 GiB).
pub const REAL_BUDGET: u64 = 6 << 30;

/// What a scenario needs from the host to run on real memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needs {
    /// Private mounts for the destination's memory, each for a limit (`None`: the older
    /// form's one backend), with its quota.
    pub mounts: Vec<(Option<LimitId>, MountSpec)>,
    /// A directory on a disk file system.
    pub files: bool,
    /// Huge pages needed behind the mounts or the memfds: (page size, pages), one entry per
    /// page size (2 MiB, 1 GiB).
    pub huge_pages: Vec<(Bytes, u64)>,
}

/// What the run will use, for people: "a private tmpfs mount with a 4 GiB quota, ...".
impl std::fmt::Display for Needs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (_, m) in &self.mounts {
            parts.push(match m.quota {
                Some(q) if m.used_up => format!("a private {} mount whose {} quota a filler file has used up (capacity 0)", m.fstype, Bytes(q)),
                Some(q) => format!("a private {} mount with a {} quota", m.fstype, Bytes(q)),
                None => format!("a private {} mount", m.fstype),
            });
        }
        if self.files {
            parts.push("regular files without a name in the temp dir".to_string());
        }
        for (page, n) in self.huge_pages.iter().filter(|(_, n)| *n > 0) {
            parts.push(format!("{n} huge page{} of {page} added to the pool for the run", if *n == 1 { "" } else { "s" }));
        }
        if parts.is_empty() {
            parts.push("private memory only".to_string());
        }
        f.write_str(&parts.join(", "))
    }
}

impl Needs {
    pub fn needs_root(&self) -> bool {
        !self.mounts.is_empty() || self.huge_pages.iter().any(|(_, n)| *n > 0)
    }

    /// Adds `pages` huge pages of `page` bytes to what the run needs.
    pub fn add_huge_pages(&mut self, page: Bytes, pages: u64) {
        match self.huge_pages.iter_mut().find(|(p, _)| *p == page) {
            Some(e) => e.1 = e.1.saturating_add(pages),
            None if pages > 0 => self.huge_pages.push((page, pages)),
            None => {}
        }
    }
}

/// Why a run that would populate `populate` bytes does not run: the budget, and this host's
/// memory (`MemTotal` of /proc/meminfo) it keeps the run within.
pub fn over_budget(populate: u64, budget: u64) -> String {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
    });
    let host = total.map_or(String::new(), |t| format!(" (this host has {} of memory in all)", Bytes(t - t % (1 << 20))));
    format!("it would populate {} of real memory, more than the {} a real run may take{host}", Bytes(populate), Bytes(budget))
}

/// Whether huge pages of `page` bytes run for real here: 2 MiB and 1 GiB, when the kernel has
/// the pool (`/sys/kernel/mm/hugepages/hugepages-<kB>kB`).
pub fn huge_page_runs(page: Bytes) -> Result<(), String> {
    if page != Bytes::mib(2) && page != Bytes::gib(1) {
        return Err(format!("only 2 MiB and 1 GiB huge pages run for real, not {page}"));
    }
    let dir = std::path::Path::new("/sys/kernel/mm/hugepages").join(super::pool::PoolDir::for_page_size(page.0).0);
    if !dir.exists() {
        return Err(format!("this kernel has no {page} huge pages (no {})", dir.display()));
    }
    Ok(())
}

impl Needs {
    fn none() -> Needs {
        Needs { mounts: Vec::new(), files: false, huge_pages: Vec::new() }
    }
}

/// Whether a built scenario runs on real memory here, and what it needs; `Err` says why not.
pub fn fits(b: &Built) -> Result<Needs, String> {
    fits_within(b, REAL_BUDGET)
}

/// The most the guest's PLUG requests can add to device `dev` (every one ACKed): what a real
/// run must allow beyond what the source plugged.
pub fn plug_growth(b: &Built, dev: usize) -> u64 {
    let block = b.destination.devices.get(dev).and_then(|d| d.block_size).map_or_else(|| b.source.devices[dev].block_size().0, |s| s.0);
    b.actions
        .iter()
        .filter(|(_, d, _)| *d == dev)
        .filter_map(|(_, _, r)| match r {
            vmemsim_model::Request::Plug { nb_blocks, .. } => Some(u64::from(*nb_blocks).saturating_mul(block)),
            _ => None,
        })
        .fold(0, u64::saturating_add)
}

/// What the competitor takes over the run, at most.
pub fn drained(b: &Built) -> u64 {
    b.drains.iter().map(|(_, bytes)| bytes.0).fold(0, u64::saturating_add)
}

/// The key of a limit's private mount in a real run: the older form's one backend has its
/// mount under no limit id, the per-memdev form under the limit's.
pub fn mount_key(b: &Built, limit: LimitId) -> Option<LimitId> {
    if b.destination.memory.single_backend().is_some() {
        None
    } else {
        Some(limit)
    }
}

/// The page size of the mount a real run makes for a limit (`None`: the older form's one
/// backend): what a competitor allocates at a time there.
pub fn limit_page(b: &Built, key: Option<LimitId>) -> Bytes {
    let memory = &b.destination.memory;
    match key {
        None => memory.single_backend().filter(|be| be.kind.is_hugetlb()).map_or(Bytes(4096), |be| be.page_size),
        Some(l) => match memory.limits.get(l.0).map(|l| &l.kind) {
            Some(vmemsim_model::LimitKind::Mount { fs: vmemsim_model::MountFs::Hugetlbfs(p), .. }) => *p,
            _ => Bytes(4096),
        },
    }
}

/// Like [`fits`], with a smaller budget of real memory to populate.
pub fn fits_within(b: &Built, budget: u64) -> Result<Needs, String> {
    let needs = fits_memory(b, budget)?;
    // The competitor takes from the first limit of the first device's memdev (as the engine's
    // `drain`): on real memory, a mount of the run's own.
    if !b.drains.is_empty() {
        if let Some(t) = crate::engine::competitor_target(b) {
            let limit = &b.destination.memory.limits[t.0];
            let key = mount_key(b, t);
            let mounted = needs.mounts.iter().any(|(l, _)| *l == key);
            if !mounted && limit.capacity.limit().is_some() {
                return Err(format!(
                    "the competitor takes from {}, which a real run cannot hand it alone: the host's free huge pages and cgroups are shared with other processes; put the limit on a mount (a size= quota)",
                    crate::engine::limit_name(&limit.kind)
                ));
            }
        }
    }
    Ok(needs)
}

fn fits_memory(b: &Built, budget: u64) -> Result<Needs, String> {
    let Some(backend) = b.destination.memory.single_backend() else {
        return super::fits_memdevs::fits_memdevs(b, budget);
    };
    let cap = backend.capacity.limit().map(|c| c.0);
    if backend.kind.is_hugetlb() {
        huge_page_runs(backend.page_size)?;
    }
    let huge = backend.page_size.0;
    let plugged: u64 = b.source.devices.iter().map(|d| d.size().0).sum();
    let touched: u64 = b.plan.touches.iter().map(|t| t.len.0).sum();
    // The most the destination could populate: what is plugged and touched, or the whole
    // regions for a variant that preallocates them.
    let regions: u64 = b.source.devices.iter().map(|d| d.region_size().0).sum();
    let grown: u64 = (0..b.source.devices.len()).map(|d| plug_growth(b, d)).fold(0, u64::saturating_add);
    let worst = if b.destination.variant == vmemsim_model::Variant::PreallocWholeRegion { regions } else { plugged.saturating_add(touched).saturating_add(grown).min(regions) };
    let populate = cap.unwrap_or(u64::MAX).min(worst);
    if populate > budget {
        return Err(super::parent::over_budget(populate, budget));
    }
    // A pool of 0 without a mount is real only when the host's pool has no free page already.
    let free = if backend.kind == BackendKind::MemfdHugetlb && cap == Some(0) { super::pool::PoolDir::for_page_size(huge).available() } else { 0 };
    let empty_pool = backend.kind == BackendKind::MemfdHugetlb && cap == Some(0) && free == 0;
    if cap == Some(0) && backend.kind == BackendKind::MemfdHugetlb && !empty_pool {
        return Err(zero_pool_refusal(free, backend.page_size));
    }
    // A capacity of 0 on a mount: one page of quota, used up by a filler before the run.
    let used_up = cap == Some(0);
    if let Some(c) = cap.filter(|c| c % backend.page_size.0 != 0) {
        return Err(format!("a quota of {} is not whole {} pages", Bytes(c), backend.page_size));
    }
    // Unlimited mounts still get the budget as their quota: nothing can run away.
    let quota = Some(if used_up { backend.page_size.0 } else { cap.unwrap_or(budget) });
    let mut needs = Needs::none();
    let mount = |fs: &str, quota: Option<u64>, huge_page: Option<u64>| (None, MountSpec { fstype: fs.to_string(), quota, huge_page, used_up });
    match backend.kind {
        BackendKind::PrivateAnonymous | BackendKind::SharedAnonymous if cap.is_some() => {
            return Err(format!(
                "{} memory has no capacity limit a test can set: a memory cgroup's memory.max OOM-kills the process instead of failing MADV_POPULATE_WRITE with EFAULT as the model's capacity does; give the destination a tmpfs-file or hugetlbfs backend to test a limit",
                backend.kind.name()
            ));
        }
        BackendKind::PrivateAnonymous | BackendKind::SharedAnonymous => {}
        BackendKind::RegularFile if cap.is_some() => return Err("a disk file system has no quota a test can set".into()),
        BackendKind::RegularFile => needs.files = true,
        BackendKind::Memfd if cap.is_none() => {}
        BackendKind::Memfd | BackendKind::TmpfsFile => needs.mounts.push(mount("tmpfs", quota, None)),
        BackendKind::MemfdHugetlb if empty_pool => {}
        BackendKind::MemfdHugetlb if cap.is_none() => needs.add_huge_pages(backend.page_size, plugged.saturating_add(touched).div_ceil(huge)),
        BackendKind::MemfdHugetlb | BackendKind::Hugetlbfs => {
            needs.mounts.push(mount("hugetlbfs", quota.and_then(|q| q.div_ceil(huge).checked_mul(huge)), Some(huge)));
            // The filler of a used-up mount takes its one page from the pool.
            // What the destination and the competitor can take together, within the quota.
            let pages = if used_up { 1 } else { cap.unwrap_or(u64::MAX).min(worst.saturating_add(drained(b))).div_ceil(huge) };
            needs.add_huge_pages(backend.page_size, pages);
        }
    }
    if needs.needs_root() && !is_root() {
        return Err("it needs root for a private mount or huge pages".into());
    }
    Ok(needs)
}

/// Why a free-huge-page pool of 0 without a mount does not run: the host's free pages are
/// shared (hugetlb_acct_memory reserves from the whole pool), and a run takes none of them.
pub fn zero_pool_refusal(free: u64, page: Bytes) -> String {
    let s = if free == 1 { "" } else { "s" };
    format!("the host pool has {free} free {page} page{s} that other processes may use: a pool with no free page cannot be made without taking them; put the limit on a hugetlbfs mount (a size= quota) instead")
}

/// The simulated outcome a real run is compared with: the engine's, events and all (the
/// child replays the same run's trace on real memory).
pub fn simulated_outcome(b: &Built) -> Outcome {
    crate::engine::simulate(b).outcome
}

/// The model's outcome for the stream alone (no events), as a real QEMU restores a file.
pub fn model_outcome(b: &Built) -> Outcome {
    match Vm::realize(&b.destination) {
        Err(e) => Outcome::Failed { stage: Stage::Startup, lines: vec![e.to_string()] },
        Ok((vm, _)) => feed(Destination::new(vm), &source::stream(&b.source, &b.plan), &b.plan, |_, _| {}),
    }
}

/// A run on real memory.
#[derive(Clone, Debug)]
pub struct RealRun {
    pub outcome: Outcome,
    pub elapsed: Duration,
    /// Where real memory did not do what the simulated run did (a request answered otherwise,
    /// a competitor that took another amount), in the order of the run.
    pub divergences: Vec<String>,
    /// What each competitor process took, in bytes, with its process id.
    pub competitors: Vec<(Bytes, u32)>,
}

/// Runs the scenario's destination on real memory in a child (`exe __real-destination`).
///
/// What it changes on the host, and how it gives it back: the child mounts its tmpfs or
/// hugetlbfs in a mount namespace of its own (gone with the child), makes regular files
/// without a name (`O_TMPFILE`), and dies with the thread that started it; the huge page pool
/// grows by what the run needs, through the host-wide ledger, and shrinks by as much when the
/// run ends, on every path: a signal received (see `interrupt.rs`) kills the child and unwinds
/// here, and a SIGKILL of this process leaves the repair to the guardian process.
pub fn run_real(exe: &Path, text: &str, b: &Built, timeout: Duration) -> Result<RealRun, SimError> {
    let err = |message: String| SimError::Real { message };
    let needs = fits(b).map_err(|why| err(format!("does not fit real memory: {why}")))?;
    let (_pools, _guardian) = if needs.huge_pages.is_empty() {
        (Vec::new(), None)
    } else {
        let guardian = Guardian::spawn(exe).map_err(|e| err(format!("cannot start the guardian {}: {e}", exe.display())))?;
        let mut pools = Vec::new();
        for &(page, pages) in &needs.huge_pages {
            // A signal cuts the kernel's growth short: say so rather than that it gave too few.
            let pool = HugePool::grow(PoolDir::for_page_size(page.0), pages, |t| t).map_err(|e| interrupted().err().unwrap_or_else(|| err(format!("huge pages of {page}: {e}"))))?;
            pools.push(pool);
        }
        (pools, Some(guardian))
    };
    interrupted()?;
    let start = Instant::now();
    let mut cmd = Command::new(exe);
    cmd.arg("__real-destination");
    for (limit, m) in &needs.mounts {
        cmd.arg("--mount").arg(super::child::Setup::mount_arg(*limit, m));
    }
    if needs.files {
        cmd.arg("--files");
    }
    die_with_parent(&mut cmd);
    let spawned = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| err(format!("cannot start {}: {e}", exe.display())))?;
    // From here on the child is killed and reaped on every way out, a panic included.
    let mut child = KillOnDrop(spawned);
    let c = &mut child.0;
    c.stdin.take().expect("piped").write_all(text.as_bytes()).map_err(|e| err(format!("cannot send the scenario: {e}")))?;
    let stdout = c.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<String>>());
    let status = loop {
        if let Some(s) = child.0.try_wait().map_err(|e| err(format!("wait: {e}")))? {
            break s;
        }
        if start.elapsed() > timeout {
            return Err(err(format!("the destination did not finish within {timeout:?} and was killed")));
        }
        interrupted()?;
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = child.0.stderr.take();
    let lines = reader.join().map_err(|_| err("the reader thread panicked".into()))?;
    let elapsed = start.elapsed();
    // A signal that reached the child too (a terminal's Ctrl-C goes to the process group).
    interrupted()?;
    let outcome = interpret(&lines, status, b, stderr)?;
    let divergences = lines.iter().filter_map(|l| l.strip_prefix("diverged ")).map(str::to_string).collect();
    let competitors = lines
        .iter()
        .filter_map(|l| l.strip_prefix("competitor "))
        .filter_map(|r| r.split_once(' '))
        .filter_map(|(took, pid)| Some((Bytes(u64::from_str_radix(took, 16).ok()?), pid.parse().ok()?)))
        .collect();
    Ok(RealRun { outcome, elapsed, divergences, competitors })
}

/// `Err` once SIGINT, SIGTERM or SIGHUP arrived (when the command line installed the handlers).
fn interrupted() -> Result<(), SimError> {
    match super::interrupt::received() {
        Some(signal) => Err(SimError::Interrupted { signal }),
        None => Ok(()),
    }
}

/// Kills and reaps the child it holds when dropped (a reaped child is left alone: std knows it
/// ended and sends no signal).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn interpret(lines: &[String], status: std::process::ExitStatus, b: &Built, stderr: Option<std::process::ChildStderr>) -> Result<Outcome, SimError> {
    let err = |message: String| SimError::Real { message };
    let mut blocks: Vec<(usize, usize, String)> = Vec::new();
    let (mut stage, mut class, mut out_lines, mut sigbus, mut ended) = (None, None, Vec::new(), None, false);
    let mut last_step = String::new();
    // Lines printed before the first step (realize warnings): all a death during the stream saw.
    let mut startup_lines = None;
    for l in lines {
        let (tag, rest) = l.split_once(' ').unwrap_or((l.as_str(), ""));
        match tag {
            "block" => {
                let mut f = rest.splitn(3, ' ');
                let base = usize::from_str_radix(f.next().unwrap_or(""), 16).map_err(|_| err(format!("bad line '{l}'")))?;
                let len = usize::from_str_radix(f.next().unwrap_or(""), 16).map_err(|_| err(format!("bad line '{l}'")))?;
                blocks.push((base, len, f.next().unwrap_or("").to_string()));
            }
            "step" => {
                startup_lines.get_or_insert_with(|| out_lines.clone());
                last_step = rest.to_string();
            }
            "outcome" => {
                class = OutcomeClass::parse(rest);
                out_lines.clear();
            }
            "stage" => stage = Some(rest.to_string()),
            "line" => out_lines.push(rest.to_string()),
            "sigbus" => sigbus = usize::from_str_radix(rest, 16).ok(),
            // The retry's destination: its blocks replace the first one's.
            "retry" => blocks.clear(),
            "diverged" | "competitor" => {}
            "end" => ended = true,
            "error" => return Err(err(format!("the destination refused the scenario: {rest}"))),
            _ => return Err(err(format!("unknown line from the destination: '{l}'"))),
        }
    }
    if status.signal() == Some(libc::SIGBUS) {
        let addr = sigbus.ok_or_else(|| err("killed by SIGBUS without reporting the address".into()))?;
        let (base, _, name) = blocks.iter().find(|(base, len, _)| addr >= *base && addr < base + len).ok_or_else(|| err(format!("SIGBUS at {addr:#x}, outside guest RAM")))?;
        let page = super::fits_memdevs::page_of(b, name);
        let offset = ((addr - base) as u64) / page * page;
        let site = FaultSite { block: name.clone(), offset: Bytes(offset) };
        // A SIGBUS ends the process at once: the lines it printed are those before the stage.
        let keep = if last_step == Stage::GuestRuntime.to_string() { out_lines } else { startup_lines.unwrap_or_default() };
        return Ok(if last_step == Stage::GuestRuntime.to_string() {
            Outcome::RuntimeCrash { site, why: "real SIGBUS".into(), lines: keep }
        } else {
            Outcome::Crashed { stage: parse_stage(&last_step), site, lines: keep }
        });
    }
    if !status.success() || !ended {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
        }
        return Err(err(format!("the destination ended with {status} at '{last_step}': {}", text.trim())));
    }
    let class = class.ok_or_else(|| err("the destination reported no outcome".into()))?;
    let stage = stage.map(|s| parse_stage(&s));
    Ok(match (class, stage) {
        (OutcomeClass::Completed, _) => Outcome::Completed { lines: out_lines },
        (OutcomeClass::Failed, Some(stage)) => Outcome::Failed { stage, lines: out_lines },
        (OutcomeClass::PostcopyFailed, Some(stage)) => Outcome::PostcopyFailed { stage, lines: out_lines },
        (c, s) => {
            let at = s.map_or_else(|| "no stage".to_string(), |s| format!("stage {s}"));
            return Err(err(format!("the destination reported {c} with {at} and without a SIGBUS")));
        }
    })
}

/// Stages print as text; the comparison is by text, so keep it in a variant that prints the same.
fn parse_stage(text: &str) -> Stage {
    const FIXED: [Stage; 9] = [
        Stage::Startup,
        Stage::Header,
        Stage::Advise,
        Stage::RamSetup,
        Stage::RamLoad,
        Stage::PostcopyDiscard,
        Stage::Listen,
        Stage::PostcopyPlacement,
        Stage::Run,
    ];
    if let Some(s) = FIXED.into_iter().find(|s| s.to_string() == text) {
        return s;
    }
    if let Some(id) = text.strip_prefix("early section '").and_then(|t| t.strip_suffix('\'')) {
        return Stage::EarlySection(id.to_string());
    }
    if let Some(id) = text.strip_prefix("device section '").and_then(|t| t.strip_suffix('\'')) {
        return Stage::LateSection(id.to_string());
    }
    if text == Stage::Eof.to_string() {
        return Stage::Eof;
    }
    Stage::GuestRuntime
}

/// The differences between the model's and the real outcome: class, stage, QEMU's lines and
/// where a SIGBUS hit.
pub fn compare(model: &Outcome, real: &Outcome) -> Vec<String> {
    let mut d = Vec::new();
    if model.class() != real.class() {
        d.push(format!("class: model {}, real {}", model.class(), real.class()));
    }
    if model.stage() != real.stage() {
        d.push(format!("stage: model {:?}, real {:?}", model.stage().map(|s| s.to_string()), real.stage().map(|s| s.to_string())));
    }
    // When hugetlb cannot allocate a page for UFFDIO_COPY, the kernel answers EEXIST if a page
    // table covers the address and ENOMEM if none does (mm/hugetlb.c): that depends on where
    // the mapping landed (ASLR), which no model can know. Both mean "no page".
    let no_page = |l: &String| l.replace("postcopy_place_page: File exists", "postcopy_place_page: Cannot allocate memory");
    let placement = matches!(model, Outcome::PostcopyFailed { .. });
    let same = if placement {
        model.lines().iter().map(no_page).eq(real.lines().iter().map(no_page))
    } else {
        model.lines() == real.lines()
    };
    if !same {
        d.push(format!("stderr: model {:?}, real {:?}", model.lines(), real.lines()));
    }
    let site = |o: &Outcome| match o {
        Outcome::Crashed { site, .. } | Outcome::RuntimeCrash { site, .. } => Some(site.clone()),
        _ => None,
    };
    if site(model) != site(real) {
        d.push(format!("fault: model {:?}, real {:?}", site(model), site(real)));
    }
    d
}
