//! A scenario on Cloud Hypervisor or Firecracker: the same devices, plug state, memory limits
//! and guest actions as the QEMU run, handled by that VMM's rules ([`vmemsim_model::vmm`]).
//! Where a scenario names a QEMU option the other VMM lacks, the nearest one it has is used
//! and said in `notes`; where it has none, the run is refused with the reason.
//!
//! The order: guest actions and resizes before the end of the memory copy happen on the source
//! (Cloud Hypervisor serves guest requests during migration); the destination then receives
//! memory and state, and later actions run there. Firecracker has no live migration: the VM is
//! paused, snapshotted and restored, and every action waits for the restored guest.

use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::vmm::cloud_hypervisor::{self, CloudHypervisor};
use vmemsim_model::vmm::firecracker::Firecracker;
use vmemsim_model::vmm::guest_driver::{errno, reaction, Reaction, Sent};
use vmemsim_model::vmm::mem_state::{DeviceRules, MemState};
use vmemsim_model::vmm::other_migration::{cloud_hypervisor_receive, firecracker_restore, Range, Zone};
use vmemsim_model::vmm::{Tag, Vmm};
use vmemsim_model::{BackendKind, Bytes, HostMemory, Mode, ModelMemory, Outcome, Request, Response, Stage, Vm};

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

/// Runs `b` (built from `l`) on a non-QEMU profile, or says why it cannot be expressed there.
pub fn run_profile(l: &Loaded, b: &Built, vmm: Vmm) -> Result<ProfileRun, String> {
    match vmm {
        Vmm::Qemu(_) => panic!("QEMU profiles run in the engine"),
        Vmm::CloudHypervisor(tag) => cloud_hypervisor_run(l, b, tag),
        Vmm::Firecracker(tag) => firecracker_run(b, tag),
    }
}

/// One device as the profile keeps it, with the Linux driver's state beside it.
struct Dev {
    state: MemState,
    broken: bool,
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
type Action = (u64, usize, usize, Option<Request>, Option<Bytes>);

/// Guest actions and resizes in time order.
fn events(b: &Built) -> Vec<Action> {
    let mut ev: Vec<_> = b.actions.iter().enumerate().map(|(i, &(t, d, r))| (t, i, d, Some(r), None)).collect();
    ev.extend(b.resizes.iter().enumerate().map(|(i, &(t, d, s))| (t, b.actions.len() + i, d, None, Some(s))));
    ev.sort_by_key(|e| (e.0, e.1));
    ev
}

/// One side running the guest's actions by the profile's rules; `apply` records each ACKed
/// plug's (device, offset, length).
struct Side<'a> {
    rules: &'a dyn DeviceRules,
    devs: &'a mut [Dev],
    vm: &'a mut Vm,
    migrating: bool,
    violations: &'a mut Vec<(&'static str, String)>,
    notes: &'a mut Vec<String>,
}

impl Side<'_> {
    fn apply(&mut self, t: u64, dev: usize, req: Option<Request>, size: Option<Bytes>, plugged: &mut Vec<(usize, Bytes, Bytes)>) {
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
fn devices_from_source(b: &Built, make: impl Fn(&vmemsim_model::VirtioMem) -> MemState) -> Result<Vec<Dev>, String> {
    let mut devs = Vec::new();
    for (i, d) in b.source.devices.iter().enumerate() {
        let mut state = make(d);
        let (qbs, pbs) = (d.block_size(), state.block_size);
        if !qbs.is_multiple_of(pbs) {
            return Err(format!("device {}: its {qbs} blocks are not whole blocks of the profile's {pbs}", d.id()));
        }
        let scale = qbs.0 / pbs.0;
        for r in d.plug_map().plugged_runs() {
            let first = vmemsim_model::BlockIndex(r.first.0 * scale);
            state.set(vmemsim_model::BlockRun { first, count: vmemsim_model::BlockCount(r.count.0 * scale) }, true);
        }
        let too_big = b.actions.iter().filter(|a| a.1 == i).find_map(|a| match a.2 {
            Request::Plug { nb_blocks, .. } | Request::Unplug { nb_blocks, .. } | Request::State { nb_blocks, .. } => (u64::from(nb_blocks) * scale > u64::from(u16::MAX)).then_some(nb_blocks),
            Request::UnplugAll => None,
        });
        if let Some(nb) = too_big {
            return Err(format!("device {}: a request of {nb} blocks of {qbs} is more than 65535 of the profile's {pbs} blocks", d.id()));
        }
        let requested_seen = state.requested_size;
        devs.push(Dev { state, broken: false, scale, requested_seen });
    }
    Ok(devs)
}

fn cloud_hypervisor_run(l: &Loaded, b: &Built, tag: Tag) -> Result<ProfileRun, String> {
    let rules = CloudHypervisor { tag };
    if matches!(b.plan.mode, Mode::Postcopy { .. }) {
        return Err(if tag < Tag::new(53, 0, 0) {
            format!("cloud-hypervisor-{tag} has no postcopy (it arrived in v53.0)")
        } else {
            format!("postcopy on cloud-hypervisor-{tag} (send_migration's fault-serving thread, vm_receive_state_command) is not modelled yet; precopy is")
        });
    }
    if b.cancel_at.is_some() {
        return Err("a cancelled migration and its retry are QEMU's migrate_cancel; cloud-hypervisor's cancel is not modelled".into());
    }
    let mut notes = Vec::new();
    for d in &b.source.devices {
        if d.block_size() != cloud_hypervisor::BLOCK_SIZE {
            notes.push(format!("device {}: cloud-hypervisor's block size is fixed at 2 MiB (VIRTIO_MEM_DEFAULT_BLOCK_SIZE); the scenario's {} blocks are whole 2 MiB blocks", d.id(), d.block_size()));
        }
    }
    // Zone options: `reserve=on` only when the scenario asks for it and the release has it
    // (default off, MAP_NORESERVE); QEMU's virtio-mem `prealloc` has no per-plug counterpart,
    // its nearest is the zone's `prefault=on` (the whole mapping, at creation).
    let mut dst = b.destination.clone();
    // QEMU's mutants, release and machine types are not Cloud Hypervisor's: the destination's
    // memory is laid out as the source's machine places it.
    dst.variant = vmemsim_model::Variant::Faithful;
    dst.qemu = vmemsim_model::QemuProfile::newest();
    dst.machine = b.source.machine.clone();
    for m in &mut dst.memory.memdevs {
        // The destination's own memdevs, else the source's (which it then shares).
        let specs = if l.scenario.destination.memdevs.is_empty() { &l.scenario.source.memdevs } else { &l.scenario.destination.memdevs };
        let asked = specs.iter().any(|s| s.get_ref().id == m.id && s.get_ref().reserve == Some(true));
        if asked && !rules.has_reserve() {
            notes.push(format!("memdev {}: reserve=on has no counterpart before v53.0: mapped with MAP_NORESERVE", m.id));
        }
        m.reserve = asked && rules.has_reserve();
        m.prealloc = false;
    }
    // `vm_receive_config` builds the destination from the source's `VmConfig`: the devices'
    // properties are the source's, only the host's memory behind them is the destination's.
    for (c, src) in dst.devices.iter_mut().zip(&b.source.devices) {
        let before = (c.memaddr, c.region_size, c.requested_size, c.prealloc, c.node);
        (c.memaddr, c.region_size, c.block_size, c.requested_size, c.prealloc, c.node) = (src.addr(), src.region_size(), Some(src.block_size()), src.requested_size(), src.prealloc(), src.node());
        if before != (c.memaddr, c.region_size, c.requested_size, c.prealloc, c.node) {
            notes.push(format!("device {}: the destination's own device properties are not used: cloud-hypervisor's destination takes the source's config (vm_receive_config)", c.id));
        }
    }
    let prefault: Vec<bool> = dst.devices.iter().map(|d| d.prealloc).collect();
    for (d, p) in dst.devices.iter_mut().zip(&prefault) {
        if *p {
            notes.push(format!("device {}: prealloc=on becomes the zone's prefault=on (cloud-hypervisor populates the whole region when it maps it, not each plug)", d.id));
        }
        d.prealloc = false;
    }
    let main_prefault = b.destination.memory.main.as_deref().and_then(|id| b.destination.memory.memdev(id)).is_some_and(|m| m.prealloc);
    let mut dest = match Vm::realize(&dst) {
        Ok((vm, _)) => vm,
        Err(vmemsim_model::ModelError::Backend { message, .. }) if message.starts_with("unable to map") => {
            // `create_ram_region_raw`: the mmap fails (`Error::GuestMemoryRegion`).
            let why = message.rsplit(": ").next().unwrap_or(&message).to_string();
            let outcome = Outcome::Failed { stage: Stage::Startup, lines: vec!["Error creating MemoryManager from snapshot".into(), format!("Error from region creation: {why}")] };
            return Ok(judge_ch(tag, outcome, notes, Vec::new()));
        }
        Err(e) => return Err(format!("the destination's memory cannot be laid out: {e}")),
    };
    let mut src = b.source.clone();
    let mut devs = devices_from_source(b, |d| {
        CloudHypervisor::new_device(d.addr(), d.region_size(), d.requested_size())
    })?;
    // The first pass: boot RAM whole and every plugged range (`memory_range_table`).
    let boot = dest.blocks.iter().position(|bl| bl.device.is_none());
    let mut zones: Vec<Zone> = Vec::new();
    let mut sent: Vec<Range> = Vec::new();
    if let Some(i) = boot {
        let bl = &dest.blocks[i];
        zones.push(Zone { name: bl.name.clone(), rb: bl.id, len: bl.len, prefault: main_prefault, unplugged: Vec::new() });
        sent.push((0, Bytes::ZERO, bl.len));
    }
    let first_dev_zone = zones.len();
    for (i, d) in devs.iter().enumerate() {
        let bl = dest.device_block(i);
        zones.push(Zone { name: bl.name.clone(), rb: bl.id, len: bl.len, prefault: prefault[i], unplugged: Vec::new() });
        sent.extend(d.state.plugged_byte_runs().into_iter().map(|(o, n)| (first_dev_zone + i, o, n)));
    }
    let bytes: u64 = sent.iter().map(|r| r.2 .0).sum();
    let copy_us = bytes.checked_mul(1_000_000).map_or(u64::MAX, |x| x / b.bandwidth.max(1));
    let mut violations = Vec::new();
    let evs = events(b);
    let split = evs.partition_point(|e| e.0 < copy_us);
    let mut plugged_during = Vec::new();
    {
        let mut side = Side { rules: &rules, devs: &mut devs, vm: &mut src, migrating: true, violations: &mut violations, notes: &mut notes };
        for &(t, _, d, r, s) in &evs[..split] {
            side.apply(t, d, r, s, &mut plugged_during);
        }
    }
    // Blocks plugged during the copy reach the destination through the dirty log only when
    // the guest wrote them (`init_on_free`).
    if b.init_on_free {
        sent.extend(plugged_during.iter().map(|&(d, o, n)| (first_dev_zone + d, o, n)));
    }
    for (i, d) in devs.iter().enumerate() {
        let bs = d.state.block_size;
        zones[first_dev_zone + i].unplugged = d.state.plug.unplugged_runs().iter().map(|r| (r.first.offset(bs).expect("in the region"), r.count.bytes(bs).expect("in the region"))).collect();
    }
    let outcome = cloud_hypervisor_receive(&mut dest.host, &zones, &sent);
    if let Outcome::Crashed { site, .. } = &outcome {
        violations.push(("clean-error-possible", format!("the destination died of SIGBUS in {} at {:#x}: the plugged ranges were known when the config arrived, so the memory could have been checked first (QEMU's prealloc does, d71920d425)", site.block, site.offset.0)));
    }
    if !matches!(outcome, Outcome::Completed { .. }) {
        return Ok(judge_ch(tag, outcome, notes, violations));
    }
    // The guest runs on the destination: the rest of the actions happen there.
    let mut plugged_after = Vec::new();
    {
        let mut side = Side { rules: &rules, devs: &mut devs, vm: &mut dest, migrating: false, violations: &mut violations, notes: &mut notes };
        for &(t, _, d, r, s) in &evs[split..] {
            side.apply(t, d, r, s, &mut plugged_after);
        }
    }
    if b.init_on_free {
        for &(d, o, n) in &plugged_after {
            let rb = dest.devices[d].ram_block();
            if let Err(sig) = dest.host.touch(rb, o, n) {
                let site = vmemsim_model::migration::outcome::FaultSite { block: dest.device_block(d).name.clone(), offset: sig.offset };
                let why = "the guest (init_on_free=1) wrote memory it had just plugged; cloud-hypervisor populates nothing at plug, and the backend has no memory left".to_string();
                return Ok(judge_ch(tag, Outcome::RuntimeCrash { site, why, lines: Vec::new() }, notes, violations));
            }
        }
    }
    // Plugged memory nothing populated (plugged on the destination, never written), beside what
    // the backend has left: the same sum QEMU's `Destination::unbacked` takes.
    let mut missing = Bytes::ZERO;
    for (i, d) in devs.iter().enumerate() {
        let rb = dest.devices[i].ram_block();
        for (off, len) in d.state.plugged_byte_runs() {
            missing = missing.checked_add(len.checked_sub(dest.host.populated(rb, off, len)).unwrap_or(Bytes::ZERO)).expect("plugged bytes fit in u64");
        }
    }
    let left = dest.devices.first().and_then(|d| dest.host.left(d.ram_block()));
    let mut run = judge_ch(tag, outcome, notes, violations);
    if let Some(left) = left.filter(|l| missing > *l) {
        run.verdict = Verdict::LatentCrash;
        run.reason = format!("the guest runs on the destination, but {missing} of its plugged memory is not populated and the backend has {left} left: the guest's first write there is a SIGBUS (cloud-hypervisor populates nothing at plug)");
    }
    Ok(run)
}

/// `VmmManager::migration_worker` → `try_resume_vm_after_failed_migration` (vmm/src/lib.rs): a
/// failure before `Complete` resumes the source; after it the source VMM has exited.
fn judge_ch(tag: Tag, outcome: Outcome, notes: Vec<String>, violations: Vec<(&'static str, String)>) -> ProfileRun {
    let (verdict, reason) = match &outcome {
        Outcome::Completed { .. } => (Verdict::Safe, "the guest runs on the destination with its plugged memory received".to_string()),
        Outcome::Failed { .. } => (Verdict::Recoverable, "the migration failed before Complete: the source resumes the VM".to_string()),
        Outcome::Crashed { .. } => (Verdict::Recoverable, "the destination died of SIGBUS; the source's send fails and it resumes the VM".to_string()),
        Outcome::RuntimeCrash { .. } => (Verdict::VmLost, "the destination died of SIGBUS after Complete, when the source had already shut down".to_string()),
        Outcome::PostcopyFailed { .. } => unreachable!("precopy only"),
    };
    ProfileRun { vmm: Vmm::CloudHypervisor(tag), outcome, verdict, reason, notes, violations }
}

fn firecracker_run(b: &Built, tag: Tag) -> Result<ProfileRun, String> {
    let rules = Firecracker { tag };
    if matches!(b.plan.mode, Mode::Postcopy { .. }) {
        return Err("firecracker has no live migration; a postcopy-like move is a snapshot restore with a UFFD handler, and that handler (the user's program) places the pages: not modelled".into());
    }
    if b.cancel_at.is_some() {
        return Err("firecracker has no migration to cancel (snapshot and restore)".into());
    }
    let mut notes = vec!["firecracker moves a VM by pause, snapshot and restore from a file: the source stays paused until it is resumed or discarded".to_string()];
    let mut huge = false;
    for bl in &b.destination_blocks() {
        match bl.0 {
            BackendKind::PrivateAnonymous => {}
            BackendKind::Memfd | BackendKind::SharedAnonymous => notes.push(format!("{}: shared memory is firecracker's memfd (for vhost-user); a restore maps the snapshot file privately", bl.1)),
            BackendKind::Hugetlbfs | BackendKind::MemfdHugetlb if bl.2 == Bytes::mib(2) => huge = true,
            k => return Err(format!("{}: firecracker's guest memory is anonymous, memfd or 2 MiB huge pages (HugePageConfig); {} with {} pages has no counterpart", bl.1, k.name(), bl.2)),
        }
    }
    for d in &b.source.devices {
        Firecracker::check_config(d.region_size(), d.block_size()).map_err(|e| format!("device {}: {e}", d.id()))?;
        if d.prealloc() {
            notes.push(format!("device {}: prealloc=on has no counterpart (firecracker populates nothing at plug and has no prefault)", d.id()));
        }
    }
    let mut devs = devices_from_source(b, |d| {
        let mut s = Firecracker::new_device(d.addr(), d.region_size(), d.block_size());
        rules.set_requested_size(&mut s, d.requested_size(), false).expect("QEMU accepted the same size");
        s
    })?;
    let outcome = firecracker_restore(huge);
    let mut violations = Vec::new();
    if !matches!(outcome, Outcome::Completed { .. }) {
        let reason = "the restore is refused; the paused source can be resumed".to_string();
        return Ok(ProfileRun { vmm: Vmm::Firecracker(tag), outcome, verdict: Verdict::Recoverable, reason, notes, violations });
    }
    // Restored: the memory is the snapshot file mapped privately, written pages anonymous.
    let mut dest = b.source.clone();
    let mut host = ModelMemory::new();
    let pool = host.add_pool(vmemsim_model::Capacity::Unlimited);
    for bl in &mut dest.blocks {
        let backend = vmemsim_model::Backend { kind: BackendKind::PrivateAnonymous, page_size: Bytes(4096), capacity: vmemsim_model::Capacity::Unlimited };
        bl.id = host.add_block(&bl.name, backend, bl.len, pool);
    }
    let ids: Vec<_> = dest.blocks.iter().filter_map(|bl| bl.device.map(|d| (d, bl.id))).collect();
    for (d, id) in ids {
        dest.devices[d] = vmemsim_model::VirtioMem::new(dest.devices[d].config().clone(), id, dest.variant);
    }
    dest.host = host;
    let mut plugged = Vec::new();
    {
        let mut side = Side { rules: &rules, devs: &mut devs, vm: &mut dest, migrating: false, violations: &mut violations, notes: &mut notes };
        for (t, _, d, r, s) in events(b) {
            side.apply(t, d, r, s, &mut plugged);
        }
    }
    let reason = "the restored guest runs; its memory comes from the snapshot file and anonymous copy-on-write pages".to_string();
    Ok(ProfileRun { vmm: Vmm::Firecracker(tag), outcome, verdict: Verdict::Safe, reason, notes, violations })
}

impl Built {
    /// The destination's RAM blocks: (kind, block name, page size).
    pub fn destination_blocks(&self) -> Vec<(BackendKind, String, Bytes)> {
        let m = &self.destination.memory;
        let mut v = Vec::new();
        if let Some(main) = m.main.as_deref().and_then(|id| m.memdev(id)) {
            v.push((main.kind, main.id.clone(), main.page_size));
        }
        for d in &self.destination.devices {
            if let Some(md) = m.memdev(&d.memdev) {
                v.push((md.kind, md.id.clone(), md.page_size));
            }
        }
        v
    }
}
