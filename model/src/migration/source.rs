//! The source: the items of the stream in QEMU's order (`migration_thread`,
//! `qemu_savevm_state_setup`, `postcopy_start`; migration/migration.c, migration/savevm.c).

use crate::device::VirtioMem;
use crate::host::{HostMemory, PageKind};
use crate::migration::item::{EarlySection, Item, LateSection, PlugState, SanityFields};
use crate::migration::plan::{Mode, Plan, PostcopyStart};
use crate::ranges::RangeSet;
use crate::units::Bytes;
use crate::variant::Variant;
use crate::vm::Vm;

/// The plug state `vmstate_virtio_mem_device_early` sends (`virtio_mem_mig_sanity_checks_pre_save`).
pub fn plug_state(dev: &VirtioMem) -> PlugState {
    PlugState {
        sanity: SanityFields {
            addr: dev.addr(),
            region_size: dev.region_size(),
            block_size: dev.block_size(),
            node: dev.node(),
        },
        size: dev.size(),
        plug: std::sync::Arc::clone(dev.plug_map()),
    }
}

/// The late section (`vmstate_virtio_mem_device`): plug state only without early migration
/// (`virtio_mem_vmstate_field_exists`).
pub fn late_section(dev: &VirtioMem) -> LateSection {
    LateSection {
        idstr: dev.late_idstr(),
        usable_region_size: dev.usable_region_size(),
        requested_size: dev.requested_size(),
        plug: (!dev.early_migration()).then(|| plug_state(dev)),
    }
}

/// The RAM page runs the source sends, in block order: ordinary RAM whole, virtio-mem memory
/// only where plugged (`migration_bitmap_clear_discarded_pages`), minus free page hints,
/// split into normal pages (guest data) and zero pages.
pub fn page_runs<H: HostMemory>(src: &Vm<H>, plan: &Plan) -> Vec<Item> {
    let mut out = Vec::new();
    for (bi, block) in src.blocks.iter().enumerate() {
        let Some(dev_idx) = block.device else {
            out.push(Item::Ram { block: bi, offset: Bytes::ZERO, len: block.len, kind: PageKind::Zero });
            continue;
        };
        let dev = &src.devices[dev_idx];
        let mut hinted = RangeSet::new();
        if !plan.is_postcopy() {
            for h in plan.hints.iter().filter(|h| h.device == dev_idx) {
                hinted.insert(h.offset.0, h.offset.0 + h.len.0);
            }
        }
        let mut data = RangeSet::new();
        for d in plan.data.iter().filter(|d| d.device == dev_idx) {
            data.insert(d.offset.0, d.offset.0 + d.len.0);
        }
        for run in dev.plugged_runs() {
            let (off, len) = dev.run_bytes(run);
            for (s, e) in hinted.gaps(off.0, off.0 + len.0) {
                let mut cur = s;
                for (ds, de) in data.within(s, e) {
                    if ds > cur {
                        out.push(Item::Ram { block: bi, offset: Bytes(cur), len: Bytes(ds - cur), kind: PageKind::Zero });
                    }
                    out.push(Item::Ram { block: bi, offset: Bytes(ds), len: Bytes(de - ds), kind: PageKind::Normal });
                    cur = de;
                }
                if cur < e {
                    out.push(Item::Ram { block: bi, offset: Bytes(cur), len: Bytes(e - cur), kind: PageKind::Zero });
                }
            }
        }
    }
    out
}

/// The page bytes of runs.
fn page_bytes(runs: &[Item]) -> u128 {
    runs.iter()
        .map(|i| match i {
            Item::Ram { len, .. } => len.0 as u128,
            _ => unreachable!("only page runs"),
        })
        .sum()
}

/// Splits page runs after `budget` bytes (all of them with `keep_all`), at a host page boundary
/// of the block the split falls in: postcopy works in whole host pages
/// (`postcopy_chunk_hostpages_pass` makes each host page all-sent or all-unsent).
fn split_runs(runs: Vec<Item>, mut budget: u64, keep_all: bool, page_of: impl Fn(usize) -> u64) -> (Vec<Item>, Vec<Item>) {
    // Where the switch happens: a block and a host-page-aligned offset in it.
    let mut cut = None;
    for item in &runs {
        let Item::Ram { block, offset, len, .. } = *item else { unreachable!("only page runs") };
        if budget < len.0 || (budget == len.0 && !keep_all) {
            let page = page_of(block);
            cut = Some((block, (offset.0 + budget) / page * page));
            break;
        }
        budget -= len.0;
    }
    let Some((cut_block, cut_off)) = cut else { return (runs, Vec::new()) };
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for item in runs {
        let Item::Ram { block, offset, len, kind } = item else { unreachable!("only page runs") };
        let end = offset.0 + len.0;
        if block < cut_block || (block == cut_block && end <= cut_off) {
            before.push(item);
        } else if block == cut_block && offset.0 < cut_off {
            before.push(Item::Ram { block, offset, len: Bytes(cut_off - offset.0), kind });
            after.push(Item::Ram { block, offset: Bytes(cut_off), len: Bytes(end - cut_off), kind });
        } else {
            after.push(item);
        }
    }
    (before, after)
}

/// The whole stream the source writes, in QEMU's order (reference §1.8).
pub fn stream<H: HostMemory>(src: &Vm<H>, plan: &Plan) -> Vec<Item> {
    let mut out = vec![Item::Header { machine: src.machine.name().to_string() }];
    let postcopy = plan.is_postcopy();
    if postcopy {
        out.extend([Item::OpenReturnPath, Item::Ping(1), Item::PostcopyAdvise]);
    }
    out.push(Item::RamSetup { blocks: src.blocks.iter().map(|b| (b.name.clone(), b.len)).collect() });
    let early: Vec<Item> = src
        .devices
        .iter()
        .filter(|d| d.early_migration())
        .map(|d| Item::Early(Box::new(EarlySection { idstr: d.early_idstr(), state: plug_state(d) })))
        .collect();
    let mut runs = page_runs(src, plan);
    if src.variant == Variant::PreallocAfterRamLoad {
        // The early state arrives after the first run of virtio-mem memory.
        let first_vmem = runs.iter().position(|i| matches!(i, Item::Ram { block, .. } if src.blocks[*block].device.is_some()));
        let at = first_vmem.map_or(runs.len(), |p| p + 1);
        let rest = runs.split_off(at);
        out.append(&mut runs);
        out.extend(early);
        runs = rest;
    } else {
        out.extend(early);
    }
    let late: Vec<Item> = src.devices.iter().map(|d| Item::Late(Box::new(late_section(d)))).collect();
    match plan.mode {
        Mode::Precopy => {
            out.extend(runs);
            if src.machine.sends_switchover_start() {
                out.push(Item::SwitchoverStart);
            }
            out.extend(late);
        }
        // The command came after the last page went out: the precopy completes, with the
        // return path and ADVISE already sent.
        Mode::Postcopy { start: PostcopyStart::After(b) } if u128::from(b.0) >= page_bytes(&runs) => {
            out.extend(runs);
            if src.machine.sends_switchover_start() {
                out.push(Item::SwitchoverStart);
            }
            out.extend(late);
        }
        Mode::Postcopy { start } => {
            let (budget, keep_all) = match start {
                PostcopyStart::Share(p) => ((page_bytes(&runs) * u128::from(p.min(100)) / 100) as u64, p >= 100),
                PostcopyStart::After(b) => (b.0, false),
            };
            let (before, after) = split_runs(runs, budget, keep_all, |b| src.host_page_size(src.blocks[b].id).0);
            out.extend(before);
            if !plan.skip_ram_discard {
                out.extend(discards(&after));
            }
            out.push(Item::Ping(2));
            out.push(Item::Listen);
            out.extend(late);
            out.extend([Item::Ping(3), Item::Run, Item::Ping(4)]);
            out.extend(after);
        }
    }
    out.push(Item::Eof);
    out
}

/// `ram_postcopy_send_discard_bitmap`: every page not yet sent becomes a discard range, one
/// command per RAM block.
fn discards(unsent: &[Item]) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::new();
    for item in unsent {
        let Item::Ram { block, offset, len, .. } = *item else { continue };
        match out.last_mut() {
            Some(Item::RamDiscard { block: b, ranges }) if *b == block => match ranges.last_mut() {
                Some((o, l)) if o.0 + l.0 == offset.0 => l.0 += len.0,
                _ => ranges.push((offset, len)),
            },
            _ => out.push(Item::RamDiscard { block, ranges: vec![(offset, len)] }),
        }
    }
    out
}
