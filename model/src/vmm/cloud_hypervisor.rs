//! Cloud Hypervisor's virtio-mem device and its precopy migration, read in
//! cloud-hypervisor/cloud-hypervisor at the tags v48.0, v52.0 and v53.0 (files and functions
//! cited per rule; line numbers are v53.0's). What changes between the tags:
//! - v52.0 (6a1fe123c, 97e16f249): a chain that does not parse is returned empty and an unknown
//!   request type is answered ERROR; before, either ends the device's worker thread.
//! - v53.0 (796fc055b): migration runs in its own thread and `vm_resize` answers `VmMigrating`
//!   while it runs; before, the control loop was busy in `send_migration` and the resize was
//!   handled after it [INF: read from the loop's structure, not run].
//! - v53.0 (8d0540779): the zone option `reserve=on` maps without MAP_NORESERVE.
//! - v53.0 (0d82d1643 and the commits after it): postcopy (not modelled yet).

use crate::host::{HostMemory, RamBlockId};
use crate::request::{Request, Response};
use crate::units::{Bytes, Gpa};
use crate::vmm::mem_state::{Answer, DeviceRules, Malformed, MemState};
use crate::vmm::Tag;

/// `VIRTIO_MEM_DEFAULT_BLOCK_SIZE` (virtio-devices/src/mem.rs): the only block size.
pub const BLOCK_SIZE: Bytes = Bytes::mib(2);
/// `VIRTIO_MEM_ALIGN_SIZE`: the region's start and size alignment.
pub const ALIGN_SIZE: Bytes = Bytes::mib(128);

/// One Cloud Hypervisor release.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CloudHypervisor {
    pub tag: Tag,
}

impl CloudHypervisor {
    /// 6a1fe123c, 97e16f249: parse errors and unknown types no longer end the worker.
    fn answers_malformed(&self) -> bool {
        self.tag >= Tag::new(52, 0, 0)
    }

    /// 796fc055b: `vm_resize` refuses with `VmMigrating` while a migration runs.
    pub fn refuses_resize_while_migrating(&self) -> bool {
        self.tag >= Tag::new(53, 0, 0)
    }

    /// 8d0540779: `MemoryZoneConfig::reserve` exists (default off).
    pub fn has_reserve(&self) -> bool {
        self.tag >= Tag::new(53, 0, 0)
    }

    /// `Mem::new` (mem.rs l.785): `usable_region_size: region.len()`, never changed after.
    pub fn new_device(addr: Gpa, region_size: Bytes, requested_size: Bytes) -> MemState {
        MemState::new(addr, region_size, BLOCK_SIZE, region_size, requested_size)
    }

    /// `VirtioMemConfig::is_valid_range` (l.248): no overflow, start block-aligned, size not
    /// zero, inside [addr, addr + usable_region_size).
    fn is_valid_range(dev: &MemState, addr: Gpa, size: Bytes) -> bool {
        let Some(end) = addr.checked_add(size) else { return false };
        let usable_end = dev.addr.checked_add(dev.usable_region_size).expect("the region fits the address space");
        addr.0.is_multiple_of(dev.block_size.0) && !size.is_zero() && addr >= dev.addr && end <= usable_end
    }

    /// `MemEpollHandler::state_change_request` (l.497): NACK beyond the requested size before
    /// any range check (plug only); ERROR for a bad range or a block in the wrong state; an
    /// unplug discards first (ERROR when that fails, nothing changed); then the bitmap is set
    /// and `plugged_size` follows. No preallocation: a plug populates nothing.
    fn state_change_request(dev: &mut MemState, addr: Gpa, nb_blocks: u16, plug: bool, host: &mut dyn HostMemory, rb: RamBlockId) -> Response {
        let size = dev.len_of(nb_blocks);
        if plug && dev.plugged_size.checked_add(size).is_none_or(|s| s > dev.requested_size) {
            return Response::Nack;
        }
        if !Self::is_valid_range(dev, addr, size) {
            return Response::Error;
        }
        let (offset, run) = dev.run_of(addr, nb_blocks);
        if !dev.all(run, !plug) {
            return Response::Error;
        }
        // `discard_memory_range` (l.428): PUNCH_HOLE for an fd, MADV_DONTNEED unless hugepages.
        if !plug && host.discard(rb, offset, size).is_err() {
            return Response::Error;
        }
        // The per-block DMA `map()` / `unmap()` between the bitmap change and the size change
        // (VFIO only) is not modelled: it is the one step whose failure leaves them apart.
        dev.set(run, plug);
        // `config.plugged_size += size` / `-= size`: u64 arithmetic of a release build, which
        // wraps (the bitmap check above keeps it from doing so while the two agree).
        dev.plugged_size = Bytes(if plug { dev.plugged_size.0.wrapping_add(size.0) } else { dev.plugged_size.0.wrapping_sub(size.0) });
        Response::Ack
    }

    /// `MemEpollHandler::unplug_all` (l.561): discard the whole region (ERROR on failure),
    /// clear the bitmap, `plugged_size = 0`; the usable region stays as it is.
    fn unplug_all(dev: &mut MemState, host: &mut dyn HostMemory, rb: RamBlockId) -> Response {
        if host.discard(rb, Bytes::ZERO, dev.region_size).is_err() {
            return Response::Error;
        }
        dev.plug.clear();
        dev.plugged_size = Bytes::ZERO;
        Response::Ack
    }

    /// `MemEpollHandler::state_request` (l.598): ERROR for a bad range, else ACK and the state.
    fn state_request(dev: &MemState, addr: Gpa, nb_blocks: u16) -> Response {
        if !Self::is_valid_range(dev, addr, dev.len_of(nb_blocks)) {
            return Response::Error;
        }
        Response::AckState(dev.range_state(dev.run_of(addr, nb_blocks).1))
    }
}

impl DeviceRules for CloudHypervisor {
    /// `MemEpollHandler::process_queue` (l.634): the four request types; BUSY is never sent
    /// (`VIRTIO_MEM_RESP_BUSY` is dead code) and guest requests are served during migration.
    fn handle(&self, dev: &mut MemState, req: Request, host: &mut dyn HostMemory, rb: RamBlockId) -> Response {
        match req {
            Request::Plug { addr, nb_blocks } => Self::state_change_request(dev, addr, nb_blocks, true, host, rb),
            Request::Unplug { addr, nb_blocks } => Self::state_change_request(dev, addr, nb_blocks, false, host, rb),
            Request::UnplugAll => Self::unplug_all(dev, host, rb),
            Request::State { addr, nb_blocks } => Self::state_request(dev, addr, nb_blocks),
        }
    }

    /// `process_queue`: from v52.0 a parse error returns the chain with length 0 and an unknown
    /// type is answered ERROR; before, both propagate out of `handle_event`, and
    /// `EpollHelper::run` (epoll_helper.rs) ends the device's thread with that error.
    fn malformed(&self, m: Malformed) -> Answer {
        match (self.answers_malformed(), m) {
            (false, _) => Answer::DeviceStopped,
            (true, Malformed::BadDescriptor) => Answer::ReturnedEmpty,
            (true, Malformed::UnknownType(_)) => Answer::Respond(Response::Error),
        }
    }

    /// `VirtioMemConfig::resize` (l.224): the same size, beyond the region or unaligned are
    /// refused; the usable region does not change. `Vmm::vm_resize` refuses first while a
    /// migration runs (v53.0).
    fn set_requested_size(&self, dev: &mut MemState, size: Bytes, migrating: bool) -> Result<(), String> {
        if migrating && self.refuses_resize_while_migrating() {
            return Err("VmMigrating: the VM is being migrated".into());
        }
        if dev.requested_size == size {
            return Err(format!("new size 0x{:x} and requested_size are identical", size.0));
        }
        if size > dev.region_size {
            return Err(format!("new size 0x{:x} is bigger than region_size 0x{:x}", size.0, dev.region_size.0));
        }
        if !size.is_multiple_of(dev.block_size) {
            return Err(format!("new size 0x{:x} is not aligned on block_size 0x{:x}", size.0, dev.block_size.0));
        }
        dev.requested_size = size;
        Ok(())
    }
}
