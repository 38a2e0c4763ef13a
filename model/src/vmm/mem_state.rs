//! What a non-QEMU virtio-mem device keeps (its `virtio_mem_config` fields and a block
//! bitmap), what it does with a descriptor chain it cannot parse, and the rules each profile
//! answers requests by. QEMU's own device is [`crate::device::VirtioMem`].

use crate::host::{HostMemory, RamBlockId};
use crate::plug_map::{BlockRun, PlugMap};
use crate::request::{BlockState, Request, Response};
use crate::units::{BlockCount, BlockIndex, Bytes, Gpa};

/// One device's plug state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemState {
    pub addr: Gpa,
    pub region_size: Bytes,
    pub block_size: Bytes,
    pub usable_region_size: Bytes,
    pub requested_size: Bytes,
    pub plugged_size: Bytes,
    pub plug: PlugMap,
}

impl MemState {
    /// A device with nothing plugged. `block_size` divides `region_size` (the builders check).
    pub fn new(addr: Gpa, region_size: Bytes, block_size: Bytes, usable_region_size: Bytes, requested_size: Bytes) -> MemState {
        MemState { addr, region_size, block_size, usable_region_size, requested_size, plugged_size: Bytes::ZERO, plug: PlugMap::new(region_size.blocks(block_size)) }
    }

    /// The bytes `nb_blocks` blocks cover.
    pub fn len_of(&self, nb_blocks: u16) -> Bytes {
        BlockCount(u64::from(nb_blocks)).bytes(self.block_size).expect("65535 blocks of a region's block size fit in u64")
    }

    /// The byte offset and the blocks of a request that lies inside the region; the caller's
    /// own range check has already run.
    pub fn run_of(&self, addr: Gpa, nb_blocks: u16) -> (Bytes, BlockRun) {
        let offset = addr.offset_from(self.addr).expect("a checked range starts in the region");
        (offset, BlockRun { first: BlockIndex(offset.0 / self.block_size.0), count: BlockCount(u64::from(nb_blocks)) })
    }

    /// Whether every block of the run is in `plugged` state.
    pub fn all(&self, run: BlockRun, plugged: bool) -> bool {
        self.plug.all(run, plugged)
    }

    /// PLUGGED, UNPLUGGED or MIXED for a run inside the region.
    pub fn range_state(&self, run: BlockRun) -> BlockState {
        if self.all(run, true) {
            BlockState::Plugged
        } else if self.all(run, false) {
            BlockState::Unplugged
        } else {
            BlockState::Mixed
        }
    }

    /// Sets the run's blocks in the bitmap; `plugged_size` is the profile's to keep.
    pub fn set(&mut self, run: BlockRun, plugged: bool) {
        self.plug.set(run, plugged);
    }

    /// `plugged_size` counted from the bitmap (a device restored from the scenario's state).
    pub fn recount(&mut self) {
        self.plugged_size = self.plug.plugged_blocks().bytes(self.block_size).expect("the region's size fits in u64");
    }

    /// The byte runs (offset, length) of the plugged blocks, in address order.
    pub fn plugged_byte_runs(&self) -> Vec<(Bytes, Bytes)> {
        let bs = self.block_size;
        self.plug.plugged_runs().map(|r| (r.first.offset(bs).expect("in the region"), r.count.bytes(bs).expect("in the region"))).collect()
    }

    /// The plugged size agrees with the bitmap (a property every profile is checked against).
    pub fn consistent(&self) -> bool {
        self.plug.plugged_blocks().bytes(self.block_size) == Some(self.plugged_size) && self.plugged_size <= self.region_size
    }
}

/// A descriptor chain a device cannot read as a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// A request type beyond STATE.
    UnknownType(u16),
    /// A chain too short, a request descriptor of the wrong size or direction, or a status
    /// buffer too small.
    BadDescriptor,
}

/// What a device does with one chain.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// A response is written and the chain returned.
    Respond(Response),
    /// The chain is returned with a used length of 0: no response is written.
    ReturnedEmpty,
    /// The queue handler returns an error: this chain and the ones behind it wait until the
    /// guest notifies the queue again, and earlier answers of the same batch are not signalled.
    QueueStalled,
    /// The device's worker thread ends: no later request is answered until the VM restarts.
    DeviceStopped,
}

/// A profile's request handling. `host`/`rb` are the memory behind the device's region.
pub trait DeviceRules {
    /// One well-formed request.
    fn handle(&self, dev: &mut MemState, req: Request, host: &mut dyn HostMemory, rb: RamBlockId) -> Response;
    /// A chain that does not parse.
    fn malformed(&self, m: Malformed) -> Answer;
    /// The host changes `requested-size`; `migrating` is an outgoing migration in progress.
    /// The error is the VMM's own message.
    fn set_requested_size(&self, dev: &mut MemState, size: Bytes, migrating: bool) -> Result<(), String>;
}
