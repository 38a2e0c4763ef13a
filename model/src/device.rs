//! The virtio-mem device's dynamic state (plug bitmap, plugged, requested and usable size) and
//! its answers to the guest's requests, in QEMU's check order (hw/virtio/virtio-mem.c).

use std::sync::Arc;

use crate::config::{Realized, USABLE_EXTENT};
use crate::error::ModelError;
use crate::host::{HostMemory, RamBlockId};
use crate::plug_map::{BlockRun, PlugMap};
use crate::request::{BlockState, Request, Response};
use crate::units::{BlockCount, BlockIndex, Bytes, Gpa};
use crate::variant::Variant;

/// One virtio-mem device of one QEMU process.
#[derive(Clone, Debug)]
pub struct VirtioMem {
    realized: Realized,
    ram_block: RamBlockId,
    /// `VirtIOMEM.bitmap`, shared copy-on-write with the streams that carry it.
    plug: Arc<PlugMap>,
    size: Bytes,
    requested_size: Bytes,
    usable_region_size: Bytes,
    warnings: Vec<String>,
    variant: Variant,
}

impl VirtioMem {
    /// A freshly realized device: nothing plugged (`bitmap_new`), usable region from the
    /// requested size (`virtio_mem_resize_usable_region(.., true)` in realize).
    pub fn new(realized: Realized, ram_block: RamBlockId, variant: Variant) -> VirtioMem {
        let nblocks = realized.config.region_size.blocks(realized.block_size);
        let requested = realized.config.requested_size;
        let plug = Arc::new(PlugMap::new(nblocks));
        let mut dev = VirtioMem {
            realized,
            ram_block,
            plug,
            size: Bytes::ZERO,
            requested_size: requested,
            usable_region_size: Bytes::ZERO,
            warnings: Vec::new(),
            variant,
        };
        dev.resize_usable_region(requested, true);
        dev
    }

    pub fn id(&self) -> &str {
        &self.realized.config.id
    }
    pub fn pci(&self) -> &str {
        &self.realized.config.pci
    }
    pub fn ram_block(&self) -> RamBlockId {
        self.ram_block
    }
    pub fn addr(&self) -> Gpa {
        self.realized.config.memaddr
    }
    pub fn region_size(&self) -> Bytes {
        self.realized.config.region_size
    }
    pub fn block_size(&self) -> Bytes {
        self.realized.block_size
    }
    pub fn node(&self) -> u32 {
        self.realized.config.node
    }
    pub fn prealloc(&self) -> bool {
        self.realized.config.prealloc
    }
    pub fn early_migration(&self) -> bool {
        self.realized.early_migration && self.variant != Variant::Pre80
    }
    pub fn size(&self) -> Bytes {
        self.size
    }
    pub fn requested_size(&self) -> Bytes {
        self.requested_size
    }
    pub fn usable_region_size(&self) -> Bytes {
        self.usable_region_size
    }
    /// The plug state (`VirtIOMEM.bitmap`).
    pub fn plug_map(&self) -> &Arc<PlugMap> {
        &self.plug
    }
    pub fn config(&self) -> &Realized {
        &self.realized
    }

    /// One line for people and traces: sizes, plugged runs and the migration-relevant flags.
    pub fn summary(&self) -> String {
        format!(
            "region {}, block {}, requested {}, plugged {} in {} run(s), prealloc={}, early-migration={}",
            self.region_size(),
            self.block_size(),
            self.requested_size(),
            self.size(),
            self.plug.plugged_runs().count(),
            self.prealloc(),
            self.early_migration()
        )
    }

    /// Warnings printed since the last call (`warn_report`).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The migration idstr of the early section.
    pub fn early_idstr(&self) -> String {
        format!("{}/virtio-mem-device-early", self.pci())
    }

    /// The migration idstr of the device's main (late) section.
    pub fn late_idstr(&self) -> String {
        format!("{}/virtio-mem", self.pci())
    }

    /// Maximal runs of plugged blocks (`virtio_mem_for_each_plugged_range`).
    pub fn plugged_runs(&self) -> Vec<BlockRun> {
        self.plug.plugged_runs().collect()
    }

    /// Maximal runs of unplugged blocks (`virtio_mem_for_each_unplugged_range`).
    pub fn unplugged_runs(&self) -> Vec<BlockRun> {
        self.plug.unplugged_runs()
    }

    /// The byte range of a run within the RAM block.
    pub fn run_bytes(&self, run: BlockRun) -> (Bytes, Bytes) {
        let bs = self.block_size();
        (run.first.offset(bs).expect("run inside region"), run.count.bytes(bs).expect("run inside region"))
    }

    /// The invariant QEMU maintains but never checks: plugged size == popcount × block size.
    pub fn check_invariant(&self) -> Result<(), String> {
        let want = self.plug.plugged_blocks().bytes(self.block_size());
        if want == Some(self.size) {
            Ok(())
        } else {
            Err(format!(
                "{}: plugged size {} but {} of {} are set in the bitmap",
                self.id(),
                self.size,
                self.plug.plugged_blocks(),
                self.block_size()
            ))
        }
    }

    fn assert_invariant(&self) {
        if self.variant != Variant::NoRollback {
            if let Err(e) = self.check_invariant() {
                panic!("invariant broken: {e}");
            }
        }
    }

    /// `virtio_mem_resize_usable_region`.
    fn resize_usable_region(&mut self, requested: Bytes, can_shrink: bool) {
        let bs = self.block_size();
        let grown = requested.checked_add(USABLE_EXTENT).unwrap_or(Bytes(u64::MAX));
        let mut newsize = self.region_size().min(grown).align_up(bs).expect("region is block aligned");
        if requested.is_zero() {
            newsize = Bytes::ZERO;
        }
        if newsize < self.usable_region_size && !can_shrink {
            return;
        }
        self.usable_region_size = newsize;
    }

    /// `virtio_mem_valid_range`.
    fn valid_range(&self, gpa: Gpa, size: Bytes) -> bool {
        if !Bytes(gpa.0).is_multiple_of(self.block_size()) {
            return false;
        }
        let Some(end) = gpa.checked_add(size) else { return false };
        if size.is_zero() {
            return false;
        }
        let usable_end = self.addr().checked_add(self.usable_region_size).expect("realize checked the region");
        gpa >= self.addr() && gpa < usable_end && end <= usable_end
    }

    fn block_span(&self, gpa: Gpa, size: Bytes) -> BlockRun {
        let bs = self.block_size();
        BlockRun { first: BlockIndex(gpa.offset_from(self.addr()).expect("valid range").blocks(bs).0), count: size.blocks(bs) }
    }

    /// `virtio_mem_is_range_plugged` / `virtio_mem_is_range_unplugged`.
    fn range_all(&self, gpa: Gpa, size: Bytes, plugged: bool) -> bool {
        self.plug.all(self.block_span(gpa, size), plugged)
    }

    /// True if every block that `[offset, offset + len)` of the region touches is plugged (a
    /// guest only uses plugged memory). The range must be non-empty and inside the region.
    pub fn bytes_plugged(&self, offset: Bytes, len: Bytes) -> bool {
        let bs = self.block_size().0;
        let end = offset.checked_add(len).filter(|e| !len.is_zero() && *e <= self.region_size()).expect("a non-empty range inside the region");
        let (first, last) = (offset.0 / bs, (end.0 - 1) / bs);
        self.plug.all(BlockRun { first: BlockIndex(first), count: BlockCount(last - first + 1) }, true)
    }

    /// `virtio_mem_handle_request`: one request, one response. `busy` is
    /// `virtio_mem_is_busy()`: an outgoing migration runs, or incoming postcopy is in
    /// [DISCARD, END).
    /// `warned` is the process's `static bool warned` of `virtio_mem_set_block_state`.
    pub fn handle(&mut self, req: Request, host: &mut dyn HostMemory, busy: bool, warned: &mut bool) -> Response {
        let resp = match req {
            Request::Plug { addr, nb_blocks } => self.state_change_request(addr, nb_blocks, true, host, busy, warned),
            Request::Unplug { addr, nb_blocks } => self.state_change_request(addr, nb_blocks, false, host, busy, warned),
            Request::UnplugAll => match self.unplug_all(host, busy) {
                Ok(()) => Response::Ack,
                Err(()) => Response::Busy,
            },
            Request::State { addr, nb_blocks } => self.state_request(addr, nb_blocks),
        };
        self.assert_invariant();
        resp
    }

    /// `virtio_mem_state_change_request`: ERROR (range), NACK (beyond requested, plug only),
    /// ERROR (not all in the opposite state), BUSY (`virtio_mem_set_block_state` failed), ACK.
    fn state_change_request(&mut self, gpa: Gpa, nb_blocks: u16, plug: bool, host: &mut dyn HostMemory, busy: bool, warned: &mut bool) -> Response {
        let Some(size) = BlockCount(nb_blocks as u64).bytes(self.block_size()) else {
            return Response::Error;
        };
        if !self.valid_range(gpa, size) {
            return Response::Error;
        }
        if plug && self.size.checked_add(size).is_none_or(|s| s > self.requested_size) {
            return Response::Nack;
        }
        if !self.range_all(gpa, size, !plug) {
            return Response::Error;
        }
        if self.set_block_state(gpa, size, plug, host, busy, warned).is_err() {
            return Response::Busy;
        }
        self.size = if plug {
            self.size.checked_add(size).expect("checked against requested size")
        } else {
            self.size.checked_sub(size).expect("unplugged blocks were plugged")
        };
        Response::Ack
    }

    /// `virtio_mem_set_block_state`: busy → EBUSY; unplug discards; plug preallocates when
    /// `prealloc`, and on failure discards the range again (the rollback) before EBUSY.
    fn set_block_state(&mut self, gpa: Gpa, size: Bytes, plug: bool, host: &mut dyn HostMemory, busy: bool, warned: &mut bool) -> Result<(), ()> {
        if busy && self.variant != Variant::PlugDuringMigration {
            return Err(());
        }
        let offset = gpa.offset_from(self.addr()).expect("valid range");
        let span = self.block_span(gpa, size);
        if !plug {
            host.discard(self.ram_block, offset, size).map_err(|_| ())?;
            Arc::make_mut(&mut self.plug).set(span, false);
            return Ok(());
        }
        if self.prealloc() {
            if let Err(e) = host.populate(self.ram_block, offset, size) {
                if !*warned {
                    self.warnings.push(format!("warning: qemu_prealloc_mem: preallocating memory failed: {}", e.errno));
                    *warned = true;
                }
                if self.variant == Variant::NoRollback {
                    // The bitmap is updated before the failing step and nothing is undone.
                    Arc::make_mut(&mut self.plug).set(span, true);
                    return Err(());
                }
                let _ = host.discard(self.ram_block, offset, size);
                return Err(());
            }
        }
        Arc::make_mut(&mut self.plug).set(span, true);
        Ok(())
    }

    /// `virtio_mem_unplug_all` (QEMU 8.1+, 836f657b6a): with nothing plugged only the usable
    /// region is recomputed, even while busy.
    fn unplug_all(&mut self, host: &mut dyn HostMemory, busy: bool) -> Result<(), ()> {
        if !self.size.is_zero() {
            if busy && self.variant != Variant::PlugDuringMigration {
                return Err(());
            }
            host.discard(self.ram_block, Bytes::ZERO, self.region_size()).map_err(|_| ())?;
            Arc::make_mut(&mut self.plug).clear();
            self.size = Bytes::ZERO;
        }
        self.resize_usable_region(self.requested_size, true);
        Ok(())
    }

    /// `virtio_mem_state_request`: ERROR for a bad range, else ACK with the state; never BUSY.
    fn state_request(&self, gpa: Gpa, nb_blocks: u16) -> Response {
        let Some(size) = BlockCount(nb_blocks as u64).bytes(self.block_size()) else {
            return Response::Error;
        };
        if !self.valid_range(gpa, size) {
            return Response::Error;
        }
        let state = if self.range_all(gpa, size, true) {
            BlockState::Plugged
        } else if self.range_all(gpa, size, false) {
            BlockState::Unplugged
        } else {
            BlockState::Mixed
        };
        Response::AckState(state)
    }

    /// `virtio_mem_set_requested_size` after realize: block-aligned, at most the region;
    /// the usable region only grows here.
    pub fn set_requested_size(&mut self, value: Bytes) -> Result<(), ModelError> {
        let fail = |message: String| Err(ModelError::RequestedSize { device: self.id().to_string(), message });
        if !value.is_multiple_of(self.block_size()) {
            return fail(format!("'requested-size' has to be multiples of 'block-size' (0x{:x})", self.block_size().0));
        }
        if value > self.region_size() {
            return fail(format!("'requested-size' cannot exceed the memory backend size(0x{:x})", self.region_size().0));
        }
        if value != self.requested_size {
            self.resize_usable_region(value, false);
            self.requested_size = value;
        }
        Ok(())
    }

    /// `virtio_mem_system_reset_hold`: unplug all, result ignored (busy: nothing changes).
    pub fn system_reset(&mut self, host: &mut dyn HostMemory, busy: bool) {
        let _ = self.unplug_all(host, busy);
        self.assert_invariant();
    }

    /// Installs a migrated bitmap and plugged size (the early section's fields, or the late
    /// section's on old machines). The destination's bitmap has its own length; the sanity
    /// checks that run first guarantee the lengths agree.
    pub fn load_plug_state(&mut self, size: Bytes, plug: &Arc<PlugMap>) {
        assert_eq!(plug.len(), self.plug.len(), "sanity checks run before the bitmap is loaded");
        self.plug = Arc::clone(plug);
        self.size = size;
    }

    /// Installs the late section's `usable_region_size` and `requested_size`.
    pub fn load_sizes(&mut self, usable_region_size: Bytes, requested_size: Bytes) {
        self.usable_region_size = usable_region_size;
        self.requested_size = requested_size;
    }
}
