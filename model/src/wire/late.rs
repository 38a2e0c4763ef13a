//! The late `<pci>/virtio-mem` section: the device state `virtio_save` writes, and inside it
//! `vmstate_virtio_mem_device`, which carries the plug state on machine types without early
//! migration (pc-q35-7.x, pc-i440fx-7.x). Pure: it reads a section's bytes already in memory.
//!
//! The layout, in the order QEMU writes it (QEMU 10.0; checked against a pc-q35-7.1 stream of
//! QEMU 10.0.2, README "Migration streams"):
//!
//! 1. `virtio_pci_save_config` (hw/virtio/virtio-pci.c): `pci_device_save` (hw/pci/pci.c,
//!    `vmstate_pci_device`: be32 version_id, the config space (256 bytes, 4096 when the device
//!    is PCI Express), 4 × be32 irq_state), then `msix_save` (hw/pci/msix.c: the MSI-X table,
//!    16 bytes a vector, and the pending bits, (n + 7) / 8 bytes) and the be16 config vector,
//!    both only when MSI-X is present;
//! 2. `virtio_save` (hw/virtio/virtio.c): u8 status, u8 isr, be16 queue_sel, be32 low guest
//!    features, be32 config_len and the device config, be32 queue count, and per queue be32
//!    vring.num, be64 vring.desc, be16 last_avail_idx and (`virtio_pci_save_queue`, MSI-X only)
//!    the be16 vector;
//! 3. `vmstate_save_state(vdc->vmsd)` = `vmstate_virtio_mem_device` (hw/virtio/virtio-mem.c):
//!    the sanity checks (28 bytes), be64 usable_region_size, be64 size, be64 requested_size and
//!    the bitmap as be64 words, where the fields marked `virtio_mem_vmstate_field_exists` (all
//!    but the two sizes) are there only without early migration;
//! 4. `vmstate_save_state(&vmstate_virtio)`: only subsections (0x05, a name "virtio/…").
//!
//! The stream's JSON VM description does not describe these bytes: `vmstate_virtio_mem` has
//! one field, `VMSTATE_VIRTIO_DEVICE`, which it lists as `{"name": "virtio", "type": "virtio",
//! "size": N}` with N the bytes `virtio_save` wrote; `virtio_save` passes no description to the
//! inner `vmstate_save_state` calls (their `vmdesc` argument is NULL).

use crate::migration::item::{PlugState, SanityFields};
use crate::plug_map::{Bitmap, PlugMap};
use crate::units::{Bytes, Gpa};

use super::{escaped, WireError};

/// `PCI_CONFIG_SPACE_SIZE` and `PCIE_CONFIG_SPACE_SIZE` (include/hw/pci/pci.h).
const PCI_CONFIG: usize = 256;
const PCIE_CONFIG: usize = 4096;
/// `PCI_CAP_ID_EXP` and `PCI_CAP_ID_MSIX` (include/standard-headers/linux/pci_regs.h).
const CAP_EXP: u8 = 0x10;
const CAP_MSIX: u8 = 0x11;
/// `VIRTIO_QUEUE_MAX` (include/hw/virtio/virtio.h): `virtio_load` refuses more queues.
const QUEUE_MAX: u32 = 1024;
/// `PCI_MSIX_ENTRY_SIZE` (include/hw/pci/msix.h... pci_regs.h).
const MSIX_ENTRY: usize = 16;

/// The virtio-pci transport's state in front of the device's own: what decides the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transport {
    /// The config space was saved as PCI Express (4096 bytes).
    pub express: bool,
    /// MSI-X vectors (0: no MSI-X, no vectors in the stream).
    pub msix_vectors: u16,
    /// `vdev->status` (`VIRTIO_CONFIG_S_*`).
    pub status: u8,
    /// The low 32 bits of the guest's features.
    pub guest_features_lo: u32,
    pub config_len: u32,
    pub queues: u32,
}

/// What `vmstate_virtio_mem_device` holds, as decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateState {
    pub transport: Transport,
    pub usable_region_size: Bytes,
    pub requested_size: Bytes,
    /// The plug state: only without early migration (`virtio_mem_vmstate_field_exists`).
    pub plug: Option<PlugState>,
    /// The stream offset of the device state (the sanity checks, or usable_region_size).
    pub vmsd_offset: u64,
}

/// A cursor over one section's bytes that names the stream offset and the section in errors.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    base: u64,
    idstr: &'a str,
}

impl<'a> Cursor<'a> {
    fn at(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn error(&self, at: u64, message: String) -> WireError {
        WireError::InSection { offset: at, idstr: self.idstr.to_string(), message }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], WireError> {
        let left = self.b.len() - self.pos;
        if n > left {
            return Err(self.error(self.at(), format!("expected {what} ({n} bytes), but the section has {left} bytes left")));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn be(&mut self, n: usize, what: &str) -> Result<u64, WireError> {
        Ok(self.take(n, what)?.iter().fold(0u64, |a, b| a << 8 | *b as u64))
    }
}

/// The capabilities in a PCI config space's list (`pci_find_capability`, hw/pci/pci.c): id →
/// offset, the first of each id. Only when the status register has `PCI_STATUS_CAP_LIST`.
fn capabilities(config: &[u8]) -> Vec<(u8, usize)> {
    let mut out: Vec<(u8, usize)> = Vec::new();
    if config[0x06] & 0x10 == 0 {
        return out;
    }
    let mut p = config[0x34] as usize & !3;
    // At most 48 capabilities fit in the 192 bytes after the header: a loop is a corrupt list.
    for _ in 0..48 {
        if p < 0x40 || p + 2 > config.len() {
            break;
        }
        if !out.iter().any(|(id, _)| *id == config[p]) {
            out.push((config[p], p));
        }
        p = config[p + 1] as usize & !3;
    }
    out
}

/// Decodes the body of a `<pci>/virtio-mem` FULL section (its bytes between the section
/// header and the footer), which starts at stream offset `base`. `with_plug`: the device
/// migrates without early migration, so the sanity checks, size and bitmap are there.
pub fn decode(body: &[u8], base: u64, idstr: &str, with_plug: bool) -> Result<LateState, WireError> {
    let mut c = Cursor { b: body, pos: 0, base, idstr };
    // hw/pci/pci.c vmstate_pci_device: VMSTATE_INT32_POSITIVE_LE(version_id): 0..=2 loads.
    let at = c.at();
    let v = c.be(4, "the PCI device's version_id (pci_device_save)")?;
    if !(1..=2).contains(&v) {
        return Err(c.error(at, format!("expected the PCI device's version_id 2 (pci_device_save, hw/pci/pci.c), found {v}: not a virtio-pci device state")));
    }
    let config = c.take(PCI_CONFIG, "the PCI config space")?;
    let caps = capabilities(config);
    // pci_is_express ⇔ the Express capability in the list (pcie_cap_init adds it) [INF].
    let express = caps.iter().any(|(id, _)| *id == CAP_EXP);
    if express {
        c.take(PCIE_CONFIG - PCI_CONFIG, "the PCI Express extended config space")?;
    }
    // hw/pci/pci.c put_pci_irq_state: PCI_NUM_PINS be32 levels, each 0 or 1.
    for pin in 0..4 {
        let at = c.at();
        let level = c.be(4, "an INTx level (irq_state)")?;
        if level > 1 {
            return Err(c.error(at, format!("expected INTx pin {pin}'s level 0 or 1 (put_pci_irq_state, hw/pci/pci.c), found {level}")));
        }
    }
    // hw/pci/msix.c msix_init: the table size field is nentries - 1 [INF]; msix_save.
    let msix_vectors = match caps.iter().find(|(id, _)| *id == CAP_MSIX) {
        Some((_, p)) if p + 4 <= config.len() => (u16::from_le_bytes([config[p + 2], config[p + 3]]) & 0x7ff) + 1,
        _ => 0,
    };
    if msix_vectors > 0 {
        let n = msix_vectors as usize;
        c.take(n * MSIX_ENTRY, "the MSI-X table (msix_save)")?;
        c.take(n.div_ceil(8), "the MSI-X pending bits (msix_save)")?;
        c.be(2, "the config vector (virtio_pci_save_config)")?;
    }
    // hw/virtio/virtio.c virtio_save: the core fields.
    let status = c.be(1, "the virtio status")? as u8;
    c.be(1, "the virtio isr")?;
    let at = c.at();
    let queue_sel = c.be(2, "queue_sel")?;
    if queue_sel >= QUEUE_MAX as u64 {
        return Err(c.error(at, format!("expected queue_sel below VIRTIO_QUEUE_MAX {QUEUE_MAX} (virtio_load, hw/virtio/virtio.c), found {queue_sel}")));
    }
    let guest_features_lo = c.be(4, "the guest features' low 32 bits")? as u32;
    let config_len = c.be(4, "config_len")? as u32;
    c.take(config_len as usize, "the virtio device config")?;
    let at = c.at();
    let queues = c.be(4, "the virtqueue count")? as u32;
    if queues > QUEUE_MAX {
        return Err(c.error(at, format!("expected at most VIRTIO_QUEUE_MAX {QUEUE_MAX} virtqueues (virtio_load: \"Invalid number of virtqueues\"), found {queues}")));
    }
    // virtio-pci's has_variable_vring_alignment is false (only virtio-mmio sets it).
    let per_queue = 4 + 8 + 2 + if msix_vectors > 0 { 2 } else { 0 };
    c.take(queues as usize * per_queue, "the virtqueues (vring.num, vring.desc, last_avail_idx)")?;
    // virtio_mem_class_init sets no vdc->save: vmstate_virtio_mem_device follows.
    let vmsd_offset = c.at();
    let mut plug = None;
    let mut sanity = None;
    if with_plug {
        let at = c.at();
        let s = SanityFields {
            addr: Gpa(c.be(8, "the sanity checks' addr")?),
            region_size: Bytes(c.be(8, "the sanity checks' region_size")?),
            block_size: Bytes(c.be(8, "the sanity checks' block_size")?),
            node: c.be(4, "the sanity checks' node")? as u32,
        };
        if s.block_size.0 == 0 || !s.block_size.is_power_of_two() || !s.region_size.is_multiple_of(s.block_size) {
            return Err(c.error(at, format!("expected a power-of-two block size dividing the region (vmstate_virtio_mem_device, hw/virtio/virtio-mem.c), found region {:#x}, block {:#x}: the bytes in front of the device state are not laid out as virtio_save writes them", s.region_size.0, s.block_size.0)));
        }
        sanity = Some(s);
    }
    let usable_region_size = Bytes(c.be(8, "usable_region_size")?);
    let size = if with_plug { Some(Bytes(c.be(8, "the plugged size")?)) } else { None };
    let requested_size = Bytes(c.be(8, "requested_size")?);
    if let (Some(s), Some(size)) = (sanity, size) {
        let nbits = s.region_size.0 / s.block_size.0;
        if nbits > i32::MAX as u64 {
            return Err(c.error(vmsd_offset, format!("expected a bitmap QEMU's int32 bitmap_size can hold, found {nbits} bits")));
        }
        let at = c.at();
        if size > s.region_size || usable_region_size > s.region_size {
            return Err(c.error(vmsd_offset, format!("expected sizes within the region {:#x}, found size {:#x}, usable_region_size {:#x}", s.region_size.0, size.0, usable_region_size.0)));
        }
        // VMSTATE_BITMAP: BITS_TO_U64S(bitmap_size) be64 words (put_bitmap, migration/vmstate-types.c).
        let bytes = c.take((nbits as usize).div_ceil(64) * 8, "the plug bitmap")?;
        let words: Vec<u64> = bytes.chunks(8).map(|w| w.iter().fold(0u64, |a, b| a << 8 | *b as u64)).collect();
        let mut bitmap = Bitmap::from_vec(words);
        bitmap.truncate(nbits as usize);
        let map = PlugMap::from_bitmap(&bitmap);
        let plugged = map.plugged_blocks().0.checked_mul(s.block_size.0);
        if plugged != Some(size.0) {
            return Err(c.error(at, format!("expected a bitmap with size / block_size = {} blocks plugged, found {} (a bitmap out of step with the size)", size.0 / s.block_size.0, map.plugged_blocks().0)));
        }
        plug = Some(PlugState { sanity: s, size, plug: std::sync::Arc::new(map) });
    }
    // vmstate_virtio: nothing but subsections, each a 0x05 and a name "virtio…".
    if c.pos < body.len() {
        let at = c.at();
        let rest = &body[c.pos..];
        let name = rest.get(2..2 + *rest.get(1).unwrap_or(&0) as usize).unwrap_or(&[]);
        if rest[0] != super::ty::SUBSECTION || !name.starts_with(b"virtio") {
            let found = String::from_utf8_lossy(&rest[..rest.len().min(8)]).into_owned();
            return Err(c.error(at, format!(
                "expected the end of the section or a subsection of vmstate_virtio (0x05 and a name \"virtio/…\") after the device state (virtio_save, hw/virtio/virtio.c), found byte {:#04x} ('{}'){}",
                rest[0],
                escaped(&found),
                if with_plug { "" } else { ": a stream with an early section should not carry the plug state here" }
            )));
        }
    }
    Ok(LateState {
        transport: Transport { express, msix_vectors, status, guest_features_lo, config_len, queues },
        usable_region_size,
        requested_size,
        plug,
        vmsd_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A late section body laid out as QEMU 10.0 writes it for virtio-mem-pci on the root bus
    /// of pc-q35-7.1 (conventional PCI, no MSI-X): the sequence of `virtio_pci_save_config`,
    /// `virtio_save` and `vmstate_virtio_mem_device` in the module comment, with the values
    /// of the stream QEMU 10.0.2 wrote in the check (README "Migration streams").
    pub(crate) fn body(with_plug: bool, words: &[u64]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&2u32.to_be_bytes());
        let mut config = [0u8; 256];
        config[..4].copy_from_slice(&[0xf4, 0x1a, 0x58, 0x10]);
        config[0x06] = 0x10; // PCI_STATUS_CAP_LIST
        config[0x34] = 0x40;
        // One vendor capability (0x09) ending the list.
        config[0x40] = 0x09;
        b.extend_from_slice(&config);
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(&[0x0f, 0x00, 0x00, 0x00]);
        b.extend_from_slice(&0x3000_0003u32.to_be_bytes());
        b.extend_from_slice(&56u32.to_be_bytes());
        b.extend_from_slice(&[0; 56]);
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&128u32.to_be_bytes());
        b.extend_from_slice(&0x14fa_e000u64.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        if with_plug {
            for v in [0x1_0000_0000u64, 0x4000_0000, 0x20_0000] {
                b.extend_from_slice(&v.to_be_bytes());
            }
            b.extend_from_slice(&0u32.to_be_bytes());
        }
        b.extend_from_slice(&0x2000_0000u64.to_be_bytes());
        let size: u64 = words.iter().map(|w| w.count_ones() as u64).sum::<u64>() * 0x20_0000;
        if with_plug {
            b.extend_from_slice(&size.to_be_bytes());
        }
        b.extend_from_slice(&size.to_be_bytes());
        if with_plug {
            for w in words {
                b.extend_from_slice(&w.to_be_bytes());
            }
        }
        // The first subsection of vmstate_virtio, as QEMU wrote it.
        b.push(0x05);
        b.push(21);
        b.extend_from_slice(b"virtio/64bit_features");
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&0x0000_0001_3000_0003u64.to_be_bytes());
        b
    }

    #[test]
    fn the_plug_state_of_an_old_machine_is_read_from_the_late_section() {
        let words = [u64::MAX, u64::MAX, 0, 0, 0, 0, 0, 0];
        let s = decode(&body(true, &words), 1000, "0000:00:03.0/virtio-mem", true).unwrap();
        let p = s.plug.expect("the plug state");
        assert_eq!(p.sanity, SanityFields { addr: Gpa(0x1_0000_0000), region_size: Bytes::gib(1), block_size: Bytes::mib(2), node: 0 });
        assert_eq!(p.size, Bytes::mib(256));
        assert_eq!(p.plug.plugged_blocks().0, 128);
        assert_eq!((s.usable_region_size, s.requested_size), (Bytes::mib(512), Bytes::mib(256)));
        assert_eq!(s.transport, Transport { express: false, msix_vectors: 0, status: 0x0f, guest_features_lo: 0x3000_0003, config_len: 56, queues: 1 });
        // 4 + 256 + 16 + 12 + 56 + 4 + 14 bytes of transport and virtio core.
        assert_eq!(s.vmsd_offset, 1000 + 362);
    }

    #[test]
    fn with_early_migration_only_the_two_sizes_are_there() {
        let s = decode(&body(false, &[]), 0, "0000:00:03.0/virtio-mem", false).unwrap();
        assert_eq!(s.plug, None);
        assert_eq!((s.usable_region_size, s.requested_size), (Bytes::mib(512), Bytes::ZERO));
    }

    #[test]
    fn mistakes_name_the_offset_and_the_section() {
        let words = [u64::MAX, 0, 0, 0, 0, 0, 0, 0];
        let good = body(true, &words);
        // Truncated anywhere: an error, never a panic.
        for n in 0..good.len() {
            let e = decode(&good[..n], 10, "0000:00:03.0/virtio-mem", true);
            if let Err(e) = e {
                assert!(e.to_string().contains("section '0000:00:03.0/virtio-mem'"), "{e}");
            }
        }
        // A block size that is not a power of two.
        let mut bad = good.clone();
        bad[362 + 16..362 + 24].copy_from_slice(&3u64.to_be_bytes());
        let e = decode(&bad, 10, "0000:00:03.0/virtio-mem", true).unwrap_err().to_string();
        assert!(e.starts_with("byte 372: section '0000:00:03.0/virtio-mem':"), "{e}");
        // A size out of step with the bitmap.
        let mut bad = good.clone();
        bad[362 + 36..362 + 44].copy_from_slice(&Bytes::mib(4).0.to_be_bytes());
        let e = decode(&bad, 0, "0000:00:03.0/virtio-mem", true).unwrap_err().to_string();
        assert!(e.contains("out of step"), "{e}");
        // Read as a new machine's (no plug fields), the bytes do not end where they should.
        let e = decode(&good, 0, "0000:00:03.0/virtio-mem", false).unwrap_err().to_string();
        assert!(e.contains("subsection of vmstate_virtio"), "{e}");
        // A queue count over VIRTIO_QUEUE_MAX.
        let mut bad = good;
        bad[344..348].copy_from_slice(&5000u32.to_be_bytes());
        let e = decode(&bad, 0, "0000:00:03.0/virtio-mem", true).unwrap_err().to_string();
        assert!(e.starts_with("byte 344: section"), "{e}");
    }
}
