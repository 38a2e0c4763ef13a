//! Turns a scenario into the model's inputs: the source VM (with the guest's plugs done),
//! the destination's configuration, and the migration plan.

use vmemsim_model::config::HostFacts;
use vmemsim_model::{
    QemuProfile, PostcopyStart, Memory, Gpa, BlockCount, BlockIndex, Bytes, DeviceConfig, GuestRange, MachineType, Mode, Plan, Request, Response,
    Vm, VmConfig,
};

use crate::error::SimError;
use crate::load::Loaded;
use crate::build_memory::{one_backend, per_memdev};
use crate::scenario::{DeviceSpec, DrainPoint, MemoryView, ModeSpec, OpSpec, StartSpec};

/// Everything the engine needs to run a scenario.
#[derive(Clone, Debug)]
pub struct Built {
    /// The QEMU releases of both sides.
    pub source_qemu: QemuProfile,
    pub destination_qemu: QemuProfile,
    pub source: Vm,
    /// The source's memdevs and limits (its `VmConfig`'s, kept for the trace and reports).
    pub source_memory: Memory,
    pub destination: VmConfig,
    pub plan: Plan,
    /// Free page hints, kept for the destination's explanation of a run-time fault.
    pub hints: Vec<GuestRange>,
    /// Guest requests by virtual time (µs): (time, device, request).
    pub actions: Vec<(u64, usize, Request)>,
    /// Requested-size changes by virtual time: (time, device, size).
    pub resizes: Vec<(u64, usize, Bytes)>,
    /// The guest writes what it plugs on the destination after the restore (`init_on_free=1`).
    pub init_on_free: bool,
    /// Competitors draining the destination's pool.
    pub drains: Vec<(DrainPoint, Bytes)>,
    /// Cancel the migration at this time and retry to a second destination.
    pub cancel_at: Option<u64>,
    /// Channel bytes per virtual second.
    pub bandwidth: u64,
    /// How the real adapter preallocates.
    pub prealloc_strategy: crate::real::prealloc::Strategy,
    pub seed: u64,
}

fn device_config(d: &DeviceSpec, index: usize) -> DeviceConfig {
    DeviceConfig {
        id: d.id.clone(),
        pci: d.pci.clone().unwrap_or_default(),
        memdev: d.memdev.clone().unwrap_or_else(|| format!("mem{index}")),
        memaddr: d.memaddr.unwrap_or(Gpa(0)),
        region_size: d.region,
        block_size: d.block_size,
        node: d.node,
        prealloc: d.prealloc,
        early_migration: d.early_migration,
        requested_size: d.requested,
        memdev_prealloc: d.memdev_prealloc,
    }
}

/// Both sides' memory: the older one-backend form, or memdevs and host limits (the
/// destination's lists default to the source's, list by list).
fn memories(l: &Loaded) -> Result<(Memory, Memory), SimError> {
    let s = &l.scenario;
    let memdev_ids = |dest: bool| -> Vec<String> {
        s.devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let c = device_config(d.get_ref(), i);
                if dest { d.get_ref().destination.memdev.clone().unwrap_or(c.memdev) } else { c.memdev }
            })
            .collect()
    };
    let size = |dest: bool| {
        move |id: &str| -> Option<Bytes> {
            let main = if dest { s.destination.main_memdev.as_ref().or(s.source.main_memdev.as_ref()) } else { s.source.main_memdev.as_ref() };
            if main.is_some_and(|m| m.get_ref() == id) {
                return Some(if dest { s.destination.main_ram.unwrap_or(s.source.main_ram) } else { s.source.main_ram });
            }
            s.devices.iter().enumerate().find_map(|(i, d)| {
                let c = device_config(d.get_ref(), i);
                let o = &d.get_ref().destination;
                let memdev = if dest { o.memdev.clone().unwrap_or(c.memdev) } else { c.memdev };
                let region = if dest { o.region.unwrap_or(c.region_size) } else { c.region_size };
                (memdev == id).then_some(region)
            })
        }
    };
    let src_view = s.source.memory();
    let source = match (&s.source.backend, src_view.is_empty()) {
        (Some(b), false) => return Err(l.invalid(b.span().start, "source.backend", "write backend (one for every device) or [[source.memdev]], not both")),
        (Some(b), true) => Memory::one_backend(one_backend(l, b, "source.backend")?, memdev_ids(false)),
        (None, _) if src_view.memdevs.is_empty() => {
            return Err(l.invalid(0, "source.backend", "the source needs a backend, or its memdevs as [[source.memdev]]"));
        }
        (None, _) => per_memdev(l, src_view, "source", &size(false))?,
    };
    let dv = s.destination.memory();
    let destination = match &s.destination.backend {
        Some(b) if !dv.is_empty() => return Err(l.invalid(b.span().start, "destination.backend", "write backend or the per-memdev lists, not both")),
        Some(b) => Memory::one_backend(one_backend(l, b, "destination.backend")?, memdev_ids(true)),
        None => {
            let merged = MemoryView {
                main_memdev: dv.main_memdev.or(src_view.main_memdev),
                memdevs: if dv.memdevs.is_empty() { src_view.memdevs } else { dv.memdevs },
                mounts: if dv.mounts.is_empty() { src_view.mounts } else { dv.mounts },
                hugepages: if dv.hugepages.is_empty() { src_view.hugepages } else { dv.hugepages },
                cgroup_hugetlb: if dv.cgroup_hugetlb.is_empty() { src_view.cgroup_hugetlb } else { dv.cgroup_hugetlb },
            };
            if merged.memdevs.is_empty() {
                return Err(l.invalid(0, "destination.backend", "the destination needs a backend (the source has one), or [[destination.memdev]]"));
            }
            per_memdev(l, merged, "destination", &size(true))?
        }
    };
    for (mem, side, dest) in [(&source, "source", false), (&destination, "destination", true)] {
        for (d, id) in s.devices.iter().zip(memdev_ids(dest)) {
            if mem.memdev(&id).is_none() {
                let have: Vec<&str> = mem.memdevs.iter().map(|m| m.id.as_str()).collect();
                let field = if dest && d.get_ref().destination.memdev.is_some() { "device.destination.memdev" } else { "device.memdev" };
                return Err(l.invalid(d.span().start, field, format!("the {side} has no memdev '{id}' (its memdevs: {})", have.join(", "))));
            }
        }
    }
    Ok((source, destination))
}

/// Each device's PCI address: its own, or the first root-bus slot QEMU gives it in `[[device]]`
/// order after the machine's default VGA and NIC (`pc_layout::board_slots`).
fn default_pci(l: &Loaded, machine: &MachineType) -> Result<Vec<String>, SimError> {
    let mut taken = vmemsim_model::pc_layout::board_slots(machine, true, true);
    let slot_of = |pci: &str| -> Option<u8> {
        let rest = pci.strip_prefix("0000:00:")?;
        let (slot, func) = rest.split_once('.')?;
        (func.len() == 1).then_some(())?;
        u8::from_str_radix(slot, 16).ok()
    };
    for d in &l.scenario.devices {
        if let Some(slot) = d.get_ref().pci.as_deref().and_then(slot_of) {
            taken.push(slot);
        }
    }
    let mut out = Vec::new();
    for d in &l.scenario.devices {
        match &d.get_ref().pci {
            Some(p) => out.push(p.clone()),
            None => {
                let slot = vmemsim_model::pc_layout::first_free_slot(&taken)
                    .ok_or_else(|| l.invalid(d.span().start, "device.pci", "no free slot is left on the root bus: give pci"))?;
                taken.push(slot);
                out.push(format!("0000:00:{slot:02x}.0"));
            }
        }
    }
    Ok(out)
}

/// Devices without a `memaddr` go where QEMU puts them: the first aligned gap of device memory
/// among the devices before them (`memory_device_get_free_addr`).
fn place_devices(cfg: &mut VmConfig, explicit: &[bool]) {
    use vmemsim_model::pc_layout::{device_memory_start, first_free_addr, memaddr_alignment};
    let start = device_memory_start(&cfg.machine, cfg.main_ram);
    let mut placed: Vec<(u64, u64)> = Vec::new();
    for (i, d) in cfg.devices.iter_mut().enumerate() {
        if !explicit[i] {
            let memdev = cfg.memory.memdev(&d.memdev);
            let page = memdev.map_or(Bytes(4096), |m| m.page_size);
            let anonymous = memdev.is_some_and(|m| !m.kind.has_fd());
            let block = d.block_size.unwrap_or_else(|| vmemsim_model::config::default_block_size(page, &cfg.facts));
            // No room (an address overflow) leaves 0, which realize refuses as below device memory.
            d.memaddr = Gpa(first_free_addr(start, &placed, d.region_size.0, memaddr_alignment(block, page, anonymous)).unwrap_or(0));
        }
        if let Some(end) = d.memaddr.0.checked_add(d.region_size.0) {
            placed.push((d.memaddr.0, end));
        }
    }
}

/// The source's machine type: one its QEMU offers.
fn machine(l: &Loaded, m: &toml::Spanned<String>, field: &str, qemu: &QemuProfile) -> Result<MachineType, SimError> {
    MachineType::parse_for(m.get_ref(), qemu).map_err(|e| l.invalid(m.span().start, field, with_hint(&e)))
}

fn with_hint(e: &vmemsim_model::ModelError) -> String {
    match e.hint() {
        Some(h) => format!("{e}: {h}"),
        None => e.to_string(),
    }
}

/// The destination's machine type: an alias resolves as the destination's QEMU resolves it; a
/// versioned name that some release offers is kept, and a destination QEMU that does not offer
/// it refuses to start (`Vm::realize`), as the real one does.
fn destination_machine(l: &Loaded, m: &toml::Spanned<String>, qemu: &QemuProfile) -> Result<MachineType, SimError> {
    MachineType::parse_for(m.get_ref(), qemu).or_else(|e| {
        MachineType::parse_for(m.get_ref(), &QemuProfile::newest()).map_err(|_| l.invalid(m.span().start, "destination.machine", with_hint(&e)))
    })
}

/// The channel's default bandwidth: 1 GiB per virtual second.
pub const DEFAULT_BANDWIDTH: u64 = 1 << 30;

/// `migrate-start-postcopy` as the model counts it: a time becomes the page data the channel
/// carries in that time (the few small sections before the first page are not counted).
fn postcopy_start(start: StartSpec, bandwidth: u64) -> PostcopyStart {
    match start {
        StartSpec::AtOnce => PostcopyStart::Share(0),
        StartSpec::Share(p) => PostcopyStart::Share(p),
        StartSpec::AfterUs(us) => {
            let bytes = u128::from(us) * u128::from(bandwidth) / 1_000_000;
            PostcopyStart::After(Bytes(u64::try_from(bytes).unwrap_or(u64::MAX)))
        }
    }
}

/// Builds the source VM, the destination configuration and the plan.
pub fn build(l: &Loaded) -> Result<Built, SimError> {
    let s = &l.scenario;
    if s.devices.is_empty() {
        return Err(l.invalid(0, "device", "a scenario needs at least one [[device]]"));
    }
    for (i, d) in s.devices.iter().enumerate() {
        if s.devices[..i].iter().any(|o| o.get_ref().id == d.get_ref().id) {
            return Err(l.invalid(d.span().start, "device.id", format!("device id '{}' is used twice", d.get_ref().id)));
        }
        if d.get_ref().pci.is_some() && s.devices[..i].iter().any(|o| o.get_ref().pci == d.get_ref().pci) {
            return Err(l.invalid(d.span().start, "device.pci", format!("PCI address '{}' is used twice", d.get_ref().pci.as_deref().unwrap_or(""))));
        }
    }
    let (source_qemu, destination_qemu) = qemu_versions(l)?;
    let src_machine = machine(l, &s.source.machine, "source.machine", &source_qemu)?;
    let dst_machine = match &s.destination.machine {
        Some(m) => destination_machine(l, m, &destination_qemu)?,
        None => src_machine.clone(),
    };
    let (src_memory, dst_memory) = memories(l)?;
    let bandwidth = s.migration.bandwidth.map_or(DEFAULT_BANDWIDTH, |b| b.0);
    let mode = match s.migration.mode {
        ModeSpec::Precopy => {
            for (given, field) in [(s.migration.switch_percent.is_some(), "switch_percent"), (s.migration.start_postcopy.is_some(), "start_postcopy")] {
                if given {
                    return Err(l.invalid(0, &format!("migration.{field}"), format!("{field} only applies to mode = \"postcopy\"")));
                }
            }
            Mode::Precopy
        }
        ModeSpec::Postcopy => {
            let start = match (s.migration.start_postcopy, s.migration.switch_percent) {
                (Some(_), Some(_)) => return Err(l.invalid(0, "migration.switch_percent", "write start_postcopy or switch_percent, not both")),
                (None, Some(p)) if p > 100 => return Err(l.invalid(0, "migration.switch_percent", format!("{p} is not a percentage (0 to 100)"))),
                (None, Some(p)) => StartSpec::Share(p),
                (Some(st), None) => st,
                (None, None) => StartSpec::Share(50),
            };
            Mode::Postcopy { start: postcopy_start(start, bandwidth) }
        }
    };
    let src_cfg = VmConfig {
        qemu: source_qemu,
        machine: src_machine,
        devices: s.devices.iter().enumerate().map(|(i, d)| device_config(d.get_ref(), i)).collect(),
        memory: src_memory,
        main_ram: s.source.main_ram,
        extra_ram: Vec::new(),
        facts: HostFacts { numa_nodes: s.source.numa_nodes, ..HostFacts::default() },
        variant: s.variant,
    };
    let dst_cfg = VmConfig {
        qemu: destination_qemu,
        machine: dst_machine,
        devices: s
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let d = d.get_ref();
                let o = &d.destination;
                let mut c = device_config(d, i);
                c.memaddr = o.memaddr.or(d.memaddr).unwrap_or(c.memaddr);
                c.requested_size = o.requested.unwrap_or(c.requested_size);
                c.memdev = o.memdev.clone().unwrap_or(c.memdev);
                c.region_size = o.region.unwrap_or(c.region_size);
                c.block_size = o.block_size.or(c.block_size);
                c.node = o.node.unwrap_or(c.node);
                c.prealloc = o.prealloc.or(s.destination.prealloc).unwrap_or(c.prealloc);
                c.early_migration = o.early_migration.or(c.early_migration);
                c.memdev_prealloc = o.memdev_prealloc.unwrap_or(c.memdev_prealloc);
                c
            })
            .collect(),
        memory: dst_memory,
        main_ram: s.destination.main_ram.unwrap_or(s.source.main_ram),
        extra_ram: Vec::new(),
        facts: HostFacts { numa_nodes: s.destination.numa_nodes.unwrap_or(s.source.numa_nodes), ..HostFacts::default() },
        variant: s.variant,
    };
    let (mut src_cfg, mut dst_cfg) = (src_cfg, dst_cfg);
    let pcis = default_pci(l, &src_cfg.machine)?;
    for cfg in [&mut src_cfg, &mut dst_cfg] {
        for (c, pci) in cfg.devices.iter_mut().zip(&pcis) {
            c.pci.clone_from(pci);
        }
    }
    let dest_explicit: Vec<bool> = s.devices.iter().map(|d| d.get_ref().memaddr.is_some() || d.get_ref().destination.memaddr.is_some()).collect();
    let src_explicit: Vec<bool> = s.devices.iter().map(|d| d.get_ref().memaddr.is_some()).collect();
    place_devices(&mut src_cfg, &src_explicit);
    place_devices(&mut dst_cfg, &dest_explicit);
    for cfg in [&mut src_cfg, &mut dst_cfg] {
        for d in &mut cfg.devices {
            // A memdev of the per-memdev form with its own prealloc=on.
            d.memdev_prealloc |= cfg.memory.memdev(&d.memdev).is_some_and(|m| m.prealloc);
        }
    }
    if matches!(mode, Mode::Postcopy { .. }) {
        for d in &dst_cfg.devices {
            if let Some(m) = dst_cfg.memory.memdev(&d.memdev).filter(|m| !m.kind.supports_postcopy()) {
                let at = s.destination.backend.as_ref().map_or(0, |b| b.span().start);
                return Err(l.invalid(at, "destination.backend.kind", vmemsim_model::ModelError::PostcopyUnsupported { backend: m.kind.name() }.to_string()));
            }
        }
    }
    let (mut source, _pools) = Vm::realize(&src_cfg).map_err(|e| match &e {
        vmemsim_model::ModelError::Realize { device, .. } => {
            let at = s.devices.iter().find(|d| &d.get_ref().id == device).map_or(0, |d| d.span().start);
            l.invalid(at, "device", format!("the source QEMU refuses this device: {e}"))
        }
        _ => SimError::Source { path: l.path.clone(), source: e },
    })?;
    plug_source(l, &mut source)?;
    let device_index = |name: &str, at: usize, field: &str| -> Result<usize, SimError> {
        s.devices
            .iter()
            .position(|d| d.get_ref().id == name)
            .ok_or_else(|| l.invalid(at, field, format!("no device with id '{name}'")))
    };
    let range = |r: &crate::scenario::RangeSpec, at: usize, field: &str| -> Result<GuestRange, SimError> {
        let device = device_index(&r.device, at, field)?;
        let dev = &source.devices[device];
        guest_range(l, dev, device, r.offset, r.len, at, field)
    };
    if s.faults.skip_ram_discard && !matches!(mode, Mode::Postcopy { .. }) {
        return Err(l.invalid(0, "faults.skip_ram_discard", "only a postcopy migration sends POSTCOPY_RAM_DISCARD"));
    }
    let mut plan = Plan { mode, skip_ram_discard: s.faults.skip_ram_discard, ..Plan::default() };
    for d in &s.guest.data {
        plan.data.push(range(d.get_ref(), d.span().start, "guest.data")?);
    }
    for t in &s.guest.touch {
        plan.touches.push(range(t.get_ref(), t.span().start, "guest.touch")?);
    }
    let mut hints = Vec::new();
    for h in &s.balloon.hint {
        let hs = h.get_ref();
        let device = device_index(&hs.device, h.span().start, "balloon.hint")?;
        let g = guest_range(l, &source.devices[device], device, hs.offset, hs.len, h.span().start, "balloon.hint")?;
        hints.push(g);
        if hs.touch_after {
            plan.touches.push(g);
        }
    }
    plan.hints = hints.clone();
    let mut actions = Vec::new();
    for a in &s.guest.action {
        let (at, a) = (a.span().start, a.get_ref());
        let device = device_index(&a.device, at, "guest.action")?;
        let dev = &source.devices[device];
        let addr = BlockIndex(a.block)
            .offset(dev.block_size())
            .and_then(|o| dev.addr().checked_add(o))
            .ok_or_else(|| l.invalid(at, "guest.action.block", format!("block {} is beyond any address", a.block)))?;
        let req = match a.op {
            OpSpec::Plug => Request::Plug { addr, nb_blocks: a.count },
            OpSpec::Unplug => Request::Unplug { addr, nb_blocks: a.count },
            OpSpec::UnplugAll => Request::UnplugAll,
            OpSpec::State => Request::State { addr, nb_blocks: a.count },
        };
        actions.push((a.at_us, device, req));
    }
    let mut resizes = Vec::new();
    for r in &s.manager.resize {
        let (at, r) = (r.span().start, r.get_ref());
        let device = device_index(&r.device, at, "manager.resize")?;
        resizes.push((r.at_us, device, r.requested));
    }
    let drains = s.faults.drain.iter().map(|d| (d.get_ref().at, d.get_ref().bytes)).collect();
    if !s.destination.prealloc_strategy.graceful() {
        return Err(l.invalid(
            0,
            "destination.prealloc_strategy",
            "touch cannot fail gracefully without QEMU's SIGBUS handler: use qemu, per-block, parallel or fallocate",
        ));
    }
    if bandwidth == 0 {
        return Err(l.invalid(0, "migration.bandwidth", "the bandwidth must be more than zero"));
    }
    Ok(Built {
        source_qemu,
        destination_qemu,
        source,
        source_memory: src_cfg.memory.clone(),
        destination: dst_cfg,
        plan,
        hints,
        actions,
        resizes,
        init_on_free: s.guest.init_on_free,
        drains,
        cancel_at: s.faults.cancel_at_us,
        bandwidth,
        prealloc_strategy: s.destination.prealloc_strategy,
        seed: s.seed,
    })
}

/// Both sides' QEMU releases: `vmm = "qemu-X"` names both, `source.qemu` and
/// `destination.qemu` each side. Cloud Hypervisor and Firecracker names parse (their releases
/// are checked); their rules run in `profile_run`, through `vmemsim diff`: refused here.
fn qemu_versions(l: &Loaded) -> Result<(QemuProfile, QemuProfile), SimError> {
    let s = &l.scenario;
    let vmm_qemu = s.vmm.as_ref().map(|v| (v.span().start, v.get_ref().qemu()));
    if let Some((at, None)) = vmm_qemu {
        let name = s.vmm.as_ref().map(|v| *v.get_ref()).unwrap_or_default();
        return Err(l.invalid(at, "vmm", format!("run, check and replay use QEMU's engine: compare the {name} profile with `vmemsim diff FILE --vmm {name}`, or write vmm = \"qemu-X.Y.Z\" or leave vmm out")));
    }
    if let Some((at, _)) = vmm_qemu {
        for (given, field) in [(s.source.qemu.is_some(), "source.qemu"), (s.destination.qemu.is_some(), "destination.qemu")] {
            if given {
                return Err(l.invalid(at, field, format!("vmm already names the QEMU release of both sides: give vmm or {field}, not both")));
            }
        }
    }
    let source = vmm_qemu.and_then(|(_, q)| q).or(s.source.qemu).unwrap_or_default();
    let destination = vmm_qemu.and_then(|(_, q)| q).or(s.destination.qemu).or(s.source.qemu).unwrap_or_default();
    Ok((QemuProfile::of(source), QemuProfile::of(destination)))
}

/// A range must be 4K-aligned, inside the region, and plugged on the source (the guest only
/// uses plugged memory).
fn guest_range(l: &Loaded, dev: &vmemsim_model::VirtioMem, device: usize, offset: Bytes, len: Bytes, at: usize, field: &str) -> Result<GuestRange, SimError> {
    let page = Bytes(4096);
    if len.is_zero() || !offset.is_multiple_of(page) || !len.is_multiple_of(page) {
        return Err(l.invalid(at, field, "offset and len must be non-zero multiples of 4K (the target page size)"));
    }
    let end = offset.checked_add(len).filter(|e| *e <= dev.region_size());
    let Some(end) = end else {
        return Err(l.invalid(at, field, format!("{}+{} lies beyond the region of {} ({})", offset, len, dev.id(), dev.region_size())));
    };
    if !dev.bytes_plugged(offset, end.checked_sub(offset).expect("end follows offset")) {
        return Err(l.invalid(at, field, format!("{}+{} is not wholly plugged on {}: the guest only uses plugged memory", offset, len, dev.id())));
    }
    Ok(GuestRange { device, offset, len })
}

/// The guest driver plugs what the scenario says, before migration starts.
fn plug_source(l: &Loaded, source: &mut Vm) -> Result<(), SimError> {
    for (i, spanned) in l.scenario.devices.iter().enumerate() {
        let d = spanned.get_ref();
        let at = spanned.span().start;
        let resp = match (&d.plugged_blocks, d.plugged) {
            (Some(_), Some(_)) => return Err(l.invalid(at, "device.plugged", "give either plugged or plugged_blocks, not both")),
            (Some(runs), None) => {
                let mut bad = None;
                let nblocks = source.devices[i].region_size().blocks(source.devices[i].block_size()).0;
                for [first, count] in runs {
                    if first.checked_add(*count).is_none_or(|end| end > nblocks) {
                        let why = format!("run [{first}, {count}] of {} does not fit the region's {nblocks} blocks", d.id);
                        return Err(l.invalid(at, "device.plugged_blocks", why));
                    }
                    if let Some(r) = source.guest_plug(i, BlockIndex(*first), BlockCount(*count), false) {
                        bad = Some(r);
                        break;
                    }
                }
                bad
            }
            (None, size) => {
                let region = source.devices[i].region_size();
                match size {
                    Some(p) if p > region => return Err(l.invalid(l.key_at(at, "plugged"), "device.plugged", format!("plugged {p} is larger than the region {region} of {}: the guest can plug at most the region", d.id))),
                    // QEMU realizes it (virtio_mem_device_realize clamps the usable region to
                    // the region), but the guest can never plug what the scenario defaults to.
                    None if d.requested > region => {
                        let why = format!("requested {} is larger than the region {region} of {}: QEMU accepts it, but the guest can plug at most the region; give plugged = \"{region}\" or less, or a region of at least {}", d.requested, d.id, d.requested);
                        return Err(l.invalid(l.key_at(at, "requested"), "device.requested", why));
                    }
                    _ => {}
                }
                let size = size.unwrap_or(d.requested);
                let bs = source.devices[i].block_size();
                if !size.is_multiple_of(bs) {
                    return Err(l.invalid(at, "device.plugged", format!("{size} is not a multiple of the block size {bs}")));
                }
                source.guest_plug_size(i, size, false)
            }
        };
        if let Some(resp) = resp {
            let why = match resp {
                Response::Nack => "more than the requested size",
                Response::Error => "outside the usable region or already plugged",
                Response::Busy => "the source could not preallocate it",
                _ => "refused",
            };
            return Err(l.invalid(at, "device.plugged", format!("the guest's PLUG on {} was answered {resp}: {why}", d.id)));
        }
    }
    Ok(())
}

impl Built {
    /// The destination's RAM blocks: (kind, block name, page size).
    pub fn destination_blocks(&self) -> Vec<(vmemsim_model::BackendKind, String, vmemsim_model::Bytes)> {
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
