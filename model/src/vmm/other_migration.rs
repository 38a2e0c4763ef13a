//! How the destination of Cloud Hypervisor's precopy migration and of Firecracker's snapshot
//! restore fills its memory, in the order each VMM's code does it. The memory itself (the
//! mappings, their limits and `reserve`) is the caller's [`HostMemory`]; a mapping refused at
//! creation is reported by the caller before this runs.

use crate::host::{HostMemory, PageKind, RamBlockId};
use crate::migration::outcome::{FaultSite, Outcome, Stage};
use crate::units::Bytes;

/// One guest memory mapping on the destination: boot RAM or a virtio-mem region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub rb: RamBlockId,
    pub len: Bytes,
    /// The zone's `prefault=on`.
    pub prefault: bool,
    /// For a virtio-mem region, the (offset, length) runs it leaves unplugged.
    pub unplugged: Vec<(Bytes, Bytes)>,
}

/// A run of bytes the source sends: (zone index, offset, length).
pub type Range = (usize, Bytes, Bytes);

/// Cloud Hypervisor's incoming precopy migration (vmm/src/lib.rs): `vm_receive_config` builds
/// the `MemoryManager`, whose `create_ram_region_raw` (memory_manager.rs l.2023) prefaults a
/// zone with `prefault=on` by MADV_POPULATE_WRITE over the whole mapping (a failure ends the
/// receive with "Failed to prefault memory"); then the memory commands write every range of
/// `MemoryManager::memory_range_table` (boot RAM whole, the virtio-mem zones' plugged ranges)
/// into the mappings, where a page the backend cannot provide is a SIGBUS; then
/// `vm_receive_state` restores the devices and `Mem::activate` (virtio-devices/src/mem.rs
/// l.946) discards every unplugged range again; `Command::Complete` resumes the guest.
pub fn cloud_hypervisor_receive(host: &mut dyn HostMemory, zones: &[Zone], sent: &[Range]) -> Outcome {
    for z in zones.iter().filter(|z| z.prefault) {
        if let Err(e) = host.populate(z.rb, Bytes::ZERO, z.len) {
            return Outcome::Failed {
                stage: Stage::Startup,
                // The error chain `vm_receive_config` returns (its context, then the source).
                lines: vec!["Error creating MemoryManager from snapshot".into(), format!("Failed to prefault memory: {}", e.errno), format!("(zone '{}', first page that failed at offset {:#x})", z.name, e.offset.0)],
            };
        }
    }
    for &(zi, offset, len) in sent {
        let z = &zones[zi];
        if let Err(s) = host.load(z.rb, offset, len, PageKind::Normal) {
            return Outcome::Crashed { stage: Stage::RamLoad, site: FaultSite { block: z.name.clone(), offset: s.offset }, lines: vec!["killed by SIGBUS while reading guest memory from the migration socket".into()] };
        }
    }
    let mut lines = Vec::new();
    for z in zones {
        for &(off, len) in &z.unplugged {
            if let Err(e) = host.discard(z.rb, off, len) {
                lines.push(format!("failed discarding memory range [{:#x}-{:#x}]: {}", off.0, off.0 + len.0, e.errno));
            }
        }
    }
    Outcome::Completed { lines }
}

/// Firecracker's restore from a snapshot file (src/vmm/src/persist.rs): a huge-page VM is
/// refused (`GuestMemoryFromFileError::HugetlbfsSnapshot`, l.445); otherwise
/// `memory::snapshot_file` (vstate/memory.rs l.578) maps the memory file MAP_PRIVATE, so a page
/// comes from the page cache when read and from anonymous copy-on-write memory when written:
/// the destination's backend and its limits are not used [INF: a memory cgroup would be].
pub fn firecracker_restore(huge_pages: bool) -> Outcome {
    if huge_pages {
        return Outcome::Failed {
            stage: Stage::Startup,
            lines: vec!["Failed to load guest memory: Error creating guest memory from file: Cannot restore hugetlbfs backed snapshot by mapping the memory file. Please use uffd.".into()],
        };
    }
    Outcome::Completed { lines: Vec::new() }
}
