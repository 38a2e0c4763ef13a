//! The destination process: realizes the destination on real memory and consumes the stream,
//! reporting each stage to the parent before it starts, so a death by SIGBUS can be placed.
//! It runs in a child process (the hidden `__real-destination` subcommand of `vmemsim`).

use std::io::{Read, Write};
use std::path::Path;

use vmemsim_model::backend::DiscardMethod;
use vmemsim_model::migration::destination::{Destination, PostcopyState};
use vmemsim_model::migration::item::Item;
use vmemsim_model::migration::outcome::{Outcome, Stage};
use vmemsim_model::{Bytes, Variant, Vm};

use super::isolation::{private_mounts, MountSpec};
use super::competitor::{spawn, Competitor};
use super::memory::{Places, RealMemory};
use crate::trace_replay::{replay, Host};
use crate::build::build;
use crate::load::parse;

/// One protocol line to the parent, flushed at once (the process may die right after).
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.replace('\n', " ").as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Reports the faulting address, then lets the default action kill the process: the parent
/// sees a real death by SIGBUS.
extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers of SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    let mut buf = [0u8; 32];
    let prefix = b"sigbus ";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut n = prefix.len();
    for shift in (0..16).rev() {
        buf[n] = b"0123456789abcdef"[(addr >> (shift * 4)) & 0xf];
        n += 1;
    }
    buf[n] = b'\n';
    // SAFETY: write(2) is async-signal-safe; the buffer is on this handler's stack.
    unsafe { libc::write(1, buf.as_ptr().cast(), n + 1) };
    // SA_RESETHAND restored the default action: returning re-runs the access and kills us.
}

fn install_sigbus_reporter() {
    // SAFETY: a zeroed sigaction is valid; the handler only calls async-signal-safe functions.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()), 0, "sigaction(SIGBUS)");
    }
}

fn report(outcome: &Outcome) {
    emit(&format!("outcome {}", outcome.class()));
    if let Some(stage) = outcome.stage() {
        emit(&format!("stage {stage}"));
    }
    for l in outcome.lines() {
        emit(&format!("line {l}"));
    }
    emit("end");
}

fn stage_of<H: vmemsim_model::HostMemory>(item: &Item, dest: &Destination<H>) -> Stage {
    match item {
        Item::Header { .. } | Item::OpenReturnPath | Item::Ping(_) | Item::SwitchoverStart => Stage::Header,
        Item::PostcopyAdvise => Stage::Advise,
        Item::RamSetup { .. } => Stage::RamSetup,
        Item::Early(e) => Stage::EarlySection(e.idstr.clone()),
        Item::Ram { .. } if dest.postcopy_state() >= PostcopyState::Listening => Stage::PostcopyPlacement,
        Item::Ram { .. } => Stage::RamLoad,
        Item::RamDiscard { .. } => Stage::PostcopyDiscard,
        Item::Listen => Stage::Listen,
        Item::Late(l) => Stage::LateSection(l.idstr.clone()),
        Item::Run => Stage::Run,
        Item::Eof => Stage::Eof,
    }
}

/// What the parent asks the child to set up for itself.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Mounts in the child's own mount namespace, each for a limit of the destination's memory
    /// (`None`: the older form's one backend).
    pub mounts: Vec<(Option<vmemsim_model::LimitId>, MountSpec)>,
    /// Regular files, made without a name in the temp dir.
    pub files: bool,
}

impl Setup {
    /// `--mount` as the parent writes it: `FS:QUOTA:PAGE:LIMIT[:used-up]`, `-` for none.
    pub fn mount_arg(limit: Option<vmemsim_model::LimitId>, m: &MountSpec) -> String {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let used = if m.used_up { ":used-up" } else { "" };
        format!("{}:{}:{}:{}{used}", m.fstype, opt(m.quota), opt(m.huge_page), opt(limit.map(|l| l.0 as u64)))
    }

    /// Reads `--mount FS:QUOTA:PAGE:LIMIT`.
    pub fn parse_mount(arg: &str) -> Result<(Option<vmemsim_model::LimitId>, MountSpec), String> {
        let f: Vec<&str> = arg.split(':').collect();
        let opt = |s: &str| -> Result<Option<u64>, String> { if s == "-" { Ok(None) } else { s.parse().map(Some).map_err(|_| format!("bad number '{s}' in --mount {arg}")) } };
        match f.as_slice() {
            [fs @ ("tmpfs" | "hugetlbfs"), q, p, l, rest @ ..] if rest.is_empty() || rest == ["used-up"] => {
                let m = MountSpec { fstype: fs.to_string(), quota: opt(q)?, huge_page: opt(p)?, used_up: !rest.is_empty() };
                Ok((opt(l)?.map(|l| vmemsim_model::LimitId(l as usize)), m))
            }
            _ => Err(format!("--mount {arg}: expected tmpfs|hugetlbfs:QUOTA:PAGE:LIMIT[:used-up]")),
        }
    }
}

fn places(setup: &Setup) -> std::io::Result<Places> {
    // Before the mounts cover the temp dir: regular files live in the real one, reached
    // through a descriptor that stays valid under the mount.
    let files = if setup.files {
        let dir = std::fs::File::open(std::env::temp_dir())?;
        let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir)));
        std::mem::forget(dir);
        Some(path)
    } else {
        None
    };
    let mounts = if setup.mounts.is_empty() {
        Vec::new()
    } else {
        let specs: Vec<MountSpec> = setup.mounts.iter().map(|(_, m)| m.clone()).collect();
        let dirs = private_mounts(&specs)?;
        setup.mounts.iter().map(|(l, _)| *l).zip(dirs).collect()
    };
    Ok(Places { mounts, files })
}

/// The child's main: the scenario arrives on stdin; returns the exit status.
pub fn destination_main(setup: Setup) -> i32 {
    // First, while this process has one thread: its own mount namespace.
    let places = match places(&setup) {
        Ok(p) => p,
        Err(e) => {
            emit(&format!("error cannot set up the destination's memory: {e}"));
            return 2;
        }
    };
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        emit(&format!("error cannot read the scenario: {e}"));
        return 2;
    }
    let built = match parse(Path::new("<stdin>"), &text).and_then(|l| build(&l)) {
        Ok(b) => b,
        Err(e) => {
            emit(&format!("error {e}"));
            return 2;
        }
    };
    install_sigbus_reporter();
    // The simulated run gives the order of everything the destination sees: the stream's
    // items, the guest's requests and the manager's resizes on the destination, the
    // competitor's strikes, a cancel and its retry. They happen here, on real memory.
    let sim = crate::engine::simulate(&built);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            emit(&format!("error cannot find this program for the competitor: {e}"));
            return 2;
        }
    };
    let mut host = RealHost { built: &built, places, exe, competitors: Vec::new(), attempts: 0 };
    let replayed = replay(&built, &sim, &mut host);
    for d in &replayed.divergences {
        emit(&format!("diverged {d}"));
    }
    report(&replayed.outcome);
    drop(host);
    0
}

/// The replay's host: destinations on real memory, competitors as real processes.
struct RealHost<'a> {
    built: &'a crate::build::Built,
    places: Places,
    exe: std::path::PathBuf,
    /// Each holds what it took until the run ends.
    competitors: Vec<Competitor>,
    attempts: usize,
}

impl Host<RealMemory> for RealHost<'_> {
    fn destination(&mut self) -> Result<Destination<RealMemory>, Outcome> {
        let b = self.built;
        if self.attempts > 0 {
            // The retry's destination maps the same RAM blocks anew: its addresses replace the
            // first one's.
            emit("retry");
        }
        self.attempts += 1;
        let discard = (b.destination.variant == Variant::DontneedOnShared).then_some(DiscardMethod::Dontneed);
        let block_sizes = b.destination.devices.iter().map(|d| (d.ram_block_name(), d.block_size.map_or(2 << 20, |b| b.0))).collect();
        let host = RealMemory::new(self.places.clone(), discard).with_strategy(b.prealloc_strategy, block_sizes);
        let vm = Vm::realize_with(&b.destination, host).map_err(|e| Outcome::Failed { stage: Stage::Startup, lines: vec![e.to_string()] })?;
        for (blk, (base, len)) in vm.blocks.iter().zip(vm.host.layout()) {
            emit(&format!("block {base:x} {len:x} {}", blk.name));
        }
        for l in &vm.lines {
            emit(&format!("line {l}"));
        }
        Ok(Destination::new(vm))
    }

    fn compete(&mut self, _dest: &mut Destination<RealMemory>, limit: u16, bytes: Bytes) -> Result<Bytes, String> {
        let key = super::parent::mount_key(self.built, vmemsim_model::LimitId(usize::from(limit)));
        let Some((_, dir)) = self.places.mounts.iter().find(|(l, _)| *l == key) else {
            // An unlimited backend: nothing to take from, as in the model (its pool has no end).
            return Ok(bytes);
        };
        let page = super::parent::limit_page(self.built, key);
        let (c, took) = spawn(&self.exe, dir, page, bytes, self.competitors.len())?;
        emit(&format!("competitor {:x} {}", took.0, c.pid()));
        self.competitors.push(c);
        Ok(took)
    }

    fn cancelled(&mut self) {
        self.competitors.clear();
    }

    fn before_item(&mut self, item: &Item, dest: &Destination<RealMemory>) {
        emit(&format!("step {}", stage_of(item, dest)));
    }

    fn before_guest(&mut self, dest: &Destination<RealMemory>) {
        for l in dest.lines() {
            emit(&format!("line {l}"));
        }
        emit(&format!("step {}", Stage::GuestRuntime));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_args_read_back_as_written_used_up_included() {
        for used_up in [false, true] {
            let m = MountSpec { fstype: "hugetlbfs".into(), quota: Some(2 << 20), huge_page: Some(2 << 20), used_up };
            let arg = Setup::mount_arg(Some(vmemsim_model::LimitId(3)), &m);
            assert_eq!(Setup::parse_mount(&arg).unwrap(), (Some(vmemsim_model::LimitId(3)), m));
        }
        assert_eq!(Setup::parse_mount("tmpfs:-:-:-").unwrap().1.quota, None);
        assert!(Setup::parse_mount("tmpfs:1:-:-:full").unwrap_err().contains("used-up"));
        assert!(Setup::parse_mount("ext4:1:-:-").is_err());
    }
}
