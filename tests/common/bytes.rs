//! Hand-built migration streams for the hostile-input tests: the records QEMU writes
//! (qemu-migration.md §5), put together in orders and sizes QEMU never would.

/// A stream under construction.
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// Magic, version 3 and the configuration section.
    pub fn header(machine: &str) -> Bytes {
        let mut s = vec![0x51, 0x45, 0x56, 0x4d, 0, 0, 0, 3, 0x07];
        s.extend_from_slice(&(machine.len() as u32).to_be_bytes());
        s.extend_from_slice(machine.as_bytes());
        Bytes(s)
    }

    fn counted(&mut self, s: &str) {
        self.0.push(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn section(&mut self, t: u8, id: u32, idstr: &str, version: u32) {
        self.0.push(t);
        self.0.extend_from_slice(&id.to_be_bytes());
        self.counted(idstr);
        self.0.extend_from_slice(&0u32.to_be_bytes());
        self.0.extend_from_slice(&version.to_be_bytes());
    }

    pub fn footer(&mut self, id: u32) {
        self.0.push(0x7e);
        self.0.extend_from_slice(&id.to_be_bytes());
    }

    /// The START section of `ram` (id 2) with its block list, EOS and footer.
    pub fn ram_setup(mut self, blocks: &[(String, u64)]) -> Bytes {
        self.section(0x01, 2, "ram", 4);
        let total: u64 = blocks.iter().map(|b| b.1).sum();
        self.0.extend_from_slice(&(total | 0x04).to_be_bytes());
        for (n, l) in blocks {
            self.counted(n);
            self.0.extend_from_slice(&l.to_be_bytes());
        }
        self.0.extend_from_slice(&0x10u64.to_be_bytes());
        self.footer(2);
        self
    }

    /// A FULL early section: addr, region, block size, node 0, plugged size, bitmap words.
    pub fn early(mut self, id: u32, pci: &str, addr: u64, region: u64, block: u64, words: &[u64]) -> Bytes {
        self.section(0x04, id, &format!("{pci}/virtio-mem-device-early"), 1);
        for w in [addr, region, block] {
            self.0.extend_from_slice(&w.to_be_bytes());
        }
        self.0.extend_from_slice(&0u32.to_be_bytes());
        let size: u64 = words.iter().map(|w| w.count_ones() as u64).sum::<u64>() * block;
        self.0.extend_from_slice(&size.to_be_bytes());
        for w in words {
            self.0.extend_from_slice(&w.to_be_bytes());
        }
        self.footer(id);
        self
    }

    /// A PART section of `ram` with one zero page at offset 0 of each block named, then EOS.
    pub fn zero_pages<'a>(mut self, blocks: impl IntoIterator<Item = &'a str>) -> Bytes {
        self.0.push(0x02);
        self.0.extend_from_slice(&2u32.to_be_bytes());
        for b in blocks {
            self.0.extend_from_slice(&0x02u64.to_be_bytes());
            self.counted(b);
            self.0.push(0);
        }
        self.0.extend_from_slice(&0x10u64.to_be_bytes());
        self.footer(2);
        self
    }

    /// The body of a late `<pci>/virtio-mem` section of an old machine type (no early
    /// migration), laid out as QEMU 10.0 writes it for virtio-mem-pci on the root bus
    /// (model/src/wire/late.rs has the functions): `virtio_pci_save_config` (version_id 2,
    /// 256 config bytes with one vendor capability, 4 INTx levels, no MSI-X), `virtio_save`'s
    /// core fields with a 56-byte config and one queue, `vmstate_virtio_mem_device` with the
    /// sanity checks, usable region (the whole region here), size, requested size (= size) and
    /// bitmap words, then the subsection `virtio/64bit_features`. The queue count is at byte 344.
    pub fn late_body(addr: u64, region: u64, block: u64, words: &[u64]) -> Vec<u8> {
        let mut b = 2u32.to_be_bytes().to_vec();
        let mut config = [0u8; 256];
        config[..4].copy_from_slice(&[0xf4, 0x1a, 0x58, 0x10]);
        config[0x06] = 0x10;
        config[0x34] = 0x40;
        config[0x40] = 0x09;
        b.extend_from_slice(&config);
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(&[0x0f, 0, 0, 0]);
        b.extend_from_slice(&0x3000_0003u32.to_be_bytes());
        b.extend_from_slice(&56u32.to_be_bytes());
        b.extend_from_slice(&[0; 56]);
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&128u32.to_be_bytes());
        b.extend_from_slice(&0x14fa_e000u64.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        for w in [addr, region, block] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b.extend_from_slice(&0u32.to_be_bytes());
        let size: u64 = words.iter().map(|w| w.count_ones() as u64).sum::<u64>() * block;
        for w in [region, size, size] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        for w in words {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b.push(0x05);
        b.push(21);
        b.extend_from_slice(b"virtio/64bit_features");
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&0x0000_0001_3000_0003u64.to_be_bytes());
        b
    }

    /// A PART section of `ram` with `n` normal pages of `block` from `offset`, then EOS.
    pub fn pages(mut self, block: &str, offset: u64, n: u64) -> Bytes {
        self.0.push(0x02);
        self.0.extend_from_slice(&2u32.to_be_bytes());
        for i in 0..n {
            let cont = if i == 0 { 0 } else { 0x20 };
            self.0.extend_from_slice(&((offset + i * 4096) | 0x08 | cont).to_be_bytes());
            if i == 0 {
                self.counted(block);
            }
            self.0.extend_from_slice(&[0x5a; 4096]);
        }
        self.0.extend_from_slice(&0x10u64.to_be_bytes());
        self.footer(2);
        self
    }

    /// A FULL section of any other device with `body` as its bytes.
    pub fn device(mut self, id: u32, idstr: &str, body: &[u8]) -> Bytes {
        self.section(0x04, id, idstr, 1);
        self.0.extend_from_slice(body);
        self.footer(id);
        self
    }

    /// EOF and, if given, the JSON VM description.
    pub fn end(mut self, vmdesc: Option<&str>) -> Vec<u8> {
        self.0.push(0x00);
        if let Some(json) = vmdesc {
            self.0.push(0x06);
            self.0.extend_from_slice(&(json.len() as u32).to_be_bytes());
            self.0.extend_from_slice(json.as_bytes());
        }
        self.0
    }
}
