//! The destination: consumes items in order, refusing what is out of order, and ends in an
//! [`Outcome`] (`qemu_loadvm_state`, `loadvm_process_command`, migration/savevm.c;
//! `ram_load`, migration/ram.c; `virtio_mem_post_load_early` / `virtio_mem_post_load`,
//! hw/virtio/virtio-mem.c).

use std::collections::HashMap;

use crate::device::VirtioMem;
use crate::host::{Errno, HostMemory};
use crate::migration::item::{EarlySection, Item, LateSection, PlugState};
use crate::migration::outcome::{FaultSite, Outcome, Stage};
use crate::migration::plan::GuestRange;
use crate::migration::verdict::Unbacked;
use crate::ranges::RangeSet;
use crate::units::Bytes;
use crate::variant::Variant;
use crate::vm::Vm;

/// `PostcopyState` (migration/postcopy-ram.h).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PostcopyState {
    None = 0,
    Advise = 1,
    Discard = 2,
    Listening = 3,
    Running = 4,
    End = 5,
}

/// An incoming migration in progress.
#[derive(Debug)]
pub struct Destination<H: HostMemory> {
    vm: Vm<H>,
    postcopy: PostcopyState,
    header_seen: bool,
    /// Stream RAM block index → local block index, once the setup section was loaded.
    block_map: Option<Vec<usize>>,
    early_loaded: Vec<bool>,
    late_loaded: Vec<bool>,
    /// Which pages arrived (the receivedmap), per local RAM block.
    received: Vec<RangeSet>,
    /// Which pages were placed with userfaultfd, per local RAM block: QEMU places whole host
    /// pages once all their target pages arrived (`ram_load_postcopy`'s tmp_huge_page).
    placed: Vec<RangeSet>,
    /// Which postcopy pages carried data (not zero pages), per local RAM block: a host page
    /// with none is placed with UFFDIO_ZEROPAGE where the block allows it.
    data: Vec<RangeSet>,
    /// Which devices' plugged blocks were preallocated by the early section.
    preallocated: Vec<bool>,
    lines: Vec<String>,
    /// The error of the placement that failed, if one did.
    placement_error: Option<crate::host::HostError>,
    /// How many of the VM's own lines (realize, request warnings) were already copied.
    vm_lines_seen: usize,
    /// `warn_report_once` of a discard on a private file mapping has been printed.
    warned_private_discard: bool,
    eof: bool,
    /// idstr → device, for the early and the late sections (the first device of an idstr):
    /// one lookup per section, whatever the number of devices.
    early_ids: HashMap<String, usize>,
    late_ids: HashMap<String, usize>,
}

fn section_error(idstr: &str) -> String {
    format!("error while loading state for instance 0x0 of device '{idstr}'")
}

/// The line a failed placement prints. QEMU prints host pointers (`%p`) that differ per run;
/// the model names the RAM block and offset there. UFFDIO_ZEROPAGE: `uffd_zero_page`
/// (util/userfaultfd.c); UFFDIO_COPY: `postcopy_place_page` (migration/postcopy-ram.c).
fn placement_line(block: &str, err: crate::host::HostError, zero: bool, page: u64) -> String {
    if zero {
        format!("uffd_zero_page() failed: addr={block}+0x{:x} length={page} mode=0 errno={}", err.offset.0, err.errno.number())
    } else {
        format!("postcopy_place_page: {} copy host: {block}+0x{:x} from: tmp-page (size: {page})", err.errno, err.offset.0)
    }
}

fn load_failed(errno: Errno) -> String {
    format!("load of migration failed: {}", errno.strerror())
}

/// `ram_block_discard_range`'s warning for a private file mapping, as QEMU 10.0.2 printed it.
pub const PRIVATE_DISCARD_WARNING: &str = "warning: ram_block_discard_range: Discarding RAM in private file mappings is possibly dangerous, because it will modify the underlying file and will affect other users of the file";

impl<H: HostMemory> Destination<H> {
    /// A destination started with `-incoming`: realize skipped the initial discard.
    pub fn new(vm: Vm<H>) -> Destination<H> {
        let n = vm.devices.len();
        let received: Vec<RangeSet> = vm.blocks.iter().map(|_| RangeSet::new()).collect();
        let data = received.clone();
        let lines = vm.lines.clone();
        let vm_lines_seen = lines.len();
        let mut early_ids = HashMap::new();
        let mut late_ids = HashMap::new();
        for (i, d) in vm.devices.iter().enumerate() {
            if d.early_migration() {
                early_ids.entry(d.early_idstr()).or_insert(i);
            }
            late_ids.entry(d.late_idstr()).or_insert(i);
        }
        Destination {
            early_ids,
            late_ids,
            vm,
            postcopy: PostcopyState::None,
            header_seen: false,
            block_map: None,
            early_loaded: vec![false; n],
            late_loaded: vec![false; n],
            placed: received.clone(),
            data,
            received,
            preallocated: vec![false; n],
            lines,
            vm_lines_seen,
            warned_private_discard: false,
            placement_error: None,
            eof: false,
        }
    }

    pub fn vm(&self) -> &Vm<H> {
        &self.vm
    }

    pub fn vm_mut(&mut self) -> &mut Vm<H> {
        &mut self.vm
    }

    pub fn postcopy_state(&self) -> PostcopyState {
        self.postcopy
    }

    /// `migration_in_incoming_postcopy()`: state in [DISCARD, END). The device is busy then.
    pub fn in_incoming_postcopy(&self) -> bool {
        self.postcopy >= PostcopyState::Discard && self.postcopy < PostcopyState::End
    }

    /// `migration_incoming_postcopy_advised()`: state in [ADVISE, END).
    pub fn postcopy_advised(&self) -> bool {
        self.postcopy >= PostcopyState::Advise && self.postcopy < PostcopyState::End
    }

    /// The pages received so far for a local RAM block.
    pub fn received(&self, block: usize) -> &RangeSet {
        &self.received[block]
    }

    pub fn eof_seen(&self) -> bool {
        self.eof
    }

    fn fail(&mut self, stage: Stage, mut lines: Vec<String>) -> Outcome {
        let mut all = std::mem::take(&mut self.lines);
        all.append(&mut lines);
        Outcome::Failed { stage, lines: all }
    }

    fn state_error(&mut self, stage: Stage, cmd: &str) -> Outcome {
        let l = vec![
            format!("{cmd} in wrong postcopy state ({})", self.postcopy as u8),
            "load of migration failed: Operation not permitted".to_string(),
        ];
        self.fail(stage, l)
    }

    /// Consumes one item. `Err` ends the migration with that outcome.
    pub fn apply(&mut self, item: &Item) -> Result<(), Outcome> {
        if self.eof {
            panic!("item {item} after EOF: the source never writes past the end");
        }
        if !self.header_seen && !matches!(item, Item::Header { .. }) {
            // qemu_loadvm_state_header: the magic is the first thing read.
            return Err(self.fail(Stage::Header, vec!["Not a migration stream".into(), load_failed(Errno::Inval)]));
        }
        match item {
            Item::Header { machine } => self.header(machine),
            Item::OpenReturnPath | Item::Ping(_) | Item::SwitchoverStart => Ok(()),
            Item::PostcopyAdvise => self.advise(),
            Item::RamSetup { blocks } => self.ram_setup(blocks),
            Item::Early(e) => self.early(e),
            Item::Ram { block, offset, len, kind } => self.ram(*block, *offset, *len, *kind),
            Item::RamDiscard { block, ranges } => self.ram_discard(*block, ranges),
            Item::Listen => self.listen(),
            Item::Late(l) => self.late(l),
            Item::Run => self.run(),
            Item::Eof => {
                self.eof = true;
                if self.postcopy >= PostcopyState::Listening {
                    self.vm.host.end_postcopy();
                }
                if self.postcopy >= PostcopyState::Advise {
                    self.postcopy = PostcopyState::End;
                }
                Ok(())
            }
        }
    }

    /// `configuration_post_load` (migration/savevm.c): the machine types must match.
    fn header(&mut self, machine: &str) -> Result<(), Outcome> {
        if self.header_seen {
            return Err(self.fail(Stage::Header, vec!["Unknown savevm section type 7".into(), load_failed(Errno::Inval)]));
        }
        self.header_seen = true;
        if machine != self.vm.machine.name() {
            let line = format!("Machine type received is '{machine}' and local is '{}'", self.vm.machine.name());
            return Err(self.fail(Stage::Header, vec![line, load_failed(Errno::Inval)]));
        }
        Ok(())
    }

    /// `loadvm_postcopy_handle_advise` → `postcopy_ram_incoming_init` → `init_range`:
    /// discards every RAM block ("We need the whole of RAM to be truly empty for postcopy").
    fn advise(&mut self) -> Result<(), Outcome> {
        if self.postcopy != PostcopyState::None {
            return Err(self.state_error(Stage::Advise, "CMD_POSTCOPY_ADVISE"));
        }
        if let Some(b) = self.vm.blocks.iter().find(|b| !b.backend.kind.supports_postcopy()) {
            // postcopy_ram_supported_by_host; the exact text is not in the reference [INF].
            let l = vec![format!("Postcopy is not supported on {} memory", b.backend.kind.name()), load_failed(Errno::Inval)];
            return Err(self.fail(Stage::Advise, l));
        }
        self.postcopy = PostcopyState::Advise;
        let blocks: Vec<(crate::host::RamBlockId, Bytes)> = self.vm.blocks.iter().map(|b| (b.id, b.len)).collect();
        for (id, len) in blocks {
            self.discard(id, Bytes::ZERO, len).expect("the model's discard does not fail");
        }
        for r in &mut self.received {
            *r = RangeSet::new();
        }
        Ok(())
    }

    /// `parse_ramblocks` (migration/ram.c): every block must exist with the same length.
    fn ram_setup(&mut self, blocks: &[(String, Bytes)]) -> Result<(), Outcome> {
        let mut map = Vec::with_capacity(blocks.len());
        let mut local_of: HashMap<&str, usize> = HashMap::with_capacity(self.vm.blocks.len());
        for (i, b) in self.vm.blocks.iter().enumerate() {
            local_of.entry(b.name.as_str()).or_insert(i);
        }
        for (name, len) in blocks {
            let Some(local) = local_of.get(name.as_str()).copied() else {
                let l = vec![
                    format!("Unknown ramblock \"{name}\", cannot accept migration"),
                    section_error("ram"),
                    load_failed(Errno::Inval),
                ];
                return Err(self.fail(Stage::RamSetup, l));
            };
            let have = self.vm.blocks[local].len;
            if have != *len {
                // qemu_ram_resize on a block that is not resizable [INF: text from memory of
                // system/physmem.c, not in the reference].
                let l = vec![
                    format!("Size mismatch: {name}: 0x{:x} != 0x{:x}: Invalid argument", len.0, have.0),
                    section_error("ram"),
                    load_failed(Errno::Inval),
                ];
                return Err(self.fail(Stage::RamSetup, l));
            }
            map.push(local);
        }
        self.block_map = Some(map);
        Ok(())
    }

    /// The device whose plug state `item` loads (an early or late section), if any: the only
    /// items that change a device's plug state.
    pub fn device_of(&self, item: &Item) -> Option<usize> {
        match item {
            Item::Early(e) => self.find_device(&e.idstr, true),
            Item::Late(l) => self.find_device(&l.idstr, false),
            _ => None,
        }
    }

    fn find_device(&self, idstr: &str, early: bool) -> Option<usize> {
        if early { self.early_ids.get(idstr) } else { self.late_ids.get(idstr) }.copied()
    }

    fn unknown_section(&mut self, stage: Stage, idstr: &str) -> Outcome {
        let l = vec![
            format!(
                "Unknown savevm section or instance '{idstr}' 0x0. Make sure that your current VM setup matches your saved VM setup, including any hotplugged devices"
            ),
            load_failed(Errno::Inval),
        ];
        self.fail(stage, l)
    }

    /// `virtio_mem_mig_sanity_checks_post_load`: addr, region size, block size, node.
    fn sanity_check(dev: &VirtioMem, state: &PlugState) -> Result<(), String> {
        let s = &state.sanity;
        if s.addr != dev.addr() {
            return Err(format!("Property 'memaddr' changed from 0x{:x} to 0x{:x}", s.addr.0, dev.addr().0));
        }
        if s.region_size != dev.region_size() {
            return Err(format!(
                "Property 'memdev' size changed from 0x{:x} to 0x{:x}",
                s.region_size.0,
                dev.region_size().0
            ));
        }
        if s.block_size != dev.block_size() {
            return Err(format!(
                "Property 'block-size' changed from 0x{:x} to 0x{:x}",
                s.block_size.0,
                dev.block_size().0
            ));
        }
        if s.node != dev.node() {
            return Err(format!("Property 'node' changed from {} to {}", s.node, dev.node()));
        }
        Ok(())
    }

    /// The early section: sanity checks, bitmap, then `virtio_mem_post_load_early`.
    fn early(&mut self, e: &EarlySection) -> Result<(), Outcome> {
        let stage = Stage::EarlySection(e.idstr.clone());
        let Some(d) = self.find_device(&e.idstr, true) else {
            return Err(self.unknown_section(stage, &e.idstr));
        };
        if self.early_loaded[d] {
            panic!("early section {} sent twice: QEMU sends it exactly once", e.idstr);
        }
        if let Err(line) = Self::sanity_check(&self.vm.devices[d], &e.state) {
            return Err(self.fail(stage, vec![line, section_error(&e.idstr), load_failed(Errno::Inval)]));
        }
        self.vm.devices[d].load_plug_state(e.state.size, &e.state.plug);
        self.early_loaded[d] = true;
        self.post_load_early(d, &e.idstr)
    }

    /// `virtio_mem_post_load_early`: with prealloc, preallocate every plugged run (stop at the
    /// first failure: -ENOMEM); then, if postcopy was advised, discard the whole RAM block.
    fn post_load_early(&mut self, d: usize, idstr: &str) -> Result<(), Outcome> {
        let dev = &self.vm.devices[d];
        if !dev.prealloc() {
            return Ok(());
        }
        let rb = dev.ram_block();
        let ranges: Vec<(Bytes, Bytes)> = if self.vm.variant == Variant::PreallocWholeRegion {
            vec![(Bytes::ZERO, dev.region_size())]
        } else {
            dev.plugged_runs().into_iter().map(|r| dev.run_bytes(r)).collect()
        };
        for (off, len) in ranges {
            // virtio_mem_prealloc_range_cb → qemu_prealloc_mem (util/oslib-posix.c).
            if let Err(err) = self.vm.host.populate(rb, off, len) {
                let prealloc = format!("qemu_prealloc_mem: preallocating memory failed: {}", err.errno);
                let l = if self.vm.qemu.load_errors_as_one {
                    // vmstate_load_state's post_load branch: error_setg with the hook's ret.
                    let hook = format!("post load hook failed for: virtio-mem-device-early, version_id: 1, minimum_version: 1, ret: -{}", Errno::NoMem.number());
                    vec![prealloc, format!("{}: {}: {hook}", load_failed(Errno::NoMem), section_error(idstr))]
                } else {
                    vec![prealloc, section_error(idstr), load_failed(Errno::NoMem)]
                };
                return Err(self.fail(Stage::EarlySection(idstr.to_string()), l));
            }
        }
        self.preallocated[d] = true;
        if self.postcopy_advised() && self.vm.variant != Variant::NoDiscardAfterPrealloc {
            let len = self.vm.devices[d].region_size();
            if self.discard(rb, Bytes::ZERO, len).is_err() {
                let l = vec![section_error(idstr), load_failed(Errno::Busy)];
                return Err(self.fail(Stage::EarlySection(idstr.to_string()), l));
            }
        }
        Ok(())
    }

    /// `ram_block_discard_range` (system/physmem.c): on a private file mapping it warns, once
    /// per process (`warn_report_once`; observed on QEMU 10.0.2 restoring onto hugetlbfs with
    /// share=off), before it punches the hole.
    fn discard(&mut self, block: crate::host::RamBlockId, off: Bytes, len: Bytes) -> Result<(), crate::host::HostError> {
        if !self.warned_private_discard && self.vm.blocks.iter().any(|b| b.id == block && b.private_file) {
            self.warned_private_discard = true;
            self.lines.push(PRIVATE_DISCARD_WARNING.into());
        }
        self.vm.host.discard(block, off, len)
    }

    fn local_block(&mut self, stream_block: usize, stage: Stage) -> Result<usize, Outcome> {
        match self.block_map.as_ref().and_then(|m| m.get(stream_block).copied()) {
            Some(b) => Ok(b),
            None => {
                let l = vec!["Unknown savevm section 0".into(), load_failed(Errno::Inval)];
                Err(self.fail(stage, l))
            }
        }
    }

    /// `ram_load`: before LISTEN the precopy path writes (PAGE) or reads (ZERO) the target;
    /// from LISTEN on, pages are placed with userfaultfd.
    fn ram(&mut self, block: usize, offset: Bytes, len: Bytes, kind: crate::host::PageKind) -> Result<(), Outcome> {
        let local = self.local_block(block, Stage::RamLoad)?;
        let info = self.vm.blocks[local].clone();
        let end = offset.checked_add(len).filter(|e| *e <= info.len);
        assert!(end.is_some(), "page run {:#x}+{:#x} beyond block '{}'", offset.0, len.0, info.name);
        if self.postcopy >= PostcopyState::Listening {
            // ram_load_postcopy gathers target pages until their host page is complete, then
            // places the host page atomically (postcopy_place_page: UFFDIO_COPY).
            self.received[local].insert(offset.0, offset.0 + len.0);
            let page = self.vm.host_page_size(info.id).0;
            let (lo, hi) = (offset.0 - offset.0 % page, (offset.0 + len.0).div_ceil(page) * page);
            let mut ready = RangeSet::new();
            for (s, e) in self.received[local].within(lo, hi.min(info.len.0)) {
                let (s, e) = (s.div_ceil(page) * page, e - e % page);
                if s < e {
                    ready.insert(s, e);
                }
            }
            for (s, e) in self.placed[local].within(lo, hi) {
                ready.remove(s, e);
            }
            if kind == crate::host::PageKind::Normal {
                self.data[local].insert(offset.0, offset.0 + len.0);
            }
            for (s, e) in ready.iter() {
                self.placed[local].insert(s, e);
                for (s, e, zero) in self.zero_and_data(local, s, e, page) {
                    if let Err(err) = self.vm.host.place(info.id, Bytes(s), Bytes(e - s), zero) {
                        self.placement_error = Some(err);
                        let mut l = std::mem::take(&mut self.lines);
                        l.push(placement_line(&info.name, err, zero, page));
                        // ram_load_postcopy fails the section; postcopy_pause_incoming pauses.
                        if !self.vm.qemu.load_errors_as_one {
                            l.push("error while loading state section id 1(ram)".into());
                        }
                        l.extend(["Unable to shutdown socket: Bad file descriptor".to_string(), "Detected IO failure for postcopy. Migration paused.".into()]);
                        return Err(Outcome::PostcopyFailed { stage: Stage::PostcopyPlacement, lines: l });
                    }
                }
            }
            return Ok(());
        } else if let Err(sigbus) = self.vm.host.load(info.id, offset, len, kind) {
            let lines = std::mem::take(&mut self.lines);
            return Err(Outcome::Crashed {
                stage: Stage::RamLoad,
                site: FaultSite { block: info.name.clone(), offset: sigbus.offset },
                lines,
            });
        }
        self.received[local].insert(offset.0, offset.0 + len.0);
        Ok(())
    }

    /// Splits host pages [s, e) into runs placed alike, in address order: (start, end, zero).
    /// `ram_load_postcopy`: a host page whose target pages were all zero is placed with
    /// `postcopy_place_page_zero`, which zeroes it with UFFDIO_ZEROPAGE when
    /// `qemu_ram_is_uf_zeroable` (not hugetlb), else copies QEMU's zero page.
    fn zero_and_data(&self, local: usize, s: u64, e: u64, page: u64) -> Vec<(u64, u64, bool)> {
        let zeroable = page == crate::backend::HOST_PAGE_SIZE.0;
        let mut out = Vec::new();
        let mut cur = s;
        for (ds, de) in self.data[local].within(s, e) {
            let (ds, de) = ((ds - ds % page).max(cur), de.div_ceil(page) * page);
            if ds > cur {
                out.push((cur, ds, zeroable));
            }
            if de > ds.max(cur) {
                out.push((ds.max(cur), de.min(e), false));
            }
            cur = cur.max(de.min(e));
        }
        if cur < e {
            out.push((cur, e, zeroable));
        }
        out
    }

    /// `loadvm_postcopy_ram_handle_discard`: state ADVISE or DISCARD; drops the ranges.
    fn ram_discard(&mut self, block: usize, ranges: &[(Bytes, Bytes)]) -> Result<(), Outcome> {
        if self.postcopy != PostcopyState::Advise && self.postcopy != PostcopyState::Discard {
            return Err(self.state_error(Stage::PostcopyDiscard, "CMD_POSTCOPY_RAM_DISCARD"));
        }
        self.postcopy = PostcopyState::Discard;
        let local = self.local_block(block, Stage::PostcopyDiscard)?;
        let id = self.vm.blocks[local].id;
        for &(off, len) in ranges {
            self.discard(id, off, len).expect("the model's discard does not fail");
            self.received[local].remove(off.0, off.0 + len.0);
        }
        Ok(())
    }

    /// `loadvm_postcopy_handle_listen`: state ADVISE or DISCARD; userfaultfd registration.
    fn listen(&mut self) -> Result<(), Outcome> {
        if self.postcopy != PostcopyState::Advise && self.postcopy != PostcopyState::Discard {
            return Err(self.state_error(Stage::Listen, "CMD_POSTCOPY_LISTEN"));
        }
        self.postcopy = PostcopyState::Listening;
        Ok(())
    }

    /// `loadvm_postcopy_handle_run`: state LISTENING; the guest starts on the destination.
    fn run(&mut self) -> Result<(), Outcome> {
        if self.postcopy != PostcopyState::Listening {
            return Err(self.state_error(Stage::Run, "CMD_POSTCOPY_RUN"));
        }
        self.postcopy = PostcopyState::Running;
        Ok(())
    }

    /// The late section and `virtio_mem_post_load`.
    fn late(&mut self, l: &LateSection) -> Result<(), Outcome> {
        let stage = Stage::LateSection(l.idstr.clone());
        let Some(d) = self.find_device(&l.idstr, false) else {
            return Err(self.unknown_section(stage, &l.idstr));
        };
        let early = self.vm.devices[d].early_migration();
        match (&l.plug, early) {
            (Some(plug), false) => {
                if let Err(line) = Self::sanity_check(&self.vm.devices[d], plug) {
                    return Err(self.fail(stage, vec![line, section_error(&l.idstr), load_failed(Errno::Inval)]));
                }
                self.vm.devices[d].load_plug_state(plug.size, &plug.plug);
            }
            (None, true) => {
                if !self.early_loaded[d] {
                    // With early migration the late section has no bitmap; a stream without
                    // the early section leaves the device with nothing plugged [INF].
                    let line = format!("{}: early section never arrived", l.idstr);
                    return Err(self.fail(stage, vec![line, section_error(&l.idstr), load_failed(Errno::Inval)]));
                }
            }
            // The field layout differs between the sides: the stream does not parse [INF].
            _ => {
                let line = format!("Missing section footer for {}", l.idstr);
                return Err(self.fail(stage, vec![line, load_failed(Errno::Inval)]));
            }
        }
        self.vm.devices[d].load_sizes(l.usable_region_size, l.requested_size);
        self.late_loaded[d] = true;
        let dev = &self.vm.devices[d];
        if dev.prealloc() && !dev.early_migration() {
            self.lines.push("warning: Proper preallocation with migration requires a newer QEMU machine".into());
        }
        if self.in_incoming_postcopy() {
            return Ok(());
        }
        // virtio_mem_restore_unplugged: "Make sure all memory is really discarded after migration".
        let rb = dev.ram_block();
        let runs: Vec<(Bytes, Bytes)> = dev.unplugged_runs().into_iter().map(|r| dev.run_bytes(r)).collect();
        for (off, len) in runs {
            if self.discard(rb, off, len).is_err() {
                return Err(self.fail(stage, vec![section_error(&l.idstr), load_failed(Errno::Inval)]));
            }
        }
        Ok(())
    }

    /// After EOF: the guest runs on the destination and writes those of `touches` that lie in
    /// memory plugged here now (the guest only uses plugged memory). A write to a page that
    /// cannot be populated is a SIGBUS at run time. Returns how many ranges it wrote.
    pub fn run_guest(&mut self, touches: &[GuestRange], hinted: &[GuestRange]) -> Result<usize, Outcome> {
        assert!(self.eof, "the guest runs after the stream ended");
        let plugged: Vec<GuestRange> = touches
            .iter()
            .copied()
            .filter(|t| {
                self.vm.devices[t.device].bytes_plugged(t.offset, t.len)
            })
            .collect();
        for t in &plugged {
            let dev = &self.vm.devices[t.device];
            let rb = dev.ram_block();
            let name = self.vm.device_block(t.device).name.clone();
            if let Err(sigbus) = self.vm.host.touch(rb, t.offset, t.len) {
                let at = sigbus.offset.0;
                let was_hinted = hinted.iter().any(|h| h.device == t.device && h.offset.0 <= at && at < h.offset.0 + h.len.0);
                let why = if was_hinted && !self.preallocated[t.device] {
                    "the page was excluded by a free page hint, so the migration never sent it, and the device did not preallocate it (prealloc off, or an old machine type)"
                } else if was_hinted {
                    "the page was excluded by a free page hint and its preallocated memory was freed again"
                } else {
                    "the page was never populated on the destination and the backend has no memory left"
                };
                return Err(Outcome::RuntimeCrash {
                    site: FaultSite { block: name, offset: Bytes(at) },
                    why: why.to_string(),
                    lines: std::mem::take(&mut self.lines),
                });
            }
        }
        Ok(plugged.len())
    }

    /// Plugged memory that is not populated, and what the devices' backend has left for it:
    /// a guest that writes it (growing into it, `init_on_free=1`) needs that much.
    pub fn unbacked(&self) -> Unbacked {
        let mut missing = Bytes::ZERO;
        for dev in &self.vm.devices {
            for run in dev.plugged_runs() {
                let (off, len) = dev.run_bytes(run);
                let have = self.vm.host.populated(dev.ram_block(), off, len);
                missing = missing.checked_add(len.checked_sub(have).unwrap_or(Bytes::ZERO)).expect("plugged bytes fit in u64");
            }
        }
        let left = self.vm.devices.first().and_then(|d| self.vm.host.left(d.ram_block()));
        Unbacked { plugged_unpopulated: missing, left }
    }

    /// The migration completed and the guest ran: the outcome, with the lines QEMU printed.
    pub fn finish(mut self) -> Outcome {
        assert!(self.eof, "a migration completes at EOF");
        let mut lines = std::mem::take(&mut self.lines);
        lines.extend(self.vm.lines.drain(..).skip(self.vm_lines_seen));
        Outcome::Completed { lines }
    }

    /// The error of the postcopy placement that ended the migration, if one did.
    pub fn placement_error(&self) -> Option<crate::host::HostError> {
        self.placement_error
    }

    /// Lines QEMU printed so far (warnings).
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}
