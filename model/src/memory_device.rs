//! Where a memory device may sit in guest-physical address space: QEMU's placement checks
//! (hw/mem/memory-device.c) against the device memory region that hw/i386/pc.c puts above RAM.

use std::collections::BTreeMap;

use crate::config::DeviceConfig;


const GIB: u128 = 1 << 30;

/// The size of device memory as QEMU prints it: `maxmem - ram_size` (plus 1 GiB per `slots`,
/// none here). Scenarios give no `maxmem`; the model takes the conformance runner's
/// (sim/src/conformance/vm.rs): `-m` + the devices' regions + 1 GiB, so the size is the regions
/// + 1 GiB.
pub fn device_memory_size(devices: &[DeviceConfig]) -> u128 {
    devices.iter().map(|d| d.region_size.0 as u128).sum::<u128>() + GIB
}

/// The memory devices placed so far, by address: `memory_device_build_list` keeps them sorted.
pub struct Placed<'a> {
    base: u128,
    size: u128,
    by_addr: BTreeMap<(u128, usize), (u128, &'a str)>,
}

impl<'a> Placed<'a> {
    /// Device memory at `base` of `size` bytes (printed in errors), nothing placed yet.
    pub fn new(base: u128, size: u128) -> Placed<'a> {
        Placed { base, size, by_addr: BTreeMap::new() }
    }

    /// `memory_device_get_free_addr` (hw/mem/memory-device.c) with `memaddr` as the hint: the
    /// range must start inside device memory and overlap no device placed before it (the first
    /// in address order is named). QEMU's error text since the range helpers (`range_init`,
    /// `range_contains_range`); QEMU 3.x said "... before 0x...". Only the start of device
    /// memory is enforced: its end depends on a `maxmem` that scenarios do not give.
    pub fn place(&mut self, dev: &'a DeviceConfig) -> Result<(), String> {
        let (addr, size, base) = (dev.memaddr.0 as u128, dev.region_size.0 as u128, self.base);
        if addr < base {
            let devmem = self.size;
            return Err(format!("can't add memory device [0x{addr:x}:0x{size:x}], usable range for memory devices [0x{base:x}:0x{devmem:x}]"));
        }
        // The placed ranges are disjoint, so the first overlapping one in address order is the
        // one starting at or below `addr` (if it reaches past `addr`), else the first starting
        // inside the new range.
        let end = addr + size;
        let below = self.by_addr.range(..=(addr, usize::MAX)).next_back().filter(|(_, (e, _))| *e > addr && size > 0);
        let inside = || self.by_addr.range((addr, 0)..(end, 0)).find(|((a, _), (e, _))| e > a && size > 0);
        if let Some((_, (_, id))) = below.or_else(inside) {
            return Err(format!("address range conflicts with memory device id='{id}'"));
        }
        let n = self.by_addr.len();
        self.by_addr.insert((addr, n), (end, dev.id.as_str()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{Bytes, Gpa};

    fn dev(id: &str, addr: u64, size: Bytes) -> DeviceConfig {
        DeviceConfig { id: id.into(), ..DeviceConfig::vmem0(Gpa(addr), size, Bytes::ZERO, false) }
    }

    #[test]
    fn a_device_below_device_memory_is_refused() {
        let d = dev("vmem0", 0x1_0000_0000, Bytes::gib(1));
        let size = device_memory_size(std::slice::from_ref(&d));
        assert_eq!(size, 2 * GIB);
        let mut p = Placed::new(9 * GIB, size);
        assert_eq!(p.place(&d), Err("can't add memory device [0x100000000:0x40000000], usable range for memory devices [0x240000000:0x80000000]".into()));
    }

    #[test]
    fn overlaps_name_the_first_device_in_address_order() {
        let (a, b) = (dev("a", 0x2_0000_0000, Bytes::gib(1)), dev("b", 0x1_0000_0000, Bytes::gib(1)));
        let mut p = Placed::new(4 * GIB, 3 * GIB);
        p.place(&a).unwrap();
        p.place(&b).unwrap();
        let conflict = |addr, size| Placed { by_addr: p.by_addr.clone(), ..Placed::new(4 * GIB, 3 * GIB) }.place(&dev("c", addr, size));
        assert_eq!(conflict(0x1_0000_0000, Bytes::gib(1)), Err("address range conflicts with memory device id='b'".into()));
        assert_eq!(conflict(0x1_3fe0_0000, Bytes::gib(4)), Err("address range conflicts with memory device id='b'".into()));
        assert_eq!(conflict(0x1_8000_0000, Bytes::gib(4)), Err("address range conflicts with memory device id='a'".into()));
        assert_eq!(conflict(0x1_4000_0000, Bytes::gib(1)), Ok(()), "between the two, touching both");
        assert_eq!(conflict(0x2_4000_0000, Bytes::gib(1)), Ok(()));
    }
}
