//! One QEMU process as the model sees it: machine type, virtio-mem devices, RAM blocks and
//! the host memory behind them.

use crate::backend::{Backend, HOST_PAGE_SIZE};
use crate::config::{DeviceConfig, HostFacts};
use crate::device::VirtioMem;
use crate::error::ModelError;
use crate::host::{HostMemory, HostSetup, RamBlockId};
use crate::memdev::{BlockMemory, LimitId, Memory};
use crate::machine::MachineType;
use crate::profile::QemuProfile;
use crate::model_memory::{ModelMemory, PoolId};
use crate::request::{Request, Response};
use crate::units::{BlockCount, BlockIndex, Bytes};
use crate::variant::Variant;

/// The RAM block that holds the machine's ordinary memory (`-m`).
pub const MAIN_RAM: &str = "pc.ram";

/// What one side of a migration is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// The QEMU that runs it.
    pub qemu: QemuProfile,
    pub machine: MachineType,
    pub devices: Vec<DeviceConfig>,
    /// The memdevs (`-object memory-backend-*`), the host limits they draw from, and main
    /// RAM's memdev if it has one.
    pub memory: Memory,
    /// Ordinary guest RAM (`-m`): on `memory.main`'s memdev, or private anonymous memory
    /// with no limit.
    pub main_ram: Bytes,
    /// Other RAM blocks (ROMs, ACPI tables: `pc.bios`, `/rom@etc/acpi/tables`, ...), after
    /// `pc.ram`, on private anonymous memory.
    pub extra_ram: Vec<(String, Bytes)>,
    pub facts: HostFacts,
    pub variant: Variant,
}

/// A registered RAM block: its idstr, the host's id and its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamBlockInfo {
    pub name: String,
    pub id: RamBlockId,
    pub len: Bytes,
    /// The virtio-mem device whose memdev this is.
    pub device: Option<usize>,
    /// Its kind of memory and page size.
    pub backend: Backend,
    /// A MAP_PRIVATE mapping of a file (`share=off`).
    pub private_file: bool,
}

/// A QEMU process: devices, RAM blocks, and the memory behind them.
#[derive(Clone, Debug)]
pub struct Vm<H = ModelMemory> {
    /// The QEMU that runs it.
    pub qemu: QemuProfile,
    pub machine: MachineType,
    pub devices: Vec<VirtioMem>,
    pub host: H,
    pub blocks: Vec<RamBlockInfo>,
    /// Lines realize printed (warnings).
    pub lines: Vec<String>,
    pub variant: Variant,
    /// `static bool warned` in `virtio_mem_set_block_state`: a failed preallocation of a plug
    /// is reported once per QEMU process, however many devices fail.
    pub warned_prealloc: bool,
}

/// The pools a model VM draws from: one per limit of its `Memory`, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pools {
    pub limits: Vec<PoolId>,
}

impl Pools {
    pub fn of(&self, limit: LimitId) -> PoolId {
        self.limits[limit.0]
    }
}

impl Vm<ModelMemory> {
    /// Creates the RAM blocks on the model's memory and realizes every device.
    pub fn realize(cfg: &VmConfig) -> Result<(Vm<ModelMemory>, Pools), ModelError> {
        let mut host = ModelMemory::new();
        if cfg.variant == Variant::DontneedOnShared {
            host.override_discard(crate::backend::DiscardMethod::Dontneed);
        }
        let pools = Pools { limits: cfg.memory.limits.iter().map(|l| host.add_pool(l.capacity)).collect() };
        let vm = Vm::realize_on(cfg, host, |host, name, mem, len| {
            let draws = mem.draws.iter().map(|alts| alts.iter().map(|l| pools.of(*l)).collect()).collect();
            host.add_block_drawing(name, mem.backend, len, draws, mem.reserve)
        })?;
        Ok((vm, pools))
    }
}

impl<H: HostSetup> Vm<H> {
    /// Creates the RAM blocks on any host (the model's or real memory) and realizes every
    /// device, in command-line order.
    pub fn realize_with(cfg: &VmConfig, host: H) -> Result<Vm<H>, ModelError> {
        Vm::realize_on(cfg, host, |host, name, mem, len| host.add_ram_block(name, mem, len))
    }
}

impl<H: HostMemory> Vm<H> {
    fn realize_on(
        cfg: &VmConfig,
        mut host: H,
        mut add: impl FnMut(&mut H, &str, &BlockMemory, Bytes) -> Result<RamBlockId, crate::host::HostError>,
    ) -> Result<Vm<H>, ModelError> {
        // `select_machine` (system/vl.c): a machine type this QEMU does not offer starts nothing.
        if !cfg.qemu.offers(&cfg.machine) {
            return Err(cfg.qemu.unknown_machine(cfg.machine.name()));
        }
        // Realize every device first: a refused device starts nothing. Each is placed first
        // (memory_device_pre_plug runs in the machine's pre_plug hook, before the device's
        // realize), against main RAM and the devices before it.
        let base = u128::from(crate::pc_layout::device_memory_start(&cfg.machine, cfg.main_ram));
        let mut placed = crate::memory_device::Placed::new(base, crate::memory_device::device_memory_size(&cfg.devices));
        let mut realized = Vec::with_capacity(cfg.devices.len());
        for (i, d) in cfg.devices.iter().enumerate() {
            // virtio_mem_device_realize: host_memory_backend_is_mapped.
            if cfg.memory.main.as_deref() == Some(d.memdev.as_str()) || cfg.devices[..i].iter().any(|o| o.memdev == d.memdev) {
                return Err(ModelError::Realize { device: d.id.clone(), message: format!("'memdev' property specifies a busy memdev: {}", d.memdev) });
            }
            placed.place(d).map_err(|message| ModelError::Realize { device: d.id.clone(), message })?;
            let memdev = cfg.memory.memdev(&d.memdev).ok_or_else(|| ModelError::Realize {
                device: d.id.clone(),
                message: format!("Property 'virtio-mem-pci.memdev' can't find value '{}'", d.memdev),
            })?;
            realized.push(d.realize(&cfg.machine, &memdev.backend(), &cfg.facts)?);
        }
        // host_memory_backend_memory_complete (backends/hostmem.c), for every backend before
        // any device is created; observed on QEMU 10.0.2.
        if let Some(m) = cfg.memory.memdevs.iter().find(|m| m.prealloc && !m.reserve) {
            return Err(ModelError::Backend { object: m.object.clone(), message: "'prealloc=on' and 'reserve=off' are incompatible".into() });
        }
        let mut blocks = Vec::new();
        if !cfg.main_ram.is_zero() {
            // `-machine memory-backend=<id>`: the block is the backend's, registered under the
            // backend's id (`vmstate_register_ram_global`); libvirt names it `pc.ram`.
            let main = cfg.memory.main.as_deref().and_then(|id| cfg.memory.memdev(id));
            let (name, mem) = match main {
                Some(m) => (m.id.clone(), cfg.memory.block_memory(m)),
                None => (MAIN_RAM.to_string(), BlockMemory::main_ram()),
            };
            let id = add(&mut host, &name, &mem, cfg.main_ram).map_err(|e| map_failed(main.map_or("", |m| m.object.as_str()), e))?;
            // host_memory_backend_memory_complete: a backend with prealloc=on is populated
            // when it is created, before any device (qemu_prealloc_mem).
            if let Some(m) = main.filter(|m| m.prealloc) {
                host.populate(id, Bytes::ZERO, cfg.main_ram).map_err(|e| ModelError::Backend {
                    object: m.object.clone(),
                    message: format!("qemu_prealloc_mem: preallocating memory failed: {}", e.errno),
                })?;
            }
            blocks.push(RamBlockInfo { name, id, len: cfg.main_ram, device: None, backend: mem.backend, private_file: mem.private });
        }
        for (name, len) in &cfg.extra_ram {
            let mem = BlockMemory::main_ram();
            let id = add(&mut host, name, &mem, *len).expect("memory without a reservation always maps");
            blocks.push(RamBlockInfo { name: name.clone(), id, len: *len, device: None, backend: mem.backend, private_file: mem.private });
        }
        let mut devices = Vec::new();
        let mut lines = Vec::new();
        // machine_run_board_init → warn on a deprecated machine, before any device warning.
        if cfg.qemu.deprecates(&cfg.machine) {
            lines.push(format!("warning: Machine type '{}' is deprecated: machines more than 3 years old are subject to deletion after 6 years", cfg.machine.name()));
        }
        for (i, (d, realized)) in cfg.devices.iter().zip(realized).enumerate() {
            lines.extend(realized.warnings.iter().cloned());
            let name = d.ram_block_name();
            let memdev = cfg.memory.memdev(&d.memdev).expect("checked before any block was added");
            let mem = cfg.memory.block_memory(memdev);
            let id = add(&mut host, &name, &mem, d.region_size).map_err(|e| map_failed(&memdev.object, e))?;
            blocks.push(RamBlockInfo { name, id, len: d.region_size, device: Some(i), backend: mem.backend, private_file: mem.private });
            devices.push(VirtioMem::new(realized, id, cfg.variant));
        }
        Ok(Vm { qemu: cfg.qemu, machine: cfg.machine.clone(), devices, host, blocks, lines, variant: cfg.variant, warned_prealloc: false })
    }
}

/// `qemu_ram_alloc_from_fd` / `qemu_anon_ram_alloc` when mmap fails: QEMU refuses to start.
fn map_failed(object: &str, e: crate::host::HostError) -> ModelError {
    ModelError::Map { object: object.to_string(), errno: e.errno }
}

impl<H: HostMemory> Vm<H> {
    /// The guest sends one request to device `dev`; `busy` is `virtio_mem_is_busy()`.
    pub fn request(&mut self, dev: usize, req: Request, busy: bool) -> Response {
        let resp = self.devices[dev].handle(req, &mut self.host, busy, &mut self.warned_prealloc);
        let warnings = self.devices[dev].take_warnings();
        self.lines.extend(warnings);
        resp
    }

    /// The guest driver plugs `count` blocks from `first` on, in requests of at most
    /// `u16::MAX` blocks (the request's `nb_blocks` is a le16). Returns the first response
    /// that is not ACK, if any. A range whose address overflows is answered ERROR without a
    /// request, as `virtio_mem_valid_range` would answer a range outside the region.
    pub fn guest_plug(&mut self, dev: usize, first: BlockIndex, count: BlockCount, busy: bool) -> Option<Response> {
        let bs = self.devices[dev].block_size();
        let mut next = first.0;
        let Some(end) = first.0.checked_add(count.0) else {
            return Some(Response::Error);
        };
        while next < end {
            let n = (end - next).min(u16::MAX as u64) as u16;
            let addr = BlockIndex(next).offset(bs).and_then(|off| self.devices[dev].addr().checked_add(off));
            let Some(addr) = addr else {
                return Some(Response::Error);
            };
            let resp = self.request(dev, Request::Plug { addr, nb_blocks: n }, busy);
            if resp != Response::Ack {
                return Some(resp);
            }
            next += n as u64;
        }
        None
    }

    /// Like Linux's driver after it loads: plug from the lowest block up until the plugged
    /// size reaches `size`.
    pub fn guest_plug_size(&mut self, dev: usize, size: Bytes, busy: bool) -> Option<Response> {
        let bs = self.devices[dev].block_size();
        let have = self.devices[dev].size();
        let want = size.checked_sub(have).unwrap_or(Bytes::ZERO).blocks(bs);
        let first = BlockIndex(have.blocks(bs).0);
        if want.0 == 0 {
            return None;
        }
        self.guest_plug(dev, first, want, busy)
    }

    /// The page size of a RAM block: its backend's.
    pub fn host_page_size(&self, id: RamBlockId) -> Bytes {
        self.blocks.iter().find(|b| b.id == id).map_or(HOST_PAGE_SIZE, |b| b.backend.page_size)
    }

    /// The RAM block info of device `dev`'s memdev.
    pub fn device_block(&self, dev: usize) -> &RamBlockInfo {
        self.blocks.iter().find(|b| b.device == Some(dev)).expect("every device has a RAM block")
    }
}
