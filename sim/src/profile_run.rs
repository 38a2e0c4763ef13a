//! A scenario on Cloud Hypervisor or Firecracker: the same devices, plug state, memory limits
//! and guest actions as the QEMU run, handled by that VMM's rules ([`vmemsim_model::vmm`]).
//! Where a scenario names a QEMU option the other VMM lacks, the nearest one it has is used
//! and said in `notes`; where it has none, the run is refused with the reason.
//! Each VMM's run is in its own file (`profile_ch`, `profile_fc`); this one holds what they
//! share: the device states beside the Linux driver's, and the guest's actions in time order.

use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::vmm::guest_driver::{errno, reaction, Reaction, Sent};
use vmemsim_model::vmm::mem_state::{DeviceRules, MemState};
use vmemsim_model::vmm::Vmm;
use vmemsim_model::{Bytes, Outcome, Request, Response, Vm};

use crate::build::Built;
use crate::load::Loaded;

/// How a scenario ended on one profile.
#[derive(Clone, Debug)]
pub struct ProfileRun {
    pub vmm: Vmm,
    pub outcome: Outcome,
    pub verdict: Verdict,
    pub reason: String,
    /// How the scenario's QEMU options were carried over.
    pub notes: Vec<String>,
    /// VMM-neutral properties this run breaks, each with its detail.
    pub violations: Vec<(&'static str, String)>,
}

/// The neutral properties: every profile is checked against them.
pub const NEUTRAL: [&str; 3] = ["clean-error-possible", "driver-usable", "plugged-size-consistent"];

/// What a scenario asks that a profile cannot express.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefusalKind {
    Postcopy,
    Cancel,
    MemoryKind,
    BlockSize,
    RequestSize,
    RegionSize,
    MemoryLayout,
}

impl RefusalKind {
    /// The name the campaign tables use.
    pub fn name(self) -> &'static str {
        match self {
            RefusalKind::Postcopy => "postcopy",
            RefusalKind::Cancel => "cancel and retry",
            RefusalKind::MemoryKind => "memory kind",
            RefusalKind::BlockSize => "block size",
            RefusalKind::RequestSize => "request size",
            RefusalKind::RegionSize => "region size",
            RefusalKind::MemoryLayout => "memory layout",
        }
    }
}

/// A scenario a profile refuses: the kind, and the reason a user reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct Refused {
    pub kind: RefusalKind,
    pub why: String,
}

impl Refused {
    pub fn new(kind: RefusalKind, why: impl Into<String>) -> Refused {
        Refused { kind, why: why.into() }
    }
}

/// Runs `b` (built from `l`) on a non-QEMU profile, or says why it cannot be expressed there.
pub fn run_profile(l: &Loaded, b: &Built, vmm: Vmm) -> Result<ProfileRun, Refused> {
    match vmm {
        Vmm::Qemu(_) => panic!("QEMU profiles run in the engine"),
        Vmm::CloudHypervisor(tag) => crate::profile_ch::cloud_hypervisor_run(l, b, tag),
        Vmm::Firecracker(tag) => crate::profile_fc::firecracker_run(b, tag),
    }
}

/// One device as the profile keeps it, with the Linux driver's state beside it.
pub(crate) struct Dev {
    pub(crate) state: MemState,
    pub(crate) broken: bool,
    /// The scenario's (QEMU's) block size over the profile's: a request of n QEMU blocks is
    /// n × scale of the profile's.
    scale: u64,
    /// The largest requested size the driver can have read so far: a plug sent before a
    /// resize that lowered it is still one the driver may legally have in flight.
    requested_seen: Bytes,
}

impl Dev {
    /// Whether the Linux driver could send `req` now: aligned, not empty, inside the usable
    /// region it read, every block in the opposite state, and a plug within a requested size
    /// it saw. Only answers to such requests count for `driver-usable`.
    fn legal(&self, req: Request) -> bool {
        let d = &self.state;
        let inside = |addr: vmemsim_model::Gpa, nb: u16| {
            let len = d.len_of(nb);
            nb != 0 && addr.0.is_multiple_of(d.block_size.0) && addr.offset_from(d.addr).and_then(|o| o.checked_add(len)).is_some_and(|e| e <= d.usable_region_size)
        };
        match req {
            Request::Plug { addr, nb_blocks } => {
                inside(addr, nb_blocks) && d.all(d.run_of(addr, nb_blocks).1, false) && d.plugged_size.checked_add(d.len_of(nb_blocks)).is_some_and(|s| s <= self.requested_seen)
            }
            Request::Unplug { addr, nb_blocks } => inside(addr, nb_blocks) && d.all(d.run_of(addr, nb_blocks).1, true),
            Request::UnplugAll => true,
            Request::State { .. } => false,
        }
    }
}

/// One timed action: (time µs, order, device, a guest request or a requested-size change).
pub(crate) type Action = (u64, usize, usize, Option<Request>, Option<Bytes>);

/// Guest actions and resizes in time order.
pub(crate) fn events(b: &Built) -> Vec<Action> {
    let mut ev: Vec<_> = b.actions.iter().enumerate().map(|(i, &(t, d, r))| (t, i, d, Some(r), None)).collect();
    ev.extend(b.resizes.iter().enumerate().map(|(i, &(t, d, s))| (t, b.actions.len() + i, d, None, Some(s))));
    ev.sort_by_key(|e| (e.0, e.1));
    ev
}

/// One side running the guest's actions by the profile's rules; `apply` records each ACKed
/// plug's (device, offset, length).
pub(crate) struct Side<'a> {
    pub(crate) rules: &'a dyn DeviceRules,
    pub(crate) devs: &'a mut [Dev],
    pub(crate) vm: &'a mut Vm,
    pub(crate) migrating: bool,
    pub(crate) violations: &'a mut Vec<(&'static str, String)>,
    pub(crate) notes: &'a mut Vec<String>,
}

impl Side<'_> {
    pub(crate) fn apply(&mut self, t: u64, dev: usize, req: Option<Request>, size: Option<Bytes>, plugged: &mut Vec<(usize, Bytes, Bytes)>) {
        let rb = self.vm.devices[dev].ram_block();
        let id = self.vm.devices[dev].id().to_string();
        let d = &mut self.devs[dev];
        if let Some(size) = size {
            match self.rules.set_requested_size(&mut d.state, size, self.migrating) {
                Ok(()) => d.requested_seen = d.requested_seen.max(size),
                Err(e) => self.notes.push(format!("at {t} µs the resize of {id} to {size} was refused: {e}")),
            }
            return;
        }
        let req = scaled(req.expect("an action is a request or a resize"), d.scale);
        if d.broken {
            return;
        }
        let legal = d.legal(req);
        let resp = self.rules.handle(&mut d.state, req, &mut self.vm.host, rb);
        if !d.state.consistent() {
            self.violations.push(("plugged-size-consistent", format!("after {req} → {resp}: plugged_size {} but the bitmap holds {}", d.state.plugged_size, d.state.plug.plugged_blocks().0)));
        }
        let sent = match req {
            Request::Plug { .. } => Sent::Plug,
            Request::Unplug { .. } => Sent::Unplug,
            Request::UnplugAll => Sent::UnplugAll,
            Request::State { .. } => return,
        };
        if reaction(errno(sent, resp)) == Reaction::Broken {
            d.broken = true;
            if legal {
                self.violations.push(("driver-usable", format!("at {t} µs {id} answered {req}, a request the driver may send, with {resp}: the Linux driver marks the device broken (-EINVAL) until the guest reboots")));
            }
        }
        if let (Request::Plug { addr, nb_blocks }, Response::Ack) = (req, resp) {
            let off = addr.offset_from(d.state.addr).expect("an ACKed plug lies in the region");
            plugged.push((dev, off, d.state.len_of(nb_blocks)));
        }
    }
}

/// A request of QEMU blocks in the profile's blocks (`scale` per QEMU block).
fn scaled(req: Request, scale: u64) -> Request {
    let n = |nb: u16| u16::try_from(u64::from(nb) * scale).expect("checked by devices_from_source");
    match req {
        Request::Plug { addr, nb_blocks } => Request::Plug { addr, nb_blocks: n(nb_blocks) },
        Request::Unplug { addr, nb_blocks } => Request::Unplug { addr, nb_blocks: n(nb_blocks) },
        Request::State { addr, nb_blocks } => Request::State { addr, nb_blocks: n(nb_blocks) },
        Request::UnplugAll => Request::UnplugAll,
    }
}

/// The profile's device states, with the plug state the scenario gave the source (its runs
/// of QEMU blocks set as the profile's blocks). Refused when the scenario's block size is not
/// a multiple of the profile's or a request would not fit a request's 16-bit block count.
pub(crate) fn devices_from_source(b: &Built, make: impl Fn(&vmemsim_model::VirtioMem) -> MemState) -> Result<Vec<Dev>, Refused> {
    let mut devs = Vec::new();
    for (i, d) in b.source.devices.iter().enumerate() {
        let mut state = make(d);
        let (qbs, pbs) = (d.block_size(), state.block_size);
        if !qbs.is_multiple_of(pbs) {
            return Err(Refused::new(RefusalKind::BlockSize, format!("device {}: its {qbs} blocks are not whole blocks of the profile's {pbs}", d.id())));
        }
        let scale = qbs.0 / pbs.0;
        for r in d.plug_map().plugged_runs() {
            let first = vmemsim_model::BlockIndex(r.first.0 * scale);
            state.set(vmemsim_model::BlockRun { first, count: vmemsim_model::BlockCount(r.count.0 * scale) }, true);
        }
        state.recount();
        let too_big = b.actions.iter().filter(|a| a.1 == i).find_map(|a| match a.2 {
            Request::Plug { nb_blocks, .. } | Request::Unplug { nb_blocks, .. } | Request::State { nb_blocks, .. } => (u64::from(nb_blocks) * scale > u64::from(u16::MAX)).then_some(nb_blocks),
            Request::UnplugAll => None,
        });
        if let Some(nb) = too_big {
            return Err(Refused::new(RefusalKind::RequestSize, format!("device {}: a request of {nb} blocks of {qbs} is more than 65535 of the profile's {pbs} blocks", d.id())));
        }
        let requested_seen = state.requested_size;
        devs.push(Dev { state, broken: false, scale, requested_seen });
    }
    Ok(devs)
}

