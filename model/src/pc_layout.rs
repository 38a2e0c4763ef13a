//! Where QEMU's x86 machines put things a command line leaves out: the RAM split around 4 GiB
//! and so the device memory region, a memory device's `memaddr`, and a PCI device's slot.
//! Observed on QEMU 10.0.2 (`query-pci`, `qom-get memaddr`) for q35 and i440fx with and without
//! `-nodefaults`, `-vga none`, `-nic none`.

use crate::machine::MachineType;
use crate::units::Bytes;

const GIB: u64 = 1 << 30;

/// RAM below 4 GiB: `pc_q35_init` keeps 0xb0000000, or 2 GiB once RAM reaches 0xb0000000;
/// `pc_init1` (i440fx) keeps 0xe0000000, or 3 GiB once RAM reaches that (gigabyte_align,
/// every machine since 1.7). `max-ram-below-4g` would lower it; the importer refuses it.
pub fn below_4g(machine: &MachineType, ram: Bytes) -> Bytes {
    let lowmem = if machine.is_q35() {
        if ram.0 >= 0xb000_0000 { 0x8000_0000 } else { 0xb000_0000 }
    } else if ram.0 >= 0xe000_0000 {
        0xc000_0000
    } else {
        0xe000_0000
    };
    Bytes(ram.0.min(lowmem))
}

/// `pc_get_device_memory_range` (hw/i386/pc.c): device memory starts at 4 GiB plus the RAM
/// above 4 GiB, rounded up to 1 GiB (observed: q35 -m 4G at 0x180000000, i440fx -m 4G at
/// 0x140000000, i440fx -m 8G at 0x240000000).
pub fn device_memory_start(machine: &MachineType, ram: Bytes) -> u64 {
    let above = ram.0 - below_4g(machine, ram).0;
    (4 * GIB).saturating_add(above).div_ceil(GIB).saturating_mul(GIB)
}

/// `memory_device_get_free_addr` without a hint: the first gap from `start` upward, aligned to
/// `align`, that holds `size` among the ranges placed before (command-line order).
pub fn first_free_addr(start: u64, placed: &[(u64, u64)], size: u64, align: u64) -> Option<u64> {
    let mut ranges: Vec<(u64, u64)> = placed.to_vec();
    ranges.sort_unstable();
    let up = |a: u64| a.checked_next_multiple_of(align);
    let mut at = up(start)?;
    for (s, e) in ranges {
        if at.checked_add(size)? <= s {
            return Some(at);
        }
        if e > at {
            at = up(e)?;
        }
    }
    at.checked_add(size).map(|_| at)
}

/// The alignment `memory_device_pre_plug` asks for a virtio-mem device: its block size, or the
/// memory region's alignment if larger (the page size of file and memfd backends; 2 MiB for
/// anonymous RAM, `QEMU_VMALLOC_ALIGN`).
pub fn memaddr_alignment(block_size: Bytes, page_size: Bytes, anonymous: bool) -> u64 {
    let region = if anonymous { 2 << 20 } else { page_size.0 };
    block_size.0.max(region)
}

/// Slots of the root bus that board init fills before any `-device`: the host bridge, the
/// chipset functions (q35 slot 0x1f, i440fx slot 1), then the default VGA and NIC (q35: 01.0
/// and 02.0; i440fx: 02.0 and 03.0), which `-nodefaults` drops, `-vga none` drops the VGA of,
/// and any `-nic`, `-net` or `-netdev` drops the NIC of.
pub fn board_slots(machine: &MachineType, vga: bool, nic: bool) -> Vec<u8> {
    let mut slots = if machine.is_q35() { vec![0x00, 0x1f] } else { vec![0x00, 0x01] };
    let next = |slots: &mut Vec<u8>| {
        let free = first_free_slot(slots).expect("a fresh root bus has free slots");
        slots.push(free);
    };
    if vga {
        next(&mut slots);
    }
    if nic {
        next(&mut slots);
    }
    slots
}

/// `pci_bus_devfn` for a device without `addr=`: the first slot from 0 whose function 0 is free.
pub fn first_free_slot(taken: &[u8]) -> Option<u8> {
    (0u8..32).find(|s| !taken.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str) -> MachineType {
        MachineType::parse(name).unwrap()
    }

    #[test]
    fn device_memory_starts_where_qemu_10_0_2_put_it() {
        let (q35, pc) = (m("q35"), m("pc"));
        assert_eq!(device_memory_start(&q35, Bytes::gib(4)), 0x1_8000_0000);
        assert_eq!(device_memory_start(&q35, Bytes::gib(1)), 0x1_0000_0000);
        assert_eq!(device_memory_start(&q35, Bytes::gib(3)), 0x1_4000_0000);
        assert_eq!(device_memory_start(&q35, Bytes::mib(2816)), 0x1_4000_0000);
        assert_eq!(device_memory_start(&pc, Bytes::gib(4)), 0x1_4000_0000);
        assert_eq!(device_memory_start(&pc, Bytes::gib(8)), 0x2_4000_0000);
    }

    #[test]
    fn memory_devices_fill_the_first_aligned_gap() {
        let g = GIB;
        assert_eq!(first_free_addr(4 * g, &[], g, 2 << 20), Some(4 * g));
        assert_eq!(first_free_addr(4 * g, &[(4 * g, 5 * g)], g, g), Some(5 * g));
        assert_eq!(first_free_addr(4 * g, &[(4 * g + (2 << 20), 5 * g)], 2 << 20, 2 << 20), Some(4 * g));
        assert_eq!(first_free_addr(4 * g, &[(4 * g, 4 * g + (2 << 20))], g, g), Some(5 * g));
        assert_eq!(first_free_addr(u64::MAX - 10, &[], g, 2 << 20), None);
    }

    #[test]
    fn pci_slots_as_query_pci_showed_them() {
        let (q35, pc) = (m("q35"), m("pc"));
        assert_eq!(first_free_slot(&board_slots(&q35, true, true)), Some(3));
        assert_eq!(first_free_slot(&board_slots(&q35, false, false)), Some(1));
        assert_eq!(first_free_slot(&board_slots(&q35, false, true)), Some(2));
        assert_eq!(first_free_slot(&board_slots(&pc, true, true)), Some(4));
        assert_eq!(first_free_slot(&board_slots(&pc, false, false)), Some(2));
    }
}
