//! The encoder: a precopy file stream for a model migration, in the layout QEMU writes and
//! analyze-migration.py reads (reference qemu-migration.md §5, §7): header and configuration,
//! the RAM setup section, the early virtio-mem sections, the RAM pages, EOF and the JSON VM
//! description. The late `…/virtio-mem` sections are not written: the framing of
//! VMSTATE_VIRTIO_DEVICE around them is not in the reference.

use std::io::Write;

use serde_json::{json, Value};

use super::{ram, ty, MAGIC, VERSION};
use crate::host::{HostMemory, PageKind};
use crate::migration::item::Item;
use crate::migration::plan::Plan;
use crate::migration::source::{page_runs, plug_state};
use crate::vm::Vm;

/// The section id of `ram` (QEMU registers it early; 2 in the reference's streams).
pub const RAM_SECTION: u32 = 2;
/// The section id of the first device's early section (51 in the seed commit's example).
pub const FIRST_EARLY_SECTION: u32 = 51;

fn counted(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 128, "analyze-migration.py reads counted strings as signed bytes");
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn footer(out: &mut Vec<u8>, id: u32) {
    out.push(ty::SECTION_FOOTER);
    out.extend_from_slice(&id.to_be_bytes());
}

fn section(out: &mut Vec<u8>, t: u8, id: u32, idstr: &str, version: u32) {
    out.push(t);
    out.extend_from_slice(&id.to_be_bytes());
    counted(out, idstr);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
}

/// The VM description entry of an early section (qemu-migration.md §5.9).
fn early_desc(idstr: &str, bitmap_bytes: usize) -> Value {
    json!({"name": idstr, "instance_id": 0, "vmsd_name": "virtio-mem-device-early", "version": 1, "fields": [
        {"name": "tmp", "type": "tmp", "vmsd_name": "virtio-mem-device/sanity-checks", "version": 0, "fields": [
            {"name": "addr", "type": "uint64", "size": 8}, {"name": "region_size", "type": "uint64", "size": 8},
            {"name": "block_size", "type": "uint64", "size": 8}, {"name": "node", "type": "uint32", "size": 4}], "size": 28},
        {"name": "size", "type": "uint64", "size": 8},
        {"name": "bitmap", "type": "bitmap", "size": bitmap_bytes}]})
}

/// Writes the precopy stream of migrating `src` with `plan` (free page hints and guest data
/// shape the pages) to `w`.
pub fn encode_precopy<H: HostMemory, W: Write>(src: &Vm<H>, plan: &Plan, mut w: W) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&VERSION.to_be_bytes());
    let machine = src.machine.name();
    out.push(ty::CONFIGURATION);
    out.extend_from_slice(&(machine.len() as u32).to_be_bytes());
    out.extend_from_slice(machine.as_bytes());
    // Setup: the RAM block list.
    section(&mut out, ty::SECTION_START, RAM_SECTION, "ram", 4);
    let total: u64 = src.blocks.iter().map(|b| b.len.0).sum();
    out.extend_from_slice(&(total | ram::MEM_SIZE).to_be_bytes());
    for b in &src.blocks {
        counted(&mut out, &b.name);
        out.extend_from_slice(&b.len.0.to_be_bytes());
    }
    out.extend_from_slice(&ram::EOS.to_be_bytes());
    footer(&mut out, RAM_SECTION);
    // Setup: the early sections.
    let mut devices = Vec::new();
    for (i, d) in src.devices.iter().filter(|d| d.early_migration()).enumerate() {
        let id = FIRST_EARLY_SECTION + i as u32;
        let idstr = d.early_idstr();
        section(&mut out, ty::SECTION_FULL, id, &idstr, 1);
        let st = plug_state(d);
        out.extend_from_slice(&st.sanity.addr.0.to_be_bytes());
        out.extend_from_slice(&st.sanity.region_size.0.to_be_bytes());
        out.extend_from_slice(&st.sanity.block_size.0.to_be_bytes());
        out.extend_from_slice(&st.sanity.node.to_be_bytes());
        out.extend_from_slice(&st.size.0.to_be_bytes());
        let bitmap = st.plug.to_bitmap();
        let words = bitmap.as_raw_slice();
        let nwords = bitmap.len().div_ceil(64);
        for w in &words[..nwords] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        footer(&mut out, id);
        devices.push(early_desc(&idstr, nwords * 8));
    }
    w.write_all(&out)?;
    out.clear();
    // Iteration: the pages, in one PART section.
    out.push(ty::SECTION_PART);
    out.extend_from_slice(&RAM_SECTION.to_be_bytes());
    let mut last_block = None;
    let page = vec![0x5au8; 4096];
    for item in page_runs(src, plan) {
        let Item::Ram { block, offset, len, kind } = item else { unreachable!("page runs only") };
        for p in (0..len.0).step_by(4096) {
            let flag = if kind == PageKind::Zero { ram::ZERO } else { ram::PAGE };
            let cont = if last_block == Some(block) { ram::CONTINUE } else { 0 };
            out.extend_from_slice(&((offset.0 + p) | flag | cont).to_be_bytes());
            if cont == 0 {
                counted(&mut out, &src.blocks[block].name);
                last_block = Some(block);
            }
            if kind == PageKind::Zero {
                out.push(0);
            } else {
                out.extend_from_slice(&page);
            }
            if out.len() > 1 << 20 {
                w.write_all(&out)?;
                out.clear();
            }
        }
    }
    out.extend_from_slice(&ram::EOS.to_be_bytes());
    footer(&mut out, RAM_SECTION);
    if src.machine.sends_switchover_start() {
        out.push(ty::COMMAND);
        out.extend_from_slice(&11u16.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
    }
    // Completion: the rest of RAM (nothing left) and EOF.
    out.push(ty::SECTION_END);
    out.extend_from_slice(&RAM_SECTION.to_be_bytes());
    out.extend_from_slice(&ram::EOS.to_be_bytes());
    footer(&mut out, RAM_SECTION);
    out.push(ty::EOF);
    let desc = json!({
        "configuration": {"vmsd_name": "configuration", "version": 1, "fields": [
            {"name": "len", "type": "uint32", "size": 4}, {"name": "name", "type": "buffer", "size": machine.len()}]},
        "page_size": 4096,
        "devices": devices,
    });
    // QEMU's JSON writer separates with ", " and ": " (qobject/json-writer.c).
    let mut text = compact_qemu_style(&desc);
    // analyze-migration.py finds the description by the last NUL before it: a length with a
    // '{' after its last zero byte hides it; pad with spaces (qemu-migration.md §6).
    loop {
        let len = (text.len() as u32).to_be_bytes();
        let last_zero = len.iter().rposition(|b| *b == 0);
        if !len.iter().skip(last_zero.map_or(0, |z| z + 1)).any(|b| *b == b'{') {
            break;
        }
        text.push(' ');
    }
    out.push(ty::VMDESCRIPTION);
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    w.write_all(&out)
}

/// JSON in the style of QEMU's writer: compact, with ", " and ": " separators.
fn compact_qemu_style(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), compact_qemu_style(v))).collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(compact_qemu_style).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}
