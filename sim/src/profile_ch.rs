//! A scenario on Cloud Hypervisor: guest actions and resizes before the end of the memory
//! copy happen on the source (Cloud Hypervisor serves guest requests during migration); the
//! destination then receives memory and state, and later actions run there.

use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::vmm::cloud_hypervisor::{self, CloudHypervisor};
use vmemsim_model::vmm::other_migration::{cloud_hypervisor_receive, Range, Zone};
use vmemsim_model::vmm::{Tag, Vmm};
use vmemsim_model::{Bytes, HostMemory, Mode, Outcome, Stage, Vm};

use crate::build::Built;
use crate::load::Loaded;
use crate::profile_run::{devices_from_source, events, ProfileRun, RefusalKind, Refused, Side};

pub(crate) fn cloud_hypervisor_run(l: &Loaded, b: &Built, tag: Tag) -> Result<ProfileRun, Refused> {
    let rules = CloudHypervisor { tag };
    if matches!(b.plan.mode, Mode::Postcopy { .. }) {
        return Err(Refused::new(RefusalKind::Postcopy, if tag < Tag::new(53, 0, 0) {
            format!("cloud-hypervisor-{tag} has no postcopy (it arrived in v53.0)")
        } else {
            format!("postcopy on cloud-hypervisor-{tag} (send_migration's fault-serving thread, vm_receive_state_command) is not modelled yet; precopy is")
        }));
    }
    if b.cancel_at.is_some() {
        return Err(Refused::new(RefusalKind::Cancel, "a cancelled migration and its retry are QEMU's migrate_cancel; cloud-hypervisor's cancel is not modelled"));
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
        Err(vmemsim_model::ModelError::Map { errno, .. }) => {
            // `create_ram_region_raw`: the mmap fails (`Error::GuestMemoryRegion`).
            let outcome = Outcome::Failed { stage: Stage::Startup, lines: vec!["Error creating MemoryManager from snapshot".into(), format!("Error from region creation: {errno}")] };
            return Ok(judge_ch(tag, outcome, notes, Vec::new()));
        }
        Err(e) => return Err(Refused::new(RefusalKind::MemoryLayout, format!("the destination's memory cannot be laid out: {e}"))),
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

