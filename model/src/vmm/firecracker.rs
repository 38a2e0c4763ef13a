//! Firecracker's virtio-mem device and its snapshot restore, read in
//! firecracker-microvm/firecracker at v1.14.0 and v1.16.1 (src/vmm/src/devices/virtio/mem/
//! device.rs; line numbers are v1.16.1's). The device's request handling is the same in every
//! release since virtio-mem arrived in v1.14.0 (`git diff v1.14.0 v1.16.1` changes names and
//! types only). Firecracker has no live migration: a VM moves by pause, snapshot and restore.

use crate::host::{HostMemory, RamBlockId};
use crate::request::{Request, Response};
use crate::units::{Bytes, Gpa};
use crate::vmm::mem_state::{Answer, DeviceRules, Malformed, MemState};
use crate::vmm::Tag;

/// `VIRTIO_MEM_DEFAULT_BLOCK_SIZE_MIB`: the smallest block size.
pub const MIN_BLOCK_SIZE: Bytes = Bytes::mib(2);
/// `VIRTIO_MEM_DEFAULT_SLOT_SIZE_MIB`: the KVM memory slot size (and the smallest).
pub const SLOT_SIZE: Bytes = Bytes::mib(128);

/// One Firecracker release.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Firecracker {
    pub tag: Tag,
}

impl Firecracker {
    /// `VirtioMem::new` (l.120): `requested_size` and `usable_region_size` start at 0 (the
    /// config's `Default`); the API sets the requested size once the device is active.
    pub fn new_device(addr: Gpa, region_size: Bytes, block_size: Bytes) -> MemState {
        MemState::new(addr, region_size, block_size, Bytes::ZERO, Bytes::ZERO)
    }

    /// `MemoryHotplugConfig::validate` (vmm_config/memory_hotplug.rs): block size at least
    /// 2 MiB and a power of two; the region a multiple of the 128 MiB slot, at least one slot.
    pub fn check_config(region_size: Bytes, block_size: Bytes) -> Result<(), String> {
        if block_size < MIN_BLOCK_SIZE {
            return Err(format!("BlockSizeTooSmall: the block size must be at least {} MiB", MIN_BLOCK_SIZE.0 >> 20));
        }
        if !block_size.is_power_of_two() {
            return Err("BlockSizeNotPowerOfTwo: the block size must be a power of two".into());
        }
        if region_size < SLOT_SIZE || !region_size.is_multiple_of(SLOT_SIZE) {
            return Err(format!("TotalSizeNotMultipleOfSlotSize: total_size_mib must be a multiple of the slot size ({} MiB)", SLOT_SIZE.0 >> 20));
        }
        Ok(())
    }

    /// `VirtioMem::validate_range` (l.292): start block-aligned, at least one block, start and
    /// end inside the usable region.
    fn validate_range(dev: &MemState, addr: Gpa, nb_blocks: u16) -> bool {
        let Some(start) = addr.offset_from(dev.addr) else { return false };
        addr.0.is_multiple_of(dev.block_size.0) && nb_blocks != 0 && start < dev.usable_region_size && start.checked_add(dev.len_of(nb_blocks)).is_some_and(|e| e <= dev.usable_region_size)
    }

    /// `VirtioMem::update_range` (l.532): the bitmap and `plugged_size` change first; an
    /// unplug then discards, and a failed discard is only logged (`unplug_discard_fails`);
    /// `update_kvm_slots` follows (its ioctl failing is not modelled).
    fn update_range(dev: &mut MemState, offset: Bytes, len: Bytes, run: crate::plug_map::BlockRun, plug: bool, host: &mut dyn HostMemory, rb: RamBlockId) {
        // `plugged_size` loses the run's plugged blocks before and gains them after the fill.
        let before = dev.plug.count_in(run, true);
        dev.set(run, plug);
        let after = dev.plug.count_in(run, true);
        let bytes = |n: crate::units::BlockCount| n.bytes(dev.block_size).expect("inside the region");
        dev.plugged_size = dev.plugged_size.checked_sub(bytes(before)).and_then(|s| s.checked_add(bytes(after))).expect("the run's blocks were counted in plugged_size");
        if !plug {
            // `GuestRegionMmapExt::discard_range` (vstate/memory.rs l.398): MADV_DONTNEED, or an
            // anonymous mapping over the range for a private file mapping.
            let _ = host.discard(rb, offset, len);
        }
    }

    /// `process_plug_request` (l.328): ERROR for a bad range, ERROR (`PlugRequestIsTooBig`)
    /// beyond the requested size, ERROR unless every block is unplugged; no population.
    fn plug(dev: &mut MemState, addr: Gpa, nb_blocks: u16, host: &mut dyn HostMemory, rb: RamBlockId) -> Response {
        if !Self::validate_range(dev, addr, nb_blocks) {
            return Response::Error;
        }
        let len = dev.len_of(nb_blocks);
        if dev.plugged_size.checked_add(len).is_none_or(|s| s > dev.requested_size) {
            return Response::Error;
        }
        let (offset, run) = dev.run_of(addr, nb_blocks);
        if !dev.all(run, false) {
            return Response::Error;
        }
        Self::update_range(dev, offset, len, run, true, host, rb);
        Response::Ack
    }

    /// `process_unplug_request` (l.369): ERROR for a bad range or a block not plugged.
    fn unplug(dev: &mut MemState, addr: Gpa, nb_blocks: u16, host: &mut dyn HostMemory, rb: RamBlockId) -> Response {
        if !Self::validate_range(dev, addr, nb_blocks) {
            return Response::Error;
        }
        let (offset, run) = dev.run_of(addr, nb_blocks);
        if !dev.all(run, true) {
            return Response::Error;
        }
        Self::update_range(dev, offset, dev.len_of(nb_blocks), run, false, host, rb);
        Response::Ack
    }

    /// `handle_unplug_all_request` (l.403): the whole region is unplugged and
    /// `usable_region_size = 0`, until `update_requested_size` grows it again.
    fn unplug_all(dev: &mut MemState, host: &mut dyn HostMemory, rb: RamBlockId) -> Response {
        let all = crate::plug_map::BlockRun { first: crate::units::BlockIndex(0), count: dev.plug.len() };
        Self::update_range(dev, Bytes::ZERO, dev.region_size, all, false, host, rb);
        dev.usable_region_size = Bytes::ZERO;
        Response::Ack
    }
}

impl DeviceRules for Firecracker {
    /// `process_mem_queue` (l.448): every answer is ACK or ERROR (`Response::ack`,
    /// `ack_with_state`, `error` in mem/request.rs); no BUSY, and snapshots need a paused VM.
    fn handle(&self, dev: &mut MemState, req: Request, host: &mut dyn HostMemory, rb: RamBlockId) -> Response {
        match req {
            Request::Plug { addr, nb_blocks } => Self::plug(dev, addr, nb_blocks, host, rb),
            Request::Unplug { addr, nb_blocks } => Self::unplug(dev, addr, nb_blocks, host, rb),
            Request::UnplugAll => Self::unplug_all(dev, host, rb),
            // `handle_state_request` (l.428).
            Request::State { addr, nb_blocks } => {
                if !Self::validate_range(dev, addr, nb_blocks) {
                    return Response::Error;
                }
                Response::AckState(dev.range_state(dev.run_of(addr, nb_blocks).1))
            }
        }
    }

    /// `process_mem_queue`: `parse_request(..)?` and `Request::Unsupported` return `Err` before
    /// `advance_used_ring_idx` and `signal_used_queue`: the chain stays unanswered and the
    /// queue waits for the next notification.
    fn malformed(&self, _m: Malformed) -> Answer {
        Answer::QueueStalled
    }

    /// `update_requested_size` (l.558): aligned and within the region; the usable region grows
    /// to the requested size rounded up to the slot size when it is smaller, never shrinks.
    /// `migrating` cannot be true: there is no live migration.
    fn set_requested_size(&self, dev: &mut MemState, size: Bytes, _migrating: bool) -> Result<(), String> {
        if !size.is_multiple_of(dev.block_size) || size > dev.region_size {
            return Err(format!("InvalidSize: {} bytes is not a multiple of the block size or exceeds the region", size.0));
        }
        if dev.usable_region_size < size {
            dev.usable_region_size = size.align_up(SLOT_SIZE).expect("at most the region, which is a whole number of slots");
        }
        dev.requested_size = size;
        Ok(())
    }
}
