//! `vmemsim analyze` and `vmemsim preflight`: what a migration stream holds, and what a
//! destination with a given backend would do with it.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;

use serde_json::{Map, Value};
use vmemsim_model::config::HostFacts;
use vmemsim_model::host::PageKind;
use vmemsim_model::migration::destination::Destination;
use vmemsim_model::migration::item::{EarlySection, Item, LateSection, PlugState};
use vmemsim_model::wire::late::LateState;
use vmemsim_model::wire::decode::{find_vmdesc, Decoder, Event};
use vmemsim_model::wire::escaped;
use vmemsim_model::{Backend, BackendKind, Bytes, Capacity, DeviceConfig, MachineType, Outcome, Variant, Vm, VmConfig};

use crate::error::SimError;

/// Copies standard input into an anonymous memory file (memfd) and rewinds it: seekable, so
/// the VM description at the end can be found, and named nowhere on disk, so a signal leaves
/// nothing behind.
fn spool_stdin() -> std::io::Result<File> {
    let fd = rustix::fs::memfd_create("vmemsim-stdin", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut f = File::from(fd);
    std::io::copy(&mut std::io::stdin().lock(), &mut f)?;
    f.seek(SeekFrom::Start(0))?;
    Ok(f)
}

/// All events of a stream file (`-`: standard input, through [`spool_stdin`]).
pub fn read_events(path: &Path) -> Result<Vec<Event>, SimError> {
    let err = |e: vmemsim_model::wire::WireError| SimError::Stream { path: path.to_path_buf(), message: e.to_string() };
    let io = |e: std::io::Error| SimError::Read { path: path.to_path_buf(), source: e };
    let mut f = if path == Path::new("-") { spool_stdin().map_err(io)? } else { File::open(path).map_err(io)? };
    let vmdesc = find_vmdesc(&mut f).map_err(err)?;
    let mut d = Decoder::new(BufReader::with_capacity(1 << 20, f), vmdesc);
    let mut out = Vec::new();
    while let Some(e) = d.next_event().map_err(err)? {
        out.push(e);
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// analyze-migration.py's default output (`-d state`): `"<idstr> (<section id>)"` keys in order.
pub fn analyze_json(events: &[Event]) -> Value {
    let mut out = Map::new();
    for e in events {
        match e {
            Event::RamSetup { section, blocks } => {
                let sizes: Map<String, Value> = blocks.iter().map(|(n, l)| (n.clone(), Value::from(format!("0x{l:016x}")))).collect();
                let mut ram = Map::new();
                ram.insert("section sizes".into(), Value::Object(sizes));
                out.insert(format!("ram ({section})"), Value::Object(ram));
            }
            Event::Early { section, idstr, state, tmp, bitmap_bytes, .. } => {
                let mut m = Map::new();
                m.insert("tmp".into(), Value::from(hex(tmp)));
                m.insert("size".into(), Value::from(format!("0x{:016x}", state.size.0)));
                m.insert("bitmap".into(), Value::from(hex(bitmap_bytes)));
                out.insert(format!("{idstr} ({section})"), Value::Object(m));
            }
            Event::Device { section, idstr, fields, .. } | Event::Late { section, idstr, fields, .. } => {
                out.insert(format!("{idstr} ({section})"), Value::Object(fields.clone()));
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// Pretty JSON as Python's `json.dumps(indent=4)` writes it.
pub fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    serde::Serialize::serialize(v, &mut ser).expect("JSON of plain values");
    String::from_utf8(buf).expect("JSON is UTF-8")
}

/// A summary for people: machine type, RAM blocks, virtio-mem devices and pages per block.
pub fn summary(events: &[Event]) -> String {
    let mut s = String::new();
    let mut pages: Vec<(String, u64, u64)> = Vec::new();
    // Block name → its row in `pages` (the first of a name): one lookup per page run.
    let mut rows: HashMap<String, usize> = HashMap::new();
    for e in events {
        match e {
            Event::Configuration { machine } => s += &format!("machine type: {machine}\n"),
            Event::RamSetup { blocks, .. } => {
                s += "RAM blocks:\n";
                for (n, l) in blocks {
                    s += &format!("  {}: {}\n", escaped(n), Bytes(*l));
                    rows.entry(n.clone()).or_insert(pages.len());
                    pages.push((n.clone(), 0, 0));
                }
            }
            Event::Early { idstr, state, .. } => s += &plug_lines(idstr.trim_end_matches("/virtio-mem-device-early"), state, None),
            Event::Late { idstr, state: late, .. } => {
                if let Some(state) = &late.plug {
                    s += &plug_lines(idstr.trim_end_matches("/virtio-mem"), state, Some(late));
                }
            }
            Event::RamPages { block, pages: n, kind, .. } => {
                if let Some(p) = rows.get(block).map(|&i| &mut pages[i]) {
                    if *kind == PageKind::Normal {
                        p.1 += n;
                    } else {
                        p.2 += n;
                    }
                }
            }
            _ => {}
        }
    }
    if !events.iter().any(|e| matches!(e, Event::Early { .. })) {
        if events.iter().any(|e| matches!(e, Event::Late { state, .. } if state.plug.is_some())) {
            s += "no virtio-mem-device-early section: an old machine type; the plug state above is the late virtio-mem section's\n";
        } else {
            s += "no virtio-mem-device-early section: an old machine type, or no virtio-mem device\n";
        }
    }
    s += "pages in the stream:\n";
    for (n, normal, zero) in pages {
        s += &format!("  {}: {normal} normal, {zero} zero\n", escaped(&n));
    }
    s
}

/// A device's plug state for the summary: where, how much, the first runs; and for the late
/// section, the two sizes it carries too.
fn plug_lines(pci: &str, state: &PlugState, late: Option<&LateState>) -> String {
    let runs: Vec<_> = state.plug.plugged_runs().collect();
    let mut s = format!(
        "virtio-mem {}: memaddr {}, region {}, block {}, node {}, plugged {} in {} run(s)\n",
        escaped(pci),
        state.sanity.addr,
        state.sanity.region_size,
        state.sanity.block_size,
        state.sanity.node,
        state.size,
        runs.len()
    );
    if let Some(l) = late {
        s += &format!("  from the late section: usable region {}, requested {}\n", l.usable_region_size, l.requested_size);
    }
    let bs = state.sanity.block_size.0;
    for r in runs.iter().take(8) {
        s += &format!("  plugged: {:#x}+{}\n", r.first.0 * bs, Bytes(r.count.0 * bs));
    }
    if runs.len() > 8 {
        s += &format!("  ... {} more runs\n", runs.len() - 8);
    }
    s
}

/// The summary as data, for `analyze --format json`: the machine type, each RAM block with
/// its pages in the stream, and each virtio-mem device's plug state (early section, or late on
/// old machine types: then with `section`, `usable_region_bytes` and `requested_bytes`) with its
/// plugged runs.
pub fn summary_value(events: &[Event]) -> Value {
    let mut machine = Value::Null;
    let mut blocks: Vec<Value> = Vec::new();
    let mut rows: HashMap<String, usize> = HashMap::new();
    let mut devices = Vec::new();
    for e in events {
        match e {
            Event::Configuration { machine: m } => machine = Value::from(m.clone()),
            Event::RamSetup { blocks: b, .. } => {
                for (n, l) in b {
                    rows.entry(n.clone()).or_insert(blocks.len());
                    blocks.push(serde_json::json!({"name": n, "bytes": l, "normal_pages": 0u64, "zero_pages": 0u64}));
                }
            }
            Event::Early { idstr, state, .. } => devices.push(plug_value(idstr.trim_end_matches("/virtio-mem-device-early"), state)),
            Event::Late { idstr, state: late, .. } => {
                if let Some(state) = &late.plug {
                    let mut v = plug_value(idstr.trim_end_matches("/virtio-mem"), state);
                    v["section"] = "late".into();
                    v["usable_region_bytes"] = late.usable_region_size.0.into();
                    v["requested_bytes"] = late.requested_size.0.into();
                    devices.push(v);
                }
            }
            Event::RamPages { block, pages, kind, .. } => {
                if let Some(Value::Object(row)) = rows.get(block).map(|&i| &mut blocks[i]) {
                    let key = if *kind == PageKind::Normal { "normal_pages" } else { "zero_pages" };
                    let n = row[key].as_u64().unwrap_or(0).saturating_add(*pages);
                    row.insert(key.into(), n.into());
                }
            }
            _ => {}
        }
    }
    serde_json::json!({"machine": machine, "ram_blocks": blocks, "virtio_mem": devices})
}

/// One device's plug state in the JSON summary.
fn plug_value(pci: &str, state: &PlugState) -> Value {
    let bs = state.sanity.block_size.0;
    let runs: Vec<Value> = state.plug.plugged_runs().map(|r| serde_json::json!({"offset": r.first.0 * bs, "bytes": r.count.0 * bs})).collect();
    serde_json::json!({
        "device": pci,
        "memaddr": state.sanity.addr.0,
        "region_bytes": state.sanity.region_size.0,
        "block_bytes": bs,
        "node": state.sanity.node,
        "plugged_bytes": state.size.0,
        "plugged_runs": runs,
    })
}

/// What `preflight` predicts.
#[derive(Clone, Debug)]
pub struct Preflight {
    pub outcome: Outcome,
    /// Where a live source of this stream ends when the destination does what `outcome` says
    /// (QEMU's rules for the destination's release), and both sides together.
    pub source: vmemsim_model::migration::source_fate::SourceFate,
    pub judgement: vmemsim_model::migration::verdict::Judgement,
    /// Bytes of device memory the destination must be able to populate, and what it has.
    pub needed: Bytes,
    pub available: Option<Bytes>,
    pub report: String,
}

/// Predicts what a destination with `backend` would do with this stream.
pub fn preflight(events: &[Event], backend: Backend, prealloc: bool, machine: Option<&str>) -> Result<Preflight, String> {
    preflight_on(events, backend, prealloc, machine, &vmemsim_model::QemuProfile::default())
}

/// [`preflight`] for a destination running the QEMU of `qemu`: its machine types and its words.
pub fn preflight_on(events: &[Event], backend: Backend, prealloc: bool, machine: Option<&str>, qemu: &vmemsim_model::QemuProfile) -> Result<Preflight, String> {
    preflight_with(events, DestMemory::One(backend), prealloc, machine, qemu)
}

/// The destination's memory for a preflight: one backend for every device, or the memdevs and
/// host limits of a scenario's destination (per memdev, by the stream's memdev ids).
#[derive(Clone, Debug)]
pub enum DestMemory {
    One(Backend),
    /// The memory, and each device's prealloc by PCI address (a device not listed takes the
    /// `prealloc` argument).
    PerMemdev(vmemsim_model::Memory, Vec<(String, bool)>),
}

/// [`preflight_on`] with either form of the destination's memory.
pub fn preflight_with(events: &[Event], dest: DestMemory, prealloc: bool, machine: Option<&str>, qemu: &vmemsim_model::QemuProfile) -> Result<Preflight, String> {
    let stream_machine = events.iter().find_map(|e| match e {
        Event::Configuration { machine } => Some(machine.clone()),
        _ => None,
    });
    // The destination's machine: `--machine` (an alias resolves to the QEMU's concrete type),
    // else the stream's. The stream's header keeps the source's, which the destination
    // compares with its own (`configuration_post_load`).
    let machine = machine.map(str::to_string).or(stream_machine.clone()).ok_or("the stream has no configuration section: give --machine")?;
    let header_machine = stream_machine;
    let blocks = events.iter().find_map(|e| match e {
        Event::RamSetup { blocks, .. } => Some(blocks.clone()),
        _ => None,
    });
    let blocks = blocks.ok_or("the stream has no RAM setup section")?;
    // Each device's plug state and requested size: its early section (machine types with
    // early migration), else its late `<pci>/virtio-mem` section, which carries the plug state
    // when early migration is off (virtio_mem_vmstate_field_exists, hw/virtio/virtio-mem.c).
    // An early section has no requested size: the destination is taken to request what is
    // plugged; a late one has the source's.
    let plugs: Vec<(&str, &PlugState, Bytes)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Early { idstr, state, .. } => Some((idstr.trim_end_matches("/virtio-mem-device-early"), state, state.size)),
            Event::Late { idstr, state: LateState { plug: Some(p), requested_size, .. }, .. } => Some((idstr.trim_end_matches("/virtio-mem"), p, *requested_size)),
            _ => None,
        })
        .collect();
    if plugs.is_empty() {
        return Err("the stream has no virtio-mem plug state: no virtio-mem-device-early section and no late virtio-mem section that carries it (no virtio-mem device?)".into());
    }
    // A device's RAM block is `<pci>/<memdev>`: index the blocks by the part before the first
    // '/' that some device's section names, the first block of each (one pass, not one per device).
    let pcis: HashSet<&str> = plugs.iter().map(|(pci, _, _)| *pci).collect();
    let mut memdev_of: HashMap<&str, &str> = HashMap::new();
    for (n, _) in &blocks {
        for (i, _) in n.match_indices('/') {
            if pcis.contains(&n[..i]) {
                memdev_of.entry(&n[..i]).or_insert(&n[i + 1..]);
            }
        }
    }
    let mut devices = Vec::new();
    for (pci, state, requested) in &plugs {
        let memdev = memdev_of.get(pci).ok_or_else(|| format!("no RAM block for {}", escaped(pci)))?.to_string();
        devices.push(DeviceConfig {
            id: format!("vmem{}", devices.len()),
            pci: pci.to_string(),
            memdev,
            memaddr: state.sanity.addr,
            region_size: state.sanity.region_size,
            block_size: Some(state.sanity.block_size),
            node: state.sanity.node,
            prealloc,
            early_migration: None,
            requested_size: *requested,
            memdev_prealloc: false,
        });
    }
    let max_node = plugs.iter().map(|(_, st, _)| st.sanity.node).filter(|n| *n > 0).max();
    let device_blocks: HashSet<String> = devices.iter().map(DeviceConfig::ram_block_name).collect();
    let others: Vec<(String, Bytes)> = blocks.iter().filter(|(n, _)| !device_blocks.contains(n)).map(|(n, l)| (n.clone(), Bytes(*l))).collect();
    let main = others.iter().find(|(n, _)| n == vmemsim_model::vm::MAIN_RAM).map_or(0, |(_, l)| l.0);
    let extra_ram: Vec<(String, Bytes)> = others.into_iter().filter(|(n, _)| n != vmemsim_model::vm::MAIN_RAM).collect();
    // NUMA nodes as many as the highest node a device names (none when all are node 0).
    let numa_nodes = match max_node {
        None => 0,
        Some(n) => n.checked_add(1).ok_or_else(|| format!("a virtio-mem section names NUMA node {n}: no machine has that many nodes"))?,
    };
    let cfg = VmConfig {
        qemu: *qemu,
        machine: MachineType::parse_for(&machine, qemu).map_err(|e| match e.hint() {
            Some(h) => format!("{e}: {h}"),
            None => e.to_string(),
        })?,
        memory: match &dest {
            DestMemory::One(backend) => vmemsim_model::Memory::one_backend(*backend, devices.iter().map(|d| d.memdev.clone())),
            DestMemory::PerMemdev(m, preallocs) => {
                for d in &mut devices {
                    if let Some((_, p)) = preallocs.iter().find(|(pci, _)| *pci == d.pci) {
                        d.prealloc = *p;
                    }
                }
                for d in &devices {
                    if m.memdev(&d.memdev).is_none() {
                        let have: Vec<&str> = m.memdevs.iter().map(|x| x.id.as_str()).collect();
                        return Err(format!("the stream's device {} has memdev '{}', which the destination does not have (its memdevs: {})", escaped(&d.pci), escaped(&d.memdev), have.join(", ")));
                    }
                }
                m.clone()
            }
        },
        devices,
        main_ram: Bytes(main),
        extra_ram,
        facts: HostFacts { numa_nodes, ..HostFacts::default() },
        variant: Variant::Faithful,
    };
    let vm_prealloc: Vec<bool> = cfg.devices.iter().map(|d| d.prealloc).collect();
    let (vm, _) = Vm::realize(&cfg).map_err(|e| e.to_string())?;
    let mut stream_blocks: HashMap<&str, usize> = HashMap::new();
    for (i, (n, _)) in blocks.iter().enumerate() {
        stream_blocks.entry(n.as_str()).or_insert(i);
    }
    let header = match header_machine {
        Some(m) => m,
        // No configuration section: the header is the destination's own (nothing to compare).
        None => vm.machine.name().to_string(),
    };
    let mut items = vec![Item::Header { machine: header }, Item::RamSetup { blocks: blocks.iter().map(|(n, l)| (n.clone(), Bytes(*l))).collect() }];
    let mut needed = 0u64;
    for e in events {
        match e {
            Event::Early { idstr, state, .. } => {
                needed = needed.checked_add(state.size.0).ok_or_else(|| format!("the early sections' plugged sizes add up to more than 2^64 bytes (at {}): not a stream QEMU writes", escaped(idstr)))?;
                items.push(Item::Early(Box::new(EarlySection { idstr: idstr.clone(), state: state.clone() })));
            }
            // The late section with the plug state (old machine types), where the stream has
            // it: after the RAM, so the pages land before the bitmap does. Without the plug
            // state (early migration on) it is not fed, as before [INF: the model's
            // destination would check the early section came and discard unplugged memory].
            Event::Late { idstr, state: LateState { plug: Some(p), usable_region_size, requested_size, .. }, .. } => {
                needed = needed.checked_add(p.size.0).ok_or_else(|| format!("the plugged sizes add up to more than 2^64 bytes (at {}): not a stream QEMU writes", escaped(idstr)))?;
                items.push(Item::Late(Box::new(LateSection { idstr: idstr.clone(), usable_region_size: *usable_region_size, requested_size: *requested_size, plug: Some(p.clone()) })));
            }
            Event::RamPages { block, offset, pages, kind } => {
                // The decoder refuses a second setup section and names outside the first, so this
                // holds for its output; events from elsewhere get an error, not a panic.
                let b = *stream_blocks.get(block.as_str()).ok_or_else(|| format!("RAM pages of block '{}', which the setup section does not list", escaped(block)))?;
                items.push(Item::Ram { block: b, offset: Bytes(*offset), len: Bytes(pages * 4096), kind: *kind });
            }
            Event::Command { cmd: 11, .. } => items.push(Item::SwitchoverStart),
            _ => {}
        }
    }
    items.push(Item::Eof);
    let (outcome, failed, unbacked) = restore(Destination::new(vm), &items);
    let source = vmemsim_model::migration::source_fate::source_fate(&items, failed, &outcome, qemu);
    let judgement = vmemsim_model::migration::verdict::judge(&outcome, &source, unbacked);
    let (available, mut report) = match &dest {
        DestMemory::One(backend) => {
            let available = backend.capacity.limit();
            (available, format!("destination: machine {machine}, {} memory, capacity {}\n", backend.kind.name(), available.map_or("unlimited".into(), |c| c.to_string())))
        }
        DestMemory::PerMemdev(m, _) => {
            let mut r = format!("destination: machine {machine}\n");
            for md in &m.memdevs {
                let limits: Vec<String> = m.draws(md).iter().flatten().map(|l| format!("{} ({})", m.limits[l.0].kind.describe(), m.limits[l.0].capacity.limit().map_or("unlimited".into(), |c| c.to_string()))).collect();
                r += &format!("  memdev {}: {} memory, {}\n", md.id, md.kind.name(), if limits.is_empty() { "no limit".into() } else { limits.join(", ") });
            }
            (None, r)
        }
    };
    report += &format!("plugged virtio-mem memory in the stream: {}\n", Bytes(needed));
    let preallocs: Vec<bool> = vm_prealloc.clone();
    report += &format!("prealloc: {}\n", if preallocs.iter().all(|p| *p) { "on".to_string() } else if preallocs.iter().all(|p| !*p) { "off".to_string() } else { preallocs.iter().map(|p| if *p { "on" } else { "off" }).collect::<Vec<_>>().join(", ") });
    Ok(Preflight { outcome, source, judgement, needed: Bytes(needed), available, report })
}

/// The restore `feed` does, keeping what the whole-migration verdict needs: the index of the
/// item the destination failed on, and after a completed restore its unbacked memory.
fn restore(mut dest: Destination<vmemsim_model::ModelMemory>, items: &[Item]) -> (Outcome, Option<usize>, Option<vmemsim_model::migration::verdict::Unbacked>) {
    for (i, item) in items.iter().enumerate() {
        if let Err(outcome) = dest.apply(item) {
            return (outcome, Some(i), None);
        }
    }
    if let Err(outcome) = dest.run_guest(&[], &[]) {
        return (outcome, None, None);
    }
    let unbacked = dest.unbacked();
    (dest.finish(), None, Some(unbacked))
}

/// Parses `--backend KIND --capacity SIZE` into a backend.
pub fn backend_of(kind: &str, capacity: &str) -> Result<Backend, String> {
    let kind: BackendKind = serde_json::from_value(Value::from(kind)).map_err(|_| {
        format!("unknown backend '{kind}': one of {}", BackendKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "))
    })?;
    let capacity = if capacity == "unlimited" { Capacity::Unlimited } else { Capacity::Limited(capacity.parse::<Bytes>().map_err(|e| e.to_string())?) };
    Ok(Backend { kind, page_size: kind.default_page_size(), capacity })
}

/// Reads a stream and returns its events, for callers that have the bytes in memory.
pub fn events_of(bytes: &[u8]) -> Result<Vec<Event>, String> {
    let vmdesc = find_vmdesc(&mut std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut d = Decoder::new(std::io::Cursor::new(bytes), vmdesc);
    let mut out = Vec::new();
    while let Some(e) = d.next_event().map_err(|e| e.to_string())? {
        out.push(e);
    }
    Ok(out)
}
