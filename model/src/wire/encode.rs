//! The encoder: a precopy file stream for a model migration, in the layout QEMU writes and
//! analyze-migration.py reads (reference qemu-migration.md §5, §7): header and configuration,
//! the RAM setup section, the early virtio-mem sections, the RAM pages, EOF and the JSON VM
//! description. The late `…/virtio-mem` sections are not written: the framing of
//! VMSTATE_VIRTIO_DEVICE around them is not in the reference.

use std::io::{BufWriter, Write};

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

/// The stream being written: a buffer of at most [`BUF`] bytes in front of the caller's writer,
/// so memory stays bounded whatever the stream's size.
struct Out<W: Write>(BufWriter<W>);

/// The write buffer's size.
const BUF: usize = 1 << 20;

impl<W: Write> Out<W> {
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.0.write_all(b)
    }
    fn u8(&mut self, b: u8) -> std::io::Result<()> {
        self.bytes(&[b])
    }
    fn be32(&mut self, v: u32) -> std::io::Result<()> {
        self.bytes(&v.to_be_bytes())
    }
    fn be64(&mut self, v: u64) -> std::io::Result<()> {
        self.bytes(&v.to_be_bytes())
    }
    fn counted(&mut self, s: &str) -> std::io::Result<()> {
        // analyze-migration.py reads counted strings as signed bytes: a longer name (from the
        // scenario's pci or memdev) is the input's error, not a bug.
        if s.len() >= 128 {
            let why = format!("'{}' has {} bytes: a stream's names hold at most 127", super::escaped(s), s.len());
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
        }
        self.u8(s.len() as u8)?;
        self.bytes(s.as_bytes())
    }
    fn footer(&mut self, id: u32) -> std::io::Result<()> {
        self.u8(ty::SECTION_FOOTER)?;
        self.be32(id)
    }
    fn section(&mut self, t: u8, id: u32, idstr: &str, version: u32) -> std::io::Result<()> {
        self.u8(t)?;
        self.be32(id)?;
        self.counted(idstr)?;
        self.be32(0)?;
        self.be32(version)
    }
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
/// shape the pages) to `w`, record by record through a 1 MiB buffer: the stream is never held
/// in memory.
pub fn encode_precopy<H: HostMemory>(src: &Vm<H>, plan: &Plan, w: &mut impl Write) -> std::io::Result<()> {
    let mut out = Out(BufWriter::with_capacity(BUF, w));
    out.be32(MAGIC)?;
    out.be32(VERSION)?;
    let machine = src.machine.name();
    out.u8(ty::CONFIGURATION)?;
    out.be32(machine.len() as u32)?;
    out.bytes(machine.as_bytes())?;
    // Setup: the RAM block list.
    out.section(ty::SECTION_START, RAM_SECTION, "ram", 4)?;
    let total: u64 = src.blocks.iter().map(|b| b.len.0).sum();
    out.be64(total | ram::MEM_SIZE)?;
    for b in &src.blocks {
        out.counted(&b.name)?;
        out.be64(b.len.0)?;
    }
    out.be64(ram::EOS)?;
    out.footer(RAM_SECTION)?;
    // Setup: the early sections.
    let mut devices = Vec::new();
    for (i, d) in src.devices.iter().filter(|d| d.early_migration()).enumerate() {
        let id = FIRST_EARLY_SECTION + i as u32;
        let idstr = d.early_idstr();
        out.section(ty::SECTION_FULL, id, &idstr, 1)?;
        let st = plug_state(d);
        out.be64(st.sanity.addr.0)?;
        out.be64(st.sanity.region_size.0)?;
        out.be64(st.sanity.block_size.0)?;
        out.be32(st.sanity.node)?;
        out.be64(st.size.0)?;
        let bitmap = st.plug.to_bitmap();
        let words = bitmap.as_raw_slice();
        let nwords = bitmap.len().div_ceil(64);
        for w in &words[..nwords] {
            out.be64(*w)?;
        }
        out.footer(id)?;
        devices.push(early_desc(&idstr, nwords * 8));
    }
    // Iteration: the pages, in one PART section.
    out.u8(ty::SECTION_PART)?;
    out.be32(RAM_SECTION)?;
    let mut last_block = None;
    let page = [0x5au8; 4096];
    for item in page_runs(src, plan) {
        let Item::Ram { block, offset, len, kind } = item else { unreachable!("page runs only") };
        for p in (0..len.0).step_by(4096) {
            let flag = if kind == PageKind::Zero { ram::ZERO } else { ram::PAGE };
            let cont = if last_block == Some(block) { ram::CONTINUE } else { 0 };
            out.be64((offset.0 + p) | flag | cont)?;
            if cont == 0 {
                out.counted(&src.blocks[block].name)?;
                last_block = Some(block);
            }
            if kind == PageKind::Zero {
                out.u8(0)?;
            } else {
                out.bytes(&page)?;
            }
        }
    }
    out.be64(ram::EOS)?;
    out.footer(RAM_SECTION)?;
    if src.machine.sends_switchover_start() {
        out.u8(ty::COMMAND)?;
        out.bytes(&11u16.to_be_bytes())?;
        out.bytes(&0u16.to_be_bytes())?;
    }
    // Completion: the rest of RAM (nothing left) and EOF.
    out.u8(ty::SECTION_END)?;
    out.be32(RAM_SECTION)?;
    out.be64(ram::EOS)?;
    out.footer(RAM_SECTION)?;
    out.u8(ty::EOF)?;
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
    out.u8(ty::VMDESCRIPTION)?;
    out.be32(text.len() as u32)?;
    out.bytes(text.as_bytes())?;
    out.0.flush()
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
