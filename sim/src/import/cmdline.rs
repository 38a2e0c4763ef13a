//! One side's QEMU command line, read into what a scenario holds: machine, RAM, memory
//! backends, NUMA nodes and virtio-mem devices with the PCI path QEMU gives each; everything
//! else is kept as a note, by its text, never dropped.

use vmemsim_model::pc_layout::{board_slots, first_free_slot};
use vmemsim_model::{MachineType, QemuProfile};

use super::qemu_args::{boolean, options, parse_opts, size, Opts};

/// A memory backend (`-object memory-backend-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub id: String,
    pub ty: String,
    pub size: Option<u64>,
    pub mem_path: Option<String>,
    pub share: Option<bool>,
    pub reserve: Option<bool>,
    pub prealloc: bool,
    pub hugetlb: bool,
    pub hugetlbsize: Option<u64>,
    pub host_nodes: Vec<u32>,
    pub policy: Option<String>,
    pub text: String,
}

/// A `-device virtio-mem-pci`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioMem {
    pub id: String,
    pub memdev: String,
    pub requested: u64,
    pub block_size: Option<u64>,
    pub node: u32,
    pub prealloc: bool,
    pub memaddr: Option<u64>,
    pub early_migration: Option<bool>,
    /// `0000:00:03.0`, or a longer path behind bridges (`pcibus_get_dev_path`).
    pub pci: String,
    /// Whether QEMU chose the slot (no `addr=`).
    pub pci_assigned: bool,
    pub text: String,
}

/// What one command line says.
#[derive(Clone, Debug, Default)]
pub struct Side {
    pub machine: String,
    pub ram: u64,
    pub maxmem: Option<u64>,
    pub main_memdev: Option<String>,
    pub numa_nodes: u32,
    pub backends: Vec<Backend>,
    pub devices: Vec<VirtioMem>,
    pub incoming: Option<String>,
    /// Options and properties the model does not use, as written, with why.
    pub notes: Vec<String>,
}

/// PCI devices QEMU's x86 targets have that a VMM's command line uses, beyond `*-pci`.
const PCI_DEVICES: &[&str] = &[
    "e1000", "e1000e", "e1000-82544gc", "e1000-82545em", "rtl8139", "ne2k_pci", "pcnet", "vmxnet3", "VGA", "qxl", "qxl-vga", "bochs-display",
    "cirrus-vga", "ati-vga", "secondary-vga", "ramfb", "ich9-ahci", "ahci", "piix3-ide", "piix4-ide", "nec-usb-xhci", "qemu-xhci", "usb-ehci",
    "ich9-usb-ehci1", "ich9-usb-uhci1", "ich9-usb-uhci2", "ich9-usb-uhci3", "piix3-usb-uhci", "piix4-usb-uhci", "intel-hda", "ich9-intel-hda",
    "AC97", "ES1370", "megasas", "megasas-gen2", "lsi53c895a", "mptsas1068", "am53c974", "dc390", "vfio-pci", "ivshmem-plain",
    "ivshmem-doorbell", "i6300esb", "pvscsi", "nvme", "pcie-root-port", "pci-bridge", "pcie-pci-bridge", "x3130-upstream",
    "xio3130-downstream", "ioh3420", "pxb", "pxb-pcie", "edu", "pci-testdev", "sga", "pvpanic-pci", "virtio-vga", "virtio-vga-gl",
];

/// Devices whose secondary bus takes other devices (`bus=<their id>`).
const BRIDGES: &[&str] = &["pcie-root-port", "pci-bridge", "pcie-pci-bridge", "ioh3420", "xio3130-downstream"];

struct Bus {
    id: String,
    /// The PCI path of the bridge whose secondary bus this is (empty for the root bus).
    path: String,
    taken: Vec<u8>,
    /// A PCIe root or downstream port has one slot.
    one_slot: bool,
}

fn is_pci(driver: &str) -> bool {
    driver.ends_with("-pci") || driver.contains("-pci-") || PCI_DEVICES.contains(&driver)
}

/// `addr=0x3`, `addr=3`, `addr=03.1`, `addr=0x3.0x1` → (slot, function).
fn devfn(text: &str) -> Result<(u8, u8), String> {
    let num = |t: &str| -> Result<u8, String> {
        let t = t.trim_start_matches("0x");
        u8::from_str_radix(t, 16).map_err(|_| format!("addr={text} is not a PCI slot[.function]"))
    };
    let (s, f) = match text.split_once('.') {
        Some((s, f)) => (num(s)?, num(f)?),
        None => (num(text)?, 0),
    };
    if s > 31 || f > 7 {
        return Err(format!("addr={text} is beyond slot 31, function 7"));
    }
    Ok((s, f))
}

/// Reads one command line. `qemu` resolves the machine alias for the root bus and defaults.
pub fn read(args: &[String], qemu: &QemuProfile) -> Result<Side, String> {
    let opts = options(args)?;
    let mut side = Side { machine: "pc".into(), ram: 128 << 20, ..Side::default() };
    let (mut nodefaults, mut vga, mut nic) = (false, true, true);
    let mut objects = Vec::new();
    let mut devices = Vec::new();
    let mut numa_memdevs: Vec<(String, String)> = Vec::new();
    for (name, value) in &opts {
        let v = value.as_deref().unwrap_or("");
        match name.as_str() {
            "machine" | "M" => {
                let o = parse_opts(v, "type")?;
                if let Some(t) = o.kind("type") {
                    side.machine = t.to_string();
                }
                for (k, val) in &o.props {
                    match k.as_str() {
                        "type" => {}
                        "memory-backend" => side.main_memdev = Some(val.clone()),
                        _ => side.notes.push(format!("-machine {k}={val}: not modelled")),
                    }
                }
            }
            "m" => {
                let o = parse_opts(v, "size")?;
                if let Some(s) = o.kind("size") {
                    side.ram = size(s, 1 << 20).map_err(|e| format!("-m: {e}"))?;
                }
                for (k, val) in &o.props {
                    match k.as_str() {
                        "size" => {}
                        "maxmem" => side.maxmem = Some(size(val, 1 << 20).map_err(|e| format!("-m maxmem: {e}"))?),
                        _ => side.notes.push(format!("-m {k}={val}: not modelled")),
                    }
                }
            }
            "object" => objects.push(parse_opts(v, "qom-type")?),
            "device" => devices.push(parse_opts(v, "driver")?),
            "numa" => {
                let o = parse_opts(v, "type")?;
                if o.kind("type") == Some("node") {
                    side.numa_nodes += 1;
                    if let Some(m) = o.get("memdev") {
                        numa_memdevs.push((m.to_string(), v.to_string()));
                    }
                } else {
                    side.notes.push(format!("-numa {v}: not modelled"));
                }
            }
            "nodefaults" => nodefaults = true,
            "vga" if v == "none" => vga = false,
            "nic" | "net" | "netdev" => {
                nic = false;
                side.notes.push(format!("-{name} {v}: not modelled (removes the default NIC)"));
            }
            "incoming" => side.incoming = Some(v.to_string()),
            "S" => {}
            _ => side.notes.push(match value {
                Some(v) => format!("-{name} {v}: not modelled"),
                None => format!("-{name}: not modelled"),
            }),
        }
    }
    // One NUMA node on a memdev: main RAM is that memdev's RAM block, as with
    // -machine memory-backend. Several: one RAM block per node, which the model does not have.
    match numa_memdevs.as_slice() {
        [(m, _)] if side.main_memdev.is_none() => side.main_memdev = Some(m.clone()),
        list => {
            for (m, text) in list {
                side.notes.push(format!("-numa {text}: main RAM of this node on memdev {m} is modelled as ordinary RAM (one RAM block per node is not)"));
            }
        }
    }
    let machine = MachineType::parse_for(&side.machine, qemu).map_err(|e| format!("-machine {}: {e}", side.machine))?;
    let root = if machine.is_q35() { "pcie.0" } else { "pci.0" };
    let mut buses = vec![Bus { id: root.into(), path: "0000:00".into(), taken: board_slots(&machine, vga && !nodefaults, nic && !nodefaults), one_slot: false }];
    for o in &objects {
        let ty = o.kind("qom-type").unwrap_or("");
        if !["memory-backend-ram", "memory-backend-memfd", "memory-backend-file"].contains(&ty) {
            // memory-backend-epc and the like, or no memory backend at all.
            side.notes.push(format!("-object {}: not modelled", o.text));
            continue;
        }
        side.backends.push(backend(o, ty, &mut side.notes)?);
    }
    for o in &devices {
        let driver = o.kind("driver").unwrap_or("").to_string();
        let bus_name = o.get("bus");
        let on_pci = match bus_name {
            Some(b) => buses.iter().any(|x| x.id == b),
            None => is_pci(&driver),
        };
        if !on_pci {
            if driver == "virtio-mem-pci" {
                return Err(format!("-device {}: bus={} is not a PCI bus of this command line", o.text, bus_name.unwrap_or("")));
            }
            side.notes.push(format!("-device {}: not modelled (not on a PCI bus, takes no slot)", o.text));
            continue;
        }
        let bi = bus_name.map_or(Some(0), |b| buses.iter().position(|x| x.id == b)).expect("checked above");
        let (slot, func, assigned) = match o.get("addr") {
            Some(a) => {
                let (s, f) = devfn(a).map_err(|e| format!("-device {}: {e}", o.text))?;
                (s, f, false)
            }
            None => {
                let bus = &buses[bi];
                let free = if bus.one_slot { (!bus.taken.contains(&0)).then_some(0) } else { first_free_slot(&bus.taken) };
                let s = free.ok_or_else(|| format!("-device {}: no free slot is left on bus {}", o.text, bus.id))?;
                (s, 0, true)
            }
        };
        if func == 0 && buses[bi].taken.contains(&slot) && !assigned {
            // QEMU refuses this at start-up ("PCI: slot N function 0 not available").
            return Err(format!("-device {}: PCI slot {slot:#x} of bus {} is already in use", o.text, buses[bi].id));
        }
        if func == 0 {
            buses[bi].taken.push(slot);
        }
        let path = format!("{}:{slot:02x}.{func:x}", buses[bi].path);
        if BRIDGES.contains(&driver.as_str()) {
            let id = o.get("id").ok_or_else(|| format!("-device {}: a bridge needs an id for its devices' bus=", o.text))?;
            buses.push(Bus { id: id.to_string(), path: path.clone(), taken: Vec::new(), one_slot: driver != "pci-bridge" && driver != "pcie-pci-bridge" });
        }
        if driver == "virtio-mem-pci" {
            side.devices.push(virtio_mem(o, path, assigned, &mut side.notes)?);
        } else if !BRIDGES.contains(&driver.as_str()) {
            side.notes.push(format!("-device {}: not modelled (takes PCI slot {})", o.text, path));
        }
    }
    Ok(side)
}

fn backend(o: &Opts, ty: &str, notes: &mut Vec<String>) -> Result<Backend, String> {
    let err = |e: String| format!("-object {}: {e}", o.text);
    let id = o.get("id").ok_or_else(|| err("a memory backend needs an id".into()))?.to_string();
    let mut b = Backend {
        id,
        ty: ty.to_string(),
        size: None,
        mem_path: None,
        share: None,
        reserve: None,
        prealloc: false,
        hugetlb: false,
        hugetlbsize: None,
        host_nodes: Vec::new(),
        policy: None,
        text: o.text.clone(),
    };
    for (k, v) in &o.props {
        match k.as_str() {
            "qom-type" | "id" => {}
            "size" => b.size = Some(size(v, 1).map_err(err)?),
            "mem-path" => b.mem_path = Some(v.clone()),
            "share" => b.share = Some(boolean(v).map_err(err)?),
            "reserve" => b.reserve = Some(boolean(v).map_err(err)?),
            "prealloc" => b.prealloc = boolean(v).map_err(err)?,
            "hugetlb" => b.hugetlb = boolean(v).map_err(err)?,
            "hugetlbsize" => b.hugetlbsize = Some(size(v, 1).map_err(err)?),
            "host-nodes" => {
                // host-nodes=0-1 or host-nodes=0,host-nodes=1
                for part in v.split(':') {
                    let (a, z) = part.split_once('-').unwrap_or((part, part));
                    let (a, z): (u32, u32) = (a.parse().map_err(|_| err(format!("host-nodes={v}")))?, z.parse().map_err(|_| err(format!("host-nodes={v}")))?);
                    b.host_nodes.extend(a..=z.min(a + 1024));
                }
            }
            // The QAPI enum HostMemPolicy (qapi/machine.json).
            "policy" if ["default", "preferred", "bind", "interleave"].contains(&v.as_str()) => b.policy = Some(v.clone()),
            "policy" => return Err(err(format!("Parameter 'policy' does not accept value '{v}' (default, preferred, bind or interleave)"))),
            _ => notes.push(format!("-object {}: {k}={v} not modelled", b.id)),
        }
    }
    Ok(b)
}

fn virtio_mem(o: &Opts, pci: String, assigned: bool, notes: &mut Vec<String>) -> Result<VirtioMem, String> {
    let err = |e: String| format!("-device {}: {e}", o.text);
    let id = o.get("id").ok_or_else(|| err("give the virtio-mem device an id (the scenario names devices by id)".into()))?.to_string();
    let memdev = o.get("memdev").ok_or_else(|| err("'memdev' property is not set".into()))?.to_string();
    let mut d = VirtioMem { id, memdev, requested: 0, block_size: None, node: 0, prealloc: false, memaddr: None, early_migration: None, pci, pci_assigned: assigned, text: o.text.clone() };
    for (k, v) in &o.props {
        match k.as_str() {
            "driver" | "id" | "memdev" | "bus" | "addr" => {}
            "requested-size" => d.requested = size(v, 1).map_err(err)?,
            "block-size" => d.block_size = Some(size(v, 1).map_err(err)?),
            "node" => d.node = v.parse().map_err(|_| err(format!("node={v}")))?,
            "prealloc" => d.prealloc = boolean(v).map_err(err)?,
            "memaddr" => d.memaddr = Some(size(v, 1).map_err(err)?),
            "x-early-migration" => d.early_migration = Some(boolean(v).map_err(err)?),
            _ => notes.push(format!("-device {}: {k}={v} not modelled", d.id)),
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn slots_follow_qemus_assignment_and_bridges_nest_the_path() {
        let q = QemuProfile::default();
        let s = read(&args("qemu-system-x86_64 -machine q35 -m 4G,maxmem=64G -object memory-backend-ram,id=m0,size=1G -device virtio-mem-pci,id=v0,memdev=m0 -device pcie-root-port,id=rp1,bus=pcie.0,addr=0x5 -object memory-backend-ram,id=m1,size=1G -device virtio-mem-pci,id=v1,memdev=m1,bus=rp1 -cpu host"), &q).unwrap();
        assert_eq!(s.devices[0].pci, "0000:00:03.0");
        assert_eq!(s.devices[1].pci, "0000:00:05.0:00.0");
        assert_eq!(s.ram, 4 << 30);
        assert_eq!(s.maxmem, Some(64 << 30));
        assert!(s.notes.iter().any(|n| n == "-cpu host: not modelled"), "{:?}", s.notes);
        let p = read(&args("-machine pc -nodefaults -object memory-backend-ram,id=m0,size=1G -device virtio-mem-pci,id=v0,memdev=m0"), &q).unwrap();
        assert_eq!(p.devices[0].pci, "0000:00:02.0");
    }
}
