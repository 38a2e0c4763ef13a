//! The streaming decoder. It reads a file/exec stream record by record, keeping only the RAM
//! block list, the current block and the section table, and skipping page bytes, so memory stays
//! bounded by the bitmaps whatever the stream's size. Sections other than `ram` and
//! `virtio-mem-device-early` are parsed with the JSON VM description QEMU writes at the end.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};

use serde_json::{Map, Value};

use super::late::{self, LateState};
use super::{command_name, escaped, ram, ty, WireError, MAGIC, VERSION};
use crate::plug_map::{Bitmap, PlugMap};
use crate::host::PageKind;
use crate::migration::item::{PlugState, SanityFields};
use crate::units::{Bytes, Gpa};

/// The target page size of x86 (`TARGET_PAGE_SIZE`): RAM record offsets are in these.
pub const PAGE: u64 = 4096;

/// One decoded record.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Configuration { machine: String },
    Command { cmd: u16, name: &'static str, len: u16 },
    /// START section of `ram`: the block list.
    RamSetup { section: u32, blocks: Vec<(String, u64)> },
    /// Consecutive pages of one block of one kind, merged.
    RamPages { block: String, offset: u64, pages: u64, kind: PageKind },
    /// `virtio-mem-device-early`, with the raw bytes analyze-migration.py prints.
    Early { section: u32, idstr: String, instance: u32, state: PlugState, tmp: Vec<u8>, bitmap_bytes: Vec<u8> },
    /// Any other FULL section, parsed with the VM description, in analyze-migration.py's form.
    Device { section: u32, idstr: String, instance: u32, fields: Map<String, Value> },
    /// The late `<pci>/virtio-mem` section ([`super::late`]): the plug state on machine types
    /// without early migration, the two sizes on the others; `fields` as for `Device`.
    Late { section: u32, idstr: String, instance: u32, state: LateState, fields: Map<String, Value> },
    Eof,
    VmDescription(Value),
}

/// Reads a stream from `r`. `vmdesc` is the VM description (see [`find_vmdesc`]), if known.
pub struct Decoder<R: Read> {
    r: R,
    offset: u64,
    vmdesc: Option<Value>,
    /// Section id → (idstr, instance), the first START/FULL of each id.
    sections: HashMap<u32, (String, u32)>,
    blocks: Vec<(String, u64)>,
    /// Block name → index in `blocks` (the first of a name), so lookup is O(1) per record.
    block_index: HashMap<String, usize>,
    /// The early sections seen, by idstr: each may come once; and whether the ram setup came.
    early_seen: HashSet<String>,
    ram_setup_seen: bool,
    /// The end of the input, when known (a sub-decoder over one section's bytes): bounds what
    /// an `array_len` may ask for.
    limit: Option<u64>,
    current: Option<usize>,
    /// The page run being merged: (block index, offset, pages, kind).
    pending: Option<(usize, u64, u64, PageKind)>,
    in_ram: bool,
    ram_section: u32,
    state: State,
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum State {
    Header,
    Body,
    AfterEof,
    Done,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

impl<R: Read> Decoder<R> {
    pub fn new(r: R, vmdesc: Option<Value>) -> Decoder<R> {
        Decoder {
            r,
            offset: 0,
            vmdesc,
            sections: HashMap::new(),
            blocks: Vec::new(),
            block_index: HashMap::new(),
            early_seen: HashSet::new(),
            ram_setup_seen: false,
            limit: None,
            current: None,
            pending: None,
            in_ram: false,
            ram_section: 0,
            state: State::Header,
        }
    }

    /// The bytes left before `limit`, if the input's end is known.
    fn left(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.offset))
    }

    /// The byte offset of the next byte to be read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), WireError> {
        let mut done = 0;
        while done < buf.len() {
            match self.r.read(&mut buf[done..]) {
                Ok(0) => return Err(WireError::Truncated { offset: self.offset + done as u64, expected: what.to_string() }),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WireError::Io(e.to_string())),
            }
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Reads `len` bytes, growing the buffer as data arrives: a corrupt length cannot make the
    /// decoder allocate more than the stream holds.
    fn read_vec(&mut self, len: usize, what: &str) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        while out.len() < len {
            let take = (len - out.len()).min(1 << 20);
            let start = out.len();
            out.resize(start + take, 0);
            self.read_exact(&mut out[start..], what)?;
        }
        Ok(out)
    }

    fn skip(&mut self, mut n: u64, what: &str) -> Result<(), WireError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let take = n.min(buf.len() as u64) as usize;
            self.read_exact(&mut buf[..take], what)?;
            n -= take as u64;
        }
        Ok(())
    }

    fn u8(&mut self, what: &str) -> Result<u8, WireError> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b, what)?;
        Ok(b[0])
    }
    fn be16(&mut self, what: &str) -> Result<u16, WireError> {
        let mut b = [0u8; 2];
        self.read_exact(&mut b, what)?;
        Ok(u16::from_be_bytes(b))
    }
    fn be32(&mut self, what: &str) -> Result<u32, WireError> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b, what)?;
        Ok(u32::from_be_bytes(b))
    }
    fn be64(&mut self, what: &str) -> Result<u64, WireError> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b, what)?;
        Ok(u64::from_be_bytes(b))
    }
    fn counted(&mut self, what: &str) -> Result<String, WireError> {
        let n = self.u8(what)? as usize;
        let mut b = vec![0u8; n];
        self.read_exact(&mut b, what)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    fn unexpected(&self, at: u64, expected: &str, found: String) -> WireError {
        WireError::Unexpected { offset: at, expected: expected.to_string(), found }
    }

    fn footer(&mut self, section: u32) -> Result<(), WireError> {
        let at = self.offset;
        let t = self.u8("a section footer (0x7e)")?;
        if t != ty::SECTION_FOOTER {
            return Err(self.unexpected(at, "a section footer (0x7e)", format!("byte {t:#04x}")));
        }
        let id = self.be32("the footer's section id")?;
        if id != section {
            return Err(self.unexpected(at + 1, &format!("the footer of section {section}"), format!("section {id}")));
        }
        Ok(())
    }

    /// The next record, `None` after the end.
    pub fn next_event(&mut self) -> Result<Option<Event>, WireError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Header => {
                    let at = self.offset;
                    let magic = self.be32("the magic 0x5145564d (\"QEVM\")")?;
                    if magic != MAGIC {
                        return Err(self.unexpected(at, "the magic 0x5145564d (\"QEVM\")", format!("{magic:#010x}")));
                    }
                    let at = self.offset;
                    let v = self.be32("the stream version 3")?;
                    if v != VERSION {
                        return Err(self.unexpected(at, "stream version 3", format!("version {v}")));
                    }
                    self.state = State::Body;
                }
                State::AfterEof => {
                    let at = self.offset;
                    let mut b = [0u8; 1];
                    match self.r.read(&mut b) {
                        Ok(0) => {
                            self.state = State::Done;
                            return Ok(None);
                        }
                        Ok(_) => self.offset += 1,
                        Err(e) => return Err(WireError::Io(e.to_string())),
                    }
                    if b[0] != ty::VMDESCRIPTION {
                        return Err(self.unexpected(at, "the VM description (0x06) or the end", format!("byte {:#04x}", b[0])));
                    }
                    let len = self.be32("the VM description's length")? as usize;
                    let start = self.offset;
                    let json = self.read_vec(len, "the VM description's JSON")?;
                    let v: Value = serde_json::from_slice(&json).map_err(|e| WireError::BadJson { offset: start, message: e.to_string() })?;
                    self.state = State::Done;
                    return Ok(Some(Event::VmDescription(v)));
                }
                State::Body => {
                    if self.in_ram {
                        if let Some(e) = self.ram_record()? {
                            return Ok(Some(e));
                        }
                        continue;
                    }
                    let at = self.offset;
                    let t = self.u8("a section type")?;
                    return match t {
                        ty::CONFIGURATION => {
                            let len = self.be32("the machine type's length")? as usize;
                            let b = self.read_vec(len, "the machine type")?;
                            // vmstate_configuration (migration/savevm.c) has subsections
                            // (configuration/capabilities, /uuid, /target-page-bits) after the
                            // name, with no footer: read those the description lists, in place.
                            let subs = self.vmdesc.as_ref().and_then(|d| d.get("configuration")?.get("subsections").cloned());
                            if let Some(subs) = subs {
                                self.vmsd_body(&serde_json::json!({ "subsections": subs }), "configuration")?;
                            }
                            Ok(Some(Event::Configuration { machine: String::from_utf8_lossy(&b).into_owned() }))
                        }
                        ty::COMMAND => {
                            let cmd = self.be16("a command number")?;
                            let len = self.be16("a command length")?;
                            self.skip(len as u64, "the command's data")?;
                            if cmd == 7 {
                                // PACKAGED: the package follows the command; a file stream never
                                // has one (postcopy needs a return path).
                                return Err(self.unexpected(at, "a precopy file stream", "a postcopy package".into()));
                            }
                            Ok(Some(Event::Command { cmd, name: command_name(cmd), len }))
                        }
                        ty::SECTION_START | ty::SECTION_FULL => self.section_start(at, t).map(Some),
                        ty::SECTION_PART | ty::SECTION_END => {
                            let id = self.be32("a section id")?;
                            let Some((idstr, _)) = self.sections.get(&id).cloned() else {
                                return Err(self.unexpected(at + 1, "the id of a section started before", format!("section {id}")));
                            };
                            if idstr != "ram" {
                                return Err(WireError::UnknownSection { offset: at, idstr });
                            }
                            self.in_ram = true;
                            self.ram_section = id;
                            continue;
                        }
                        ty::EOF => {
                            self.state = State::AfterEof;
                            Ok(Some(Event::Eof))
                        }
                        other => Err(self.unexpected(at, "a section, command, configuration or EOF", format!("byte {other:#04x}"))),
                    };
                }
            }
        }
    }

    fn flush_pending(&mut self) -> Option<Event> {
        self.pending.take().map(|(b, offset, pages, kind)| Event::RamPages { block: self.blocks[b].0.clone(), offset, pages, kind })
    }

    /// One record of a RAM section; `Some` when a merged page run or the section is complete.
    fn ram_record(&mut self) -> Result<Option<Event>, WireError> {
        let at = self.offset;
        let word = self.be64("a RAM record")?;
        let flags = word & (PAGE - 1);
        let addr = word & !(PAGE - 1);
        if flags & ram::EOS != 0 {
            self.footer(self.ram_section)?;
            self.in_ram = false;
            return Ok(self.flush_pending());
        }
        if flags & ram::MULTIFD_FLUSH != 0 && flags & (ram::ZERO | ram::PAGE) == 0 {
            return Ok(None);
        }
        let kind = match flags & !ram::CONTINUE {
            ram::ZERO => PageKind::Zero,
            ram::PAGE => PageKind::Normal,
            other => return Err(self.unexpected(at, "a RAM record: PAGE, ZERO, EOS or MULTIFD_FLUSH", format!("flags {other:#x}"))),
        };
        let block = if flags & ram::CONTINUE != 0 {
            self.current.ok_or_else(|| self.unexpected(at, "a block name before the first CONTINUE record", "CONTINUE".into()))?
        } else {
            let name_at = self.offset;
            let name = self.counted("a RAM block name")?;
            let b = *self.block_index.get(&name).ok_or_else(|| self.unexpected(name_at, "a RAM block from the setup section", format!("'{}'", escaped(&name))))?;
            self.current = Some(b);
            b
        };
        if addr >= self.blocks[block].1 {
            return Err(self.unexpected(at, &format!("an offset inside '{}' ({:#x})", escaped(&self.blocks[block].0), self.blocks[block].1), format!("{addr:#x}")));
        }
        match kind {
            PageKind::Zero => {
                let fill_at = self.offset;
                let fill = self.u8("the zero page's fill byte")?;
                if fill != 0 {
                    return Err(self.unexpected(fill_at, "the fill byte 0 of a zero page", format!("{fill:#04x}")));
                }
            }
            PageKind::Normal => self.skip(PAGE, "a page's 4096 bytes")?,
        }
        match &mut self.pending {
            Some((b, off, pages, k)) if *b == block && *k == kind && *off + *pages * PAGE == addr => {
                *pages += 1;
                Ok(None)
            }
            _ => {
                let done = self.flush_pending();
                self.pending = Some((block, addr, 1, kind));
                Ok(done)
            }
        }
    }

    fn section_start(&mut self, at: u64, t: u8) -> Result<Event, WireError> {
        let section = self.be32("a section id")?;
        let idstr = self.counted("a section name")?;
        let instance = self.be32("an instance id")?;
        let version = self.be32("a version")?;
        self.sections.entry(section).or_insert_with(|| (idstr.clone(), instance));
        if idstr == "ram" {
            if t != ty::SECTION_START || version != 4 {
                return Err(self.unexpected(at, "ram as a START section of version 4", format!("type {t:#04x}, version {version}")));
            }
            // ram_save_setup sends the block list once; a second list would rename the blocks
            // the pages already named. QEMU's ram_load_precopy would look each name up again
            // [INF]; the model refuses it here, where the offset is known.
            if std::mem::replace(&mut self.ram_setup_seen, true) {
                return Err(WireError::Repeated { offset: at, idstr, instance, why: "the RAM block list is sent once, in the first START section of ram (ram_save_setup)" });
            }
            let size_at = self.offset;
            let word = self.be64("the RAM size and MEM_SIZE flag")?;
            if word & ram::MEM_SIZE == 0 {
                return Err(self.unexpected(size_at, "the MEM_SIZE record", format!("{word:#x}")));
            }
            let mut total = word & !(PAGE - 1);
            let mut blocks = Vec::new();
            while total > 0 {
                let name = self.counted("a RAM block name")?;
                let len_at = self.offset;
                let len = self.be64("a RAM block length")?;
                total = total.checked_sub(len).ok_or_else(|| self.unexpected(len_at, "block lengths adding up to the RAM size", format!("{len:#x} too many")))?;
                blocks.push((name, len));
            }
            for (i, (n, _)) in blocks.iter().enumerate() {
                self.block_index.entry(n.clone()).or_insert(i);
            }
            self.blocks = blocks.clone();
            self.in_ram = true;
            self.ram_section = section;
            return Ok(Event::RamSetup { section, blocks });
        }
        if t == ty::SECTION_FULL && idstr.ends_with("/virtio-mem-device-early") {
            // QEMU's source sends each device's early section once (qemu_savevm_state_setup).
            // qemu_loadvm_section_start_full has no check of its own: find_se() finds the same
            // entry and vmstate_load() runs again, so a second copy would redo the sanity checks,
            // overwrite the bitmap and preallocate again [INF: read from savevm.c and
            // virtio_mem_post_load_early, not run]. The model's destination treats a second
            // copy as a bug of its source, so a decoded stream is refused here, with the offset.
            if !self.early_seen.insert(idstr.clone()) {
                return Err(WireError::Repeated { offset: at, idstr, instance, why: "QEMU sends each virtio-mem device's early section once" });
            }
            let mut tmp = vec![0u8; 28];
            self.read_exact(&mut tmp, "the sanity checks (28 bytes)")?;
            let be = |r: std::ops::Range<usize>| tmp[r].iter().fold(0u64, |a, b| a << 8 | *b as u64);
            let sanity = SanityFields { addr: Gpa(be(0..8)), region_size: Bytes(be(8..16)), block_size: Bytes(be(16..24)), node: be(24..28) as u32 };
            if sanity.block_size.0 == 0 || !sanity.block_size.is_power_of_two() || !sanity.region_size.is_multiple_of(sanity.block_size) {
                return Err(self.unexpected(at, "a power-of-two block size dividing the region", format!("region {:#x}, block {:#x}", sanity.region_size.0, sanity.block_size.0)));
            }
            let size = Bytes(self.be64("the plugged size")?);
            let nbits = (sanity.region_size.0 / sanity.block_size.0) as usize;
            if nbits > i32::MAX as usize {
                return Err(self.unexpected(at, "a bitmap QEMU's int32 bitmap_size can hold", format!("{nbits} bits")));
            }
            let bitmap_bytes = self.read_vec(nbits.div_ceil(64) * 8, "the plug bitmap")?;
            let words: Vec<u64> = bitmap_bytes.chunks(8).map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes"))).collect();
            let mut bitmap = Bitmap::from_vec(words);
            bitmap.truncate(nbits);
            self.footer(section)?;
            let state = PlugState { sanity, size, plug: std::sync::Arc::new(PlugMap::from_bitmap(&bitmap)) };
            return Ok(Event::Early { section, idstr, instance, state, tmp, bitmap_bytes });
        }
        // Any other section: read up to its footer (0x7e + its id, then the next record's
        // type), then parse those bytes with its VM description entry. A section the description
        // does not describe, or describes differently, is kept as its size.
        let desc = self.vmdesc.as_ref().and_then(|d| {
            d.get("devices")?.as_array()?.iter().find(|e| e.get("name").and_then(Value::as_str) == Some(&idstr) && e.get("instance_id").and_then(Value::as_u64) == Some(instance as u64)).cloned()
        });
        // The late virtio-mem section's layout is known without a description (late.rs).
        let is_late = t == ty::SECTION_FULL && idstr.ends_with("/virtio-mem");
        if desc.is_none() && self.vmdesc.is_none() && !is_late {
            return Err(WireError::UnknownSection { offset: at, idstr });
        }
        let body_start = self.offset;
        // The description lists virtio_save's bytes as one field "virtio" with their count
        // (vmsd_desc_field_end, migration/vmstate.c): read exactly those, then the footer.
        let described = desc.as_ref().filter(|_| is_late).and_then(virtio_field_size);
        let body = match described {
            Some(n) => {
                let b = self.read_vec(n as usize, &format!("the {n} bytes of virtio_save in section '{}' (the VM description's \"virtio\" field)", escaped(&idstr)))?;
                self.footer(section)?;
                b
            }
            None => self.until_footer(section, at, &idstr)?,
        };
        let fields = match desc {
            Some(d) => described_fields(&d, &body, body_start, &idstr),
            None => {
                let mut m = Map::new();
                m.insert("(not described)".into(), Value::from(format!("{} bytes", body.len())));
                m
            }
        };
        if is_late {
            // Without this device's early section the plug state is here
            // (virtio_mem_vmstate_field_exists, hw/virtio/virtio-mem.c): a mistake in it is an
            // error. With it, the late bytes add only the two sizes: a section that does not
            // decode is kept as its description gives it, as before.
            let pci = idstr.trim_end_matches("/virtio-mem");
            let with_plug = !self.early_seen.contains(&format!("{pci}/virtio-mem-device-early"));
            match late::decode(&body, body_start, &idstr, with_plug) {
                Ok(state) => return Ok(Event::Late { section, idstr, instance, state, fields }),
                Err(e) if with_plug => return Err(e),
                Err(_) => {}
            }
        }
        Ok(Event::Device { section, idstr, instance, fields })
    }

    /// Reads a section's bytes up to its footer (0x7e and its id, followed by a record type or
    /// the end), and the footer.
    fn until_footer(&mut self, section: u32, at: u64, idstr: &str) -> Result<Vec<u8>, WireError> {
        let id = section.to_be_bytes();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            // The message is built only when the stream ends: formatting it per byte made a
            // 16 MiB section cost seconds.
            let b = match self.u8("") {
                Ok(b) => b,
                Err(WireError::Truncated { offset, .. }) => {
                    return Err(WireError::Truncated { offset, expected: format!("the footer of section '{}' (started at byte {at})", escaped(idstr)) })
                }
                Err(e) => return Err(e),
            };
            buf.push(b);
            let n = buf.len();
            if n >= 5 && buf[n - 5] == ty::SECTION_FOOTER && buf[n - 4..] == id {
                // Peek is not possible on a stream: accept the footer; a following record that
                // is not one will be reported where it stands.
                buf.truncate(n - 5);
                return Ok(buf);
            }
        }
    }

    /// A VMSD's fields and subsections, as analyze-migration.py prints them; `path` names the
    /// enclosing fields for errors.
    fn vmsd_body(&mut self, desc: &Value, path: &str) -> Result<Map<String, Value>, WireError> {
        let mut out = Map::new();
        for f in desc.get("fields").and_then(Value::as_array).into_iter().flatten() {
            let name = f.get("name").and_then(Value::as_str).unwrap_or("?");
            let full = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
            // A compressed array (`array_len`, vmsd_desc_field_start in migration/vmstate.c) is
            // its element's description written once: `size` is one element's bytes
            // (vmsd_desc_field_end), and analyze-migration.py reads it `array_len` times.
            let n = f.get("array_len").and_then(Value::as_u64).unwrap_or(1).max(1);
            if let Some(left) = self.left().filter(|left| n > 1 && n > *left) {
                return Err(self.field_error(self.offset, &full, f, format!("array_len {n} is more elements than the {left} bytes left in the section")));
            }
            for _ in 0..n {
                let at = self.offset;
                let value = self.element(f, &full)?;
                if n > 1 && self.offset == at {
                    return Err(self.field_error(at, &full, f, format!("array_len {n} of elements that hold no bytes")));
                }
                put(&mut out, name, value);
            }
        }
        for sub in desc.get("subsections").and_then(Value::as_array).into_iter().flatten() {
            // vmstate_subsection_save: 0x05, the counted name, be32 version, then the body.
            let at = self.offset;
            let t = self.u8("a subsection (0x05)")?;
            if t != ty::SUBSECTION {
                let what = sub.get("vmsd_name").and_then(Value::as_str).unwrap_or("?");
                return Err(self.unexpected(at, &format!("subsection '{}' (0x05) after {}", escaped(what), if path.is_empty() { "the section's fields".to_string() } else { format!("the fields of '{}'", escaped(path)) }), format!("byte {t:#04x}")));
            }
            let name = self.counted("a subsection name")?;
            let _version = self.be32("a subsection version")?;
            let body = self.vmsd_body(sub, &name)?;
            // analyze-migration.py assigns the subsection by name (an earlier field of that name
            // keeps its place and takes the subsection's value).
            out.insert(name, Value::Object(body));
        }
        Ok(out)
    }

    /// An error inside field `path` of type `f["type"]`, at `at` (offset in the section's bytes).
    fn field_error(&self, at: u64, path: &str, f: &Value, message: String) -> WireError {
        let kind = f.get("type").and_then(Value::as_str).unwrap_or("(no type)");
        WireError::Unexpected { offset: at, expected: format!("field '{}' of type '{}'", escaped(path), escaped(kind)), found: message }
    }

    /// One element of field `f`, read by analyze-migration.py's reader for its type
    /// (`vmsd_field_readers`; a type it does not list is read as hex bytes, VMSDFieldGeneric).
    fn element(&mut self, f: &Value, path: &str) -> Result<Value, WireError> {
        let kind = f.get("type").and_then(Value::as_str).unwrap_or("");
        let at = self.offset;
        match kind {
            // VMSDFieldStruct: the struct's fields and subsections, in place.
            "struct" => {
                let inner = f.get("struct").filter(|s| s.get("fields").is_some()).ok_or_else(|| self.field_error(at, path, f, "a struct without \"struct\": {\"fields\": ...} in the VM description".into()))?;
                return self.vmsd_body(inner, path).map(Value::Object);
            }
            // VMSDFieldCap (the configuration section): a counted string.
            "capability" => return self.counted(&format!("capability '{}'", escaped(path))).map(Value::from),
            _ => {}
        }
        let size = f.get("size").and_then(Value::as_u64).ok_or_else(|| self.field_error(at, path, f, "no \"size\" in the VM description".into()))?;
        if let Some(left) = self.left().filter(|left| size > *left) {
            return Err(self.field_error(at, path, f, format!("{size} bytes, more than the {left} left in the section")));
        }
        let len = usize::try_from(size).map_err(|_| self.field_error(at, path, f, format!("{size} bytes")))?;
        let b = self.read_vec(len, &format!("field '{}' of type '{}' ({size} bytes)", escaped(path), escaped(kind)))?;
        let signed = match kind {
            "int8" | "int16" | "int32" | "int32 equal" | "int32 le" | "int64" | "int64 equal" | "uint8 equal" | "uint16 equal" => Some(true),
            "uint8" | "uint16" | "uint32" | "uint32 equal" | "uint64" => Some(false),
            _ => None,
        };
        Ok(match (kind, signed) {
            // VMSDFieldBool: the first byte.
            ("bool", _) => Value::from(*b.first().ok_or_else(|| self.field_error(at, path, f, "a bool of 0 bytes".into()))? != 0),
            // VMSDFieldNull (VMSTATE_NULLPTR_MARKER, vmstate_info_nullptr): the byte '0'.
            ("nullptr", _) => {
                if b != b"0" {
                    return Err(self.field_error(at, path, f, format!("bytes {} where a null pointer marker is the byte 0x30", hex(&b))));
                }
                Value::from("nullptr")
            }
            // VMSDFieldInt / VMSDFieldUInt: big-endian (also "int32 le", which the script reads
            // big-endian too), `0x` and two digits a byte, a negative signed value followed by
            // its decimal.
            (_, Some(signed)) => int_text(&b, signed).ok_or_else(|| self.field_error(at, path, f, format!("an integer of {size} bytes")))?.into(),
            _ => Value::from(hex(&b)),
        })
    }
}

/// Adds one element to a struct as VMSDFieldStruct.read does: a second element of a name
/// makes a list of the two, later ones are appended (compressed and uncompressed arrays alike).
fn put(out: &mut Map<String, Value>, name: &str, value: Value) {
    match out.get_mut(name) {
        None => {
            out.insert(name.to_string(), value);
        }
        Some(Value::Array(list)) => list.push(value),
        Some(old) => {
            let first = std::mem::take(old);
            *old = Value::Array(vec![first, value]);
        }
    }
}

/// VMSDFieldInt's text of big-endian `b`: `0x` and two hex digits a byte; a negative signed
/// value adds ` (<decimal>)`. `None` for 0 bytes or a negative value wider than 16 bytes.
fn int_text(b: &[u8], signed: bool) -> Option<String> {
    if b.is_empty() {
        return None;
    }
    let digits: String = b.iter().map(|x| format!("{x:02x}")).collect();
    if !signed || b[0] & 0x80 == 0 {
        return Some(format!("0x{digits}"));
    }
    if b.len() > 16 {
        return None;
    }
    // Sign-extended: start from all ones, shift each byte in.
    let mut v: i128 = -1;
    for x in b {
        v = v.checked_mul(256)?.checked_add(i128::from(*x))?;
    }
    Some(format!("0x{digits} ({v})"))
}

/// A section's `body` (from stream byte `start`) read with its VM description entry `desc`, as
/// analyze-migration.py's VMSDSection reads it. A body that does not decode, or has bytes
/// left after the description's fields, is one `"(not decoded)"` entry naming the field, its
/// type and the byte where decoding stopped.
fn described_fields(desc: &Value, body: &[u8], start: u64, idstr: &str) -> Map<String, Value> {
    let mut sub = Decoder::new(std::io::Cursor::new(body), None);
    sub.limit = Some(body.len() as u64);
    let why = match sub.vmsd_body(desc, "") {
        Ok(fields) if sub.offset == body.len() as u64 => return fields,
        Ok(_) => format!(
            "byte {}: the VM description's fields end {} bytes before the end of section '{}' ({} bytes)",
            start.saturating_add(sub.offset),
            body.len() as u64 - sub.offset,
            escaped(idstr),
            body.len()
        ),
        Err(e) => format!("{} (section '{}', {} bytes from byte {start})", e.shifted(start), escaped(idstr), body.len()),
    };
    let mut m = Map::new();
    m.insert("(not decoded)".into(), Value::from(why));
    m
}

/// The byte count of a description whose only field is `VMSTATE_VIRTIO_DEVICE`
/// (`{"name": "virtio", "type": "virtio", "size": N}`), as `vmstate_virtio_mem` is described.
fn virtio_field_size(desc: &Value) -> Option<u64> {
    match desc.get("fields")?.as_array()?.as_slice() {
        [f] if f.get("type").and_then(Value::as_str) == Some("virtio") && desc.get("subsections").is_none() => f.get("size")?.as_u64(),
        _ => None,
    }
}

/// Finds the VM description at the end of a seekable stream, as analyze-migration.py does: in
/// the last 10 MiB, a 0x06 byte followed by a be32 length that reaches exactly the end.
pub fn find_vmdesc<R: Read + Seek>(r: &mut R) -> Result<Option<Value>, WireError> {
    let io = |e: std::io::Error| WireError::Io(e.to_string());
    let len = r.seek(SeekFrom::End(0)).map_err(io)?;
    let tail = len.min(10 << 20);
    r.seek(SeekFrom::Start(len - tail)).map_err(io)?;
    let mut buf = vec![0u8; tail as usize];
    r.read_exact(&mut buf).map_err(io)?;
    r.seek(SeekFrom::Start(0)).map_err(io)?;
    for p in (0..buf.len().saturating_sub(5)).rev() {
        if buf[p] != ty::VMDESCRIPTION || buf.get(p + 5) != Some(&b'{') {
            continue;
        }
        let n = u32::from_be_bytes(buf[p + 1..p + 5].try_into().expect("4 bytes")) as usize;
        if p + 5 + n == buf.len() {
            let start = len - tail + p as u64 + 5;
            return serde_json::from_slice(&buf[p + 5..]).map(Some).map_err(|e| WireError::BadJson { offset: start, message: e.to_string() });
        }
    }
    Ok(None)
}