//! A virtio-mem device's fixed properties and QEMU's realize checks.

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, HOST_PAGE_SIZE};
use crate::error::ModelError;
use crate::machine::MachineType;
use crate::units::{Bytes, Gpa};

/// `VIRTIO_MEM_MIN_BLOCK_SIZE` (hw/virtio/virtio-mem.c).
pub const MIN_BLOCK_SIZE: Bytes = Bytes::mib(1);
/// `VIRTIO_MEM_USABLE_EXTENT` on x86 (hw/virtio/virtio-mem.c): 2 * 128 MiB.
pub const USABLE_EXTENT: Bytes = Bytes::mib(256);
/// The THP size on x86-64 (`virtio_mem_default_thp_size`, also what this kernel reports).
pub const THP_SIZE: Bytes = Bytes::mib(2);

/// What `-device virtio-mem-pci,...` and its `-object memory-backend-*` say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// The device's `id=` (e.g. `vmem0`).
    pub id: String,
    /// The PCI address the device sits at; QEMU's migration idstr starts with it
    /// (`0000:00:03.0/virtio-mem-device-early`).
    pub pci: String,
    /// The memory backend's `id=` (e.g. `mem0`); the RAM block is `<pci>/<memdev>`.
    pub memdev: String,
    /// `memaddr`.
    pub memaddr: Gpa,
    /// The memory backend's `size=`: the device's region size.
    pub region_size: Bytes,
    /// `block-size`; `None` takes QEMU's default (`virtio_mem_default_block_size`).
    pub block_size: Option<Bytes>,
    /// `node`.
    pub node: u32,
    /// The device's `prealloc`.
    pub prealloc: bool,
    /// `x-early-migration`; `None` takes the machine type's compat default.
    pub early_migration: Option<bool>,
    /// `requested-size`.
    pub requested_size: Bytes,
    /// The memory backend's own `prealloc=on` (refused by realize).
    pub memdev_prealloc: bool,
}

/// Facts about the machine QEMU runs on that realize consults.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// The number of NUMA nodes configured with `-numa` (0 when none).
    pub numa_nodes: u32,
    /// The host's THP size (`virtio_mem_thp_size`).
    pub thp_size: Bytes,
}

impl Default for HostFacts {
    fn default() -> HostFacts {
        HostFacts { numa_nodes: 0, thp_size: THP_SIZE }
    }
}

/// A configuration that passed realize, with QEMU's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Realized {
    pub config: DeviceConfig,
    pub block_size: Bytes,
    pub early_migration: bool,
    /// Warnings realize printed (`warn_report`).
    pub warnings: Vec<String>,
}

/// `virtio_mem_default_block_size` (hw/virtio/virtio-mem.c): THP size for base pages,
/// else the page size, at least 1 MiB.
pub fn default_block_size(page_size: Bytes, facts: &HostFacts) -> Bytes {
    if page_size == HOST_PAGE_SIZE {
        page_size.max(facts.thp_size)
    } else {
        page_size.max(MIN_BLOCK_SIZE)
    }
}

impl DeviceConfig {
    /// One device as the reference's command lines write it (`vmem0` at 0000:00:03.0 on
    /// `mem0`, 2 MiB blocks, node 0, machine-default early migration), for tests and benches
    /// to adjust with struct update syntax.
    pub fn vmem0(memaddr: Gpa, region_size: Bytes, requested_size: Bytes, prealloc: bool) -> DeviceConfig {
        DeviceConfig {
            id: "vmem0".into(),
            pci: "0000:00:03.0".into(),
            memdev: "mem0".into(),
            memaddr,
            region_size,
            block_size: Some(Bytes::mib(2)),
            node: 0,
            prealloc,
            early_migration: None,
            requested_size,
            memdev_prealloc: false,
        }
    }

    /// The RAM block's idstr, as the migration stream names it.
    pub fn ram_block_name(&self) -> String {
        format!("{}/{}", self.pci, self.memdev)
    }

    /// Runs QEMU's property setters and realize checks in QEMU's order, returning QEMU's
    /// error text on the first failure.
    pub fn realize(&self, machine: &MachineType, backend: &Backend, facts: &HostFacts) -> Result<Realized, ModelError> {
        let fail = |message: String| Err(ModelError::Realize { device: self.id.clone(), message });
        // virtio_mem_set_block_size: runs when the property is set, before realize.
        if let Some(bs) = self.block_size {
            if bs < MIN_BLOCK_SIZE {
                return fail(format!("'block-size' property has to be at least 0x{:x}", MIN_BLOCK_SIZE.0));
            }
            if !bs.is_power_of_two() {
                return fail("'block-size' property has to be a power of two".into());
            }
        }
        // virtio_mem_device_realize, in source order.
        if self.memdev_prealloc {
            return fail(format!(
                "'memdev' property specifies a memdev with preallocation enabled: {}. Instead, specify 'prealloc=on' for the virtio-mem device. ",
                self.memdev
            ));
        }
        let nodes = facts.numa_nodes;
        if (nodes > 0 && self.node >= nodes) || (nodes == 0 && self.node != 0) {
            return fail(format!(
                "'node' property has value '{}', which exceedsthe number of numa nodes: {}",
                self.node,
                nodes.max(1)
            ));
        }
        let page_size = backend.page_size;
        let default = default_block_size(page_size, facts);
        let block_size = self.block_size.unwrap_or(default);
        let mut warnings = Vec::new();
        if block_size < page_size {
            return fail(format!("'block-size' property has to be at least the page size (0x{:x})", page_size.0));
        } else if block_size < default {
            warnings.push(format!(
                "warning: 'block-size' property is smaller than the default block size ({:x} MiB)",
                default.0 / Bytes::MIB.0
            ));
        }
        if !self.requested_size.is_multiple_of(block_size) {
            return fail(format!("'requested-size' property has to be multiples of 'block-size' (0x{:x})", block_size.0));
        }
        if !Bytes(self.memaddr.0).is_multiple_of(block_size) {
            return fail(format!("'memaddr' property has to be multiples of 'block-size' (0x{:x})", block_size.0));
        }
        if !self.region_size.is_multiple_of(block_size) {
            return fail(format!("'memdev' property memdev size has to be multiples of'block-size' (0x{:x})", block_size.0));
        }
        // bitmap_size is an int32_t in struct VirtIOMEM (include/hw/virtio/virtio-mem.h).
        let nblocks = self.region_size.blocks(block_size).0;
        if nblocks > i32::MAX as u64 {
            return fail(format!(
                "region of {} has {} blocks of {}: QEMU's bitmap_size (int32_t) cannot hold more than {}",
                self.region_size, nblocks, block_size, i32::MAX
            ));
        }
        if self.memaddr.checked_add(self.region_size).is_none() {
            return fail(format!("'memaddr' {} plus the region size {} overflows", self.memaddr, self.region_size));
        }
        Ok(Realized {
            config: self.clone(),
            block_size,
            early_migration: self.early_migration.unwrap_or_else(|| machine.early_migration_default()),
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendKind;

    fn cfg() -> DeviceConfig {
        DeviceConfig::vmem0(Gpa(0x1_4000_0000), Bytes::gib(1), Bytes::mib(256), true)
    }

    fn realize(c: &DeviceConfig, kind: BackendKind) -> Result<Realized, String> {
        let m = MachineType::parse("q35").unwrap();
        c.realize(&m, &Backend::unlimited(kind), &HostFacts::default()).map_err(|e| match e {
            ModelError::Realize { message, .. } => message,
            other => panic!("unexpected {other:?}"),
        })
    }

    #[test]
    fn every_realize_check_has_qemus_words() {
        let tmpfs = BackendKind::TmpfsFile;
        let cases: Vec<(Box<dyn Fn(&mut DeviceConfig)>, BackendKind, &str)> = vec![
            (Box::new(|c| c.block_size = Some(Bytes(512 << 10))), tmpfs, "'block-size' property has to be at least 0x100000"),
            (Box::new(|c| c.block_size = Some(Bytes::mib(3))), tmpfs, "'block-size' property has to be a power of two"),
            (Box::new(|c| c.memdev_prealloc = true), tmpfs, "'memdev' property specifies a memdev with preallocation enabled: mem0. Instead, specify 'prealloc=on' for the virtio-mem device. "),
            (Box::new(|c| c.node = 1), tmpfs, "'node' property has value '1', which exceedsthe number of numa nodes: 1"),
            (Box::new(|c| c.block_size = Some(Bytes::mib(1))), BackendKind::Hugetlbfs, "'block-size' property has to be at least the page size (0x200000)"),
            (Box::new(|c| c.requested_size = Bytes::mib(3)), tmpfs, "'requested-size' property has to be multiples of 'block-size' (0x200000)"),
            (Box::new(|c| c.memaddr = Gpa(0x1_4010_0000)), tmpfs, "'memaddr' property has to be multiples of 'block-size' (0x200000)"),
            (Box::new(|c| c.region_size = Bytes::mib(1025)), tmpfs, "'memdev' property memdev size has to be multiples of'block-size' (0x200000)"),
        ];
        for (edit, kind, want) in cases {
            let mut c = cfg();
            edit(&mut c);
            assert_eq!(realize(&c, kind), Err(want.to_string()));
        }
    }

    #[test]
    fn defaults_follow_qemu() {
        let mut c = cfg();
        c.block_size = None;
        assert_eq!(realize(&c, BackendKind::Memfd).unwrap().block_size, Bytes::mib(2));
        let mut c = cfg();
        c.block_size = Some(Bytes::mib(1));
        let r = realize(&c, BackendKind::Memfd).unwrap();
        assert_eq!(r.warnings, vec!["warning: 'block-size' property is smaller than the default block size (2 MiB)"]);
        let old = MachineType::parse("pc-q35-7.2").unwrap();
        let r = cfg().realize(&old, &Backend::unlimited(BackendKind::Memfd), &HostFacts::default()).unwrap();
        assert!(!r.early_migration);
        let mut c = cfg();
        c.early_migration = Some(true);
        assert!(c.realize(&old, &Backend::unlimited(BackendKind::Memfd), &HostFacts::default()).unwrap().early_migration);
    }
}
