//! The set-up lines a trace starts with (both sides' QEMU, machine, memory and devices), as
//! text and as the words the trace hash takes them as: each field a line shows.

use vmemsim_model::migration::outcome::Stage;
use vmemsim_model::{Capacity, Memory, QemuVersion};

use crate::build::Built;
use crate::trace::TraceHasher;

fn cap(c: Capacity) -> String {
    c.limit().map_or("unlimited".to_string(), |c| format!("{:#x}", c.0))
}

fn side_lines(name: &str, version: QemuVersion, machine: &str, memory: &Memory, variant: &str) -> Vec<String> {
    if let Some(backend) = memory.single_backend() {
        return vec![format!(
            "{name} qemu={version} machine={machine} backend={} page={} capacity={} variant={variant}",
            backend.kind.name(),
            backend.page_size,
            cap(backend.capacity),
        )];
    }
    let mut lines = vec![format!("{name} qemu={version} machine={machine} variant={variant}")];
    for l in &memory.limits {
        lines.push(format!("{name} limit: {} capacity={}", l.kind.describe(), cap(l.capacity)));
    }
    for m in &memory.memdevs {
        let main = if memory.main.as_deref() == Some(m.id.as_str()) { " (main RAM)" } else { "" };
        let nodes = if m.host_nodes.is_empty() { String::new() } else { format!(" bound to nodes {:?}", m.host_nodes) };
        lines.push(format!("{name} memdev {}{main}: {} page={}{nodes}", m.id, m.kind.name(), m.page_size));
    }
    lines
}

/// How many lines one side's QEMU and memory take.
fn side_count(memory: &Memory) -> usize {
    if memory.single_backend().is_some() {
        1
    } else {
        1 + memory.limits.len() + memory.memdevs.len()
    }
}

/// How many set-up lines a run of `b` starts with.
pub fn count(b: &Built) -> usize {
    side_count(&b.source_memory) + b.source.devices.len() + side_count(&b.destination.memory) + b.destination.devices.len()
}

/// The set-up lines.
pub fn lines(b: &Built) -> Vec<String> {
    let variant = b.destination.variant.name();
    let mut lines = side_lines("source", b.source_qemu.version, b.source.machine.name(), &b.source_memory, variant);
    for d in &b.source.devices {
        lines.push(format!("source {} ({}): {}", d.id(), d.pci(), d.summary()));
    }
    let dst = &b.destination;
    lines.extend(side_lines("destination", dst.qemu.version, dst.machine.name(), &dst.memory, variant));
    for d in &dst.devices {
        lines.push(format!(
            "destination {} ({}): memaddr {} region {} block {} node {} prealloc={} x-early-migration={}",
            d.id,
            d.pci,
            d.memaddr,
            d.region_size,
            d.block_size.map_or("default".to_string(), |b| b.to_string()),
            d.node,
            d.prealloc,
            d.early_migration.map_or("machine-default".to_string(), |b| b.to_string())
        ));
    }
    debug_assert_eq!(lines.len(), count(b));
    lines
}

fn version_words(h: &mut TraceHasher, v: QemuVersion) {
    h.word(u64::from(v.major));
    h.word(u64::from(v.minor));
    h.word(u64::from(v.micro));
}

fn capacity_word(h: &mut TraceHasher, c: Capacity) {
    match c.limit() {
        Some(b) => {
            h.word(1);
            h.word(b.0);
        }
        None => h.word(0),
    }
}

fn side_words(h: &mut TraceHasher, version: QemuVersion, machine: &str, memory: &Memory) {
    version_words(h, version);
    h.str(machine);
    if let Some(backend) = memory.single_backend() {
        h.word(1);
        h.str(backend.kind.name());
        h.word(backend.page_size.0);
        capacity_word(h, backend.capacity);
        return;
    }
    h.word(2);
    h.word(memory.limits.len() as u64);
    for l in &memory.limits {
        h.str(&l.kind.describe());
        capacity_word(h, l.capacity);
    }
    h.word(memory.memdevs.len() as u64);
    for m in &memory.memdevs {
        h.str(&m.id);
        h.flag(memory.main.as_deref() == Some(m.id.as_str()));
        h.str(m.kind.name());
        h.word(m.page_size.0);
        h.word(m.host_nodes.len() as u64);
        m.host_nodes.iter().for_each(|&n| h.word(u64::from(n)));
    }
}

fn option_word(h: &mut TraceHasher, o: Option<u64>) {
    match o {
        Some(v) => {
            h.word(1);
            h.word(v);
        }
        None => h.word(0),
    }
}

/// The set-up's fields, as [`lines`] shows them.
pub fn hash(b: &Built, h: &mut TraceHasher) {
    h.str(b.destination.variant.name());
    side_words(h, b.source_qemu.version, b.source.machine.name(), &b.source_memory);
    for d in &b.source.devices {
        h.str(d.id());
        h.str(d.pci());
        [d.region_size().0, d.block_size().0, d.requested_size().0, d.size().0, d.plug_map().plugged_runs().count() as u64].into_iter().for_each(|w| h.word(w));
        h.flag(d.prealloc());
        h.flag(d.early_migration());
    }
    let dst = &b.destination;
    side_words(h, dst.qemu.version, dst.machine.name(), &dst.memory);
    for d in &dst.devices {
        h.str(&d.id);
        h.str(&d.pci);
        h.word(d.memaddr.0);
        h.word(d.region_size.0);
        option_word(h, d.block_size.map(|b| b.0));
        h.word(u64::from(d.node));
        h.flag(d.prealloc);
        option_word(h, d.early_migration.map(u64::from));
    }
}

/// A stage as words: its kind, then the idstr of a section.
pub fn stage_words(h: &mut TraceHasher, s: &Stage) {
    let (kind, id) = match s {
        Stage::Startup => (0, None),
        Stage::Header => (1, None),
        Stage::Advise => (2, None),
        Stage::RamSetup => (3, None),
        Stage::EarlySection(id) => (4, Some(id)),
        Stage::RamLoad => (5, None),
        Stage::PostcopyDiscard => (6, None),
        Stage::Listen => (7, None),
        Stage::LateSection(id) => (8, Some(id)),
        Stage::PostcopyPlacement => (9, None),
        Stage::Run => (10, None),
        Stage::Eof => (11, None),
        Stage::GuestRuntime => (12, None),
    };
    h.word(kind);
    if let Some(id) = id {
        h.str(id);
    }
}
