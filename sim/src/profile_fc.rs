//! A scenario on Firecracker: the VM is paused, snapshotted and restored (Firecracker has no
//! live migration), and every guest action waits for the restored guest.

use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::vmm::firecracker::Firecracker;
use vmemsim_model::vmm::mem_state::DeviceRules;
use vmemsim_model::vmm::other_migration::firecracker_restore;
use vmemsim_model::vmm::{Tag, Vmm};
use vmemsim_model::{BackendKind, Bytes, Mode, ModelMemory, Outcome};

use crate::build::Built;
use crate::profile_run::{devices_from_source, events, ProfileRun, RefusalKind, Refused, Side};

pub(crate) fn firecracker_run(b: &Built, tag: Tag) -> Result<ProfileRun, Refused> {
    let rules = Firecracker { tag };
    if matches!(b.plan.mode, Mode::Postcopy { .. }) {
        return Err(Refused::new(RefusalKind::Postcopy, "firecracker has no live migration; a postcopy-like move is a snapshot restore with a UFFD handler, and that handler (the user's program) places the pages: not modelled"));
    }
    if b.cancel_at.is_some() {
        return Err(Refused::new(RefusalKind::Cancel, "firecracker has no migration to cancel (snapshot and restore)"));
    }
    let mut notes = vec!["firecracker moves a VM by pause, snapshot and restore from a file: the source stays paused until it is resumed or discarded".to_string()];
    let mut huge = false;
    for bl in &b.destination_blocks() {
        match bl.0 {
            BackendKind::PrivateAnonymous => {}
            BackendKind::Memfd | BackendKind::SharedAnonymous => notes.push(format!("{}: shared memory is firecracker's memfd (for vhost-user); a restore maps the snapshot file privately", bl.1)),
            BackendKind::Hugetlbfs | BackendKind::MemfdHugetlb if bl.2 == Bytes::mib(2) => huge = true,
            k => return Err(Refused::new(RefusalKind::MemoryKind, format!("{}: firecracker's guest memory is anonymous, memfd or 2 MiB huge pages (HugePageConfig); {} with {} pages has no counterpart", bl.1, k.name(), bl.2))),
        }
    }
    for d in &b.source.devices {
        Firecracker::check_config(d.region_size(), d.block_size()).map_err(|e| Refused::new(if e.starts_with("Block") { RefusalKind::BlockSize } else { RefusalKind::RegionSize }, format!("device {}: {e}", d.id())))?;
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

