//! The reference table as a closed form: the outcome class a configuration must end in,
//! computed without stepping the migration (real-qemu.md's table, generalised). Used by the
//! `reference-table` property to cross-check the stepping model and to catch variants.

use vmemsim_model::backend::TARGET_PAGE_SIZE;
use vmemsim_model::ranges::RangeSet;
use vmemsim_model::config::Realized;
use vmemsim_model::{OutcomeClass, VmConfig};

use crate::build::Built;

fn aligned_total(set: &RangeSet, page: u64) -> u64 {
    let mut out = RangeSet::new();
    for (s, e) in set.iter() {
        out.insert(s - s % page, e.div_ceil(page) * page);
    }
    out.total()
}

/// The predicted class, or `None` when the table does not apply (postcopy, competitors,
/// cancellation, a guest that writes what it plugs after the restore, differing sides, a
/// destination QEMU without the machine type, mixed
/// per-device settings).
pub fn predict(b: &Built) -> Option<OutcomeClass> {
    if b.plan.is_postcopy() || !b.drains.is_empty() || b.cancel_at.is_some() || b.init_on_free {
        return None;
    }
    let src = &b.source;
    let dst = &b.destination;
    if src.machine != dst.machine || !dst.qemu.offers(&dst.machine) || src.devices.len() != dst.devices.len() {
        return None;
    }
    let dest = realized(dst)?;
    let mut early = None;
    let mut prealloc = None;
    for (s, d) in src.devices.iter().zip(&dest) {
        let same = s.addr() == d.config.memaddr
            && s.region_size() == d.config.region_size
            && s.block_size() == d.block_size
            && s.node() == d.config.node
            && s.config().early_migration == d.early_migration;
        if !same || *early.get_or_insert(d.early_migration) != d.early_migration {
            return None;
        }
        if *prealloc.get_or_insert(d.config.prealloc) != d.config.prealloc {
            return None;
        }
    }
    // The reference table knows one backend shared by every device.
    let backend = dst.memory.single_backend()?;
    let Some(cap) = backend.capacity.limit() else { return Some(OutcomeClass::Completed) };
    let page = backend.page_size.0.max(TARGET_PAGE_SIZE.0);
    let plugged_total: u64 = src.devices.iter().map(|d| d.size().0).sum();
    if early == Some(true) && prealloc == Some(true) {
        return Some(if cap.0 < plugged_total { OutcomeClass::Failed } else { OutcomeClass::Completed });
    }
    // No early preallocation: RAM load allocates what it writes (and, except on private
    // anonymous memory, what it reads); the guest's touches allocate the rest at run time.
    let (mut sent, mut touched) = (0u64, 0u64);
    for (i, d) in src.devices.iter().enumerate() {
        let mut load = RangeSet::new();
        if backend.kind.read_allocates() {
            for r in d.plugged_runs() {
                let (o, l) = d.run_bytes(r);
                load.insert(o.0, o.0 + l.0);
            }
        } else {
            for g in b.plan.data.iter().filter(|g| g.device == i) {
                load.insert(g.offset.0, g.offset.0 + g.len.0);
            }
        }
        for h in b.plan.hints.iter().filter(|h| h.device == i) {
            load.remove(h.offset.0, h.offset.0 + h.len.0);
        }
        sent += aligned_total(&load, page);
        for t in b.plan.touches.iter().filter(|t| t.device == i) {
            load.insert(t.offset.0, t.offset.0 + t.len.0);
        }
        touched += aligned_total(&load, page);
    }
    Some(if cap.0 < sent {
        OutcomeClass::Crashed
    } else if cap.0 < touched {
        OutcomeClass::RuntimeCrash
    } else {
        OutcomeClass::Completed
    })
}

/// The destination's devices as realize resolves them (defaults filled in), without building
/// the VM: `None` when QEMU would refuse one.
fn realized(cfg: &VmConfig) -> Option<Vec<Realized>> {
    cfg.devices.iter().map(|d| d.realize(&cfg.machine, &cfg.memory.memdev(&d.memdev)?.backend(), &cfg.facts).ok()).collect()
}

/// True when the destination preallocates on a new machine by its configuration (not by the
/// variant): the premise of properties 1 and 2.
pub fn new_machine_prealloc(b: &Built) -> bool {
    let Some(dest) = realized(&b.destination) else { return false };
    !dest.is_empty() && dest.iter().all(|d| d.config.prealloc && d.early_migration)
}
