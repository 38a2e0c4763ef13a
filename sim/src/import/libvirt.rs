//! `vmemsim import libvirt DOMAIN.xml`: a libvirt domain's memory, written as the QEMU command
//! line libvirt's QEMU driver starts (src/qemu/qemu_command.c: `qemuBuildMemoryBackendProps`,
//! `qemuBuildMemoryDeviceProps`, `qemuBuildMemCommandLine`, `qemuBuildNumaCommandLine`), then
//! imported as that command line. Only what decides memory is translated; the rest of the
//! domain is named in a note.

use serde::Deserialize;

use super::qemu::MountFact;
use super::qemu_args::size;

#[derive(Debug, Deserialize)]
struct Domain {
    name: Option<String>,
    #[serde(rename = "maxMemory")]
    max_memory: Option<Scaled>,
    memory: Option<Scaled>,
    #[serde(rename = "memoryBacking")]
    memory_backing: Option<MemoryBacking>,
    os: Option<Os>,
    cpu: Option<Cpu>,
    numatune: Option<Numatune>,
    devices: Option<Devices>,
}

/// A scaled integer: text and `unit` (KiB by default).
#[derive(Debug, Deserialize)]
struct Scaled {
    #[serde(rename = "@unit")]
    unit: Option<String>,
    #[serde(rename = "$text")]
    value: String,
}

#[derive(Debug, Deserialize)]
struct MemoryBacking {
    hugepages: Option<Hugepages>,
    source: Option<TypeAttr>,
    access: Option<ModeAttr>,
    allocation: Option<ModeAttr>,
}

#[derive(Debug, Deserialize)]
struct Hugepages {
    #[serde(rename = "page", default)]
    pages: Vec<Page>,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(rename = "@size")]
    size: String,
    #[serde(rename = "@unit")]
    unit: Option<String>,
    #[serde(rename = "@nodeset")]
    nodeset: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TypeAttr {
    #[serde(rename = "@type")]
    ty: String,
}

#[derive(Debug, Deserialize)]
struct ModeAttr {
    #[serde(rename = "@mode")]
    mode: String,
}

#[derive(Debug, Deserialize)]
struct Os {
    #[serde(rename = "type")]
    ty: Option<OsType>,
}

#[derive(Debug, Deserialize)]
struct OsType {
    #[serde(rename = "@machine")]
    machine: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Cpu {
    numa: Option<Numa>,
}

#[derive(Debug, Deserialize)]
struct Numa {
    #[serde(rename = "cell", default)]
    cells: Vec<Cell>,
}

#[derive(Debug, Deserialize)]
struct Cell {
    #[serde(rename = "@id")]
    id: Option<u32>,
    #[serde(rename = "@memory")]
    memory: String,
    #[serde(rename = "@unit")]
    unit: Option<String>,
    #[serde(rename = "@memAccess")]
    mem_access: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Numatune {
    memory: Option<NumatuneMemory>,
    #[serde(rename = "memnode", default)]
    memnodes: Vec<Memnode>,
}

#[derive(Debug, Deserialize)]
struct NumatuneMemory {
    #[serde(rename = "@mode")]
    mode: Option<String>,
    #[serde(rename = "@nodeset")]
    nodeset: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Memnode {
    #[serde(rename = "@cellid")]
    cellid: u32,
    #[serde(rename = "@mode")]
    mode: Option<String>,
    #[serde(rename = "@nodeset")]
    nodeset: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Devices {
    #[serde(rename = "memory", default)]
    memories: Vec<MemoryDevice>,
    #[serde(rename = "controller", default)]
    controllers: Vec<Controller>,
}

#[derive(Debug, Deserialize)]
struct MemoryDevice {
    #[serde(rename = "@model")]
    model: String,
    #[serde(rename = "@access")]
    access: Option<String>,
    source: Option<MemSource>,
    target: MemTarget,
    alias: Option<Alias>,
    address: Option<PciAddress>,
}

#[derive(Debug, Deserialize)]
struct MemSource {
    nodemask: Option<String>,
    pagesize: Option<Scaled>,
}

#[derive(Debug, Deserialize)]
struct MemTarget {
    size: Scaled,
    node: Option<u32>,
    block: Option<Scaled>,
    requested: Option<Scaled>,
    address: Option<BaseAddress>,
}

#[derive(Debug, Deserialize)]
struct BaseAddress {
    #[serde(rename = "@base")]
    base: String,
}

#[derive(Debug, Deserialize)]
struct Alias {
    #[serde(rename = "@name")]
    name: String,
}

#[derive(Debug, Deserialize)]
struct PciAddress {
    #[serde(rename = "@type")]
    ty: Option<String>,
    #[serde(rename = "@bus")]
    bus: Option<String>,
    #[serde(rename = "@slot")]
    slot: Option<String>,
    #[serde(rename = "@function")]
    function: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Controller {
    #[serde(rename = "@type")]
    ty: String,
    #[serde(rename = "@index")]
    index: Option<String>,
    #[serde(rename = "@model")]
    model: Option<String>,
    address: Option<PciAddress>,
}

/// libvirt's units (`virScaleInteger`): KiB by default; b, bytes, KB, k, KiB, MB, M, MiB, GB, G,
/// GiB, TB, T, TiB (the decimal ones are powers of 1000).
fn scaled(value: &str, unit: Option<&str>, what: &str) -> Result<u64, String> {
    let n: u64 = value.trim().parse().map_err(|_| format!("{what}: '{value}' is not a number"))?;
    let mul: u64 = match unit.unwrap_or("KiB") {
        "b" | "bytes" => 1,
        "KB" => 1000,
        "k" | "K" | "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "T" | "TiB" => 1 << 40,
        u => return Err(format!("{what}: unknown unit '{u}'")),
    };
    n.checked_mul(mul).ok_or_else(|| format!("{what}: {value} {} is too large", unit.unwrap_or("KiB")))
}

fn sc(s: &Scaled, what: &str) -> Result<u64, String> {
    scaled(&s.value, s.unit.as_deref(), what)
}

/// `0x02` / `2` → 2.
fn hex(text: &str, what: &str) -> Result<u64, String> {
    let t = text.trim();
    let r = match t.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("{what}: '{text}' is not a number"))
}

/// `0-3,5` → [0, 1, 2, 3, 5].
fn nodeset(text: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, z) = part.split_once('-').unwrap_or((part, part));
        let (a, z): (u32, u32) = (a.parse().map_err(|_| format!("nodeset '{text}'"))?, z.parse().map_err(|_| format!("nodeset '{text}'"))?);
        if z < a || z - a > 1024 {
            return Err(format!("nodeset '{text}' is not a range of nodes"));
        }
        out.extend(a..=z);
    }
    Ok(out)
}

/// The numatune mode as QEMU's `policy` (`qemuNumaPolicyTypeToString`): strict → bind;
/// restrictive sets none.
fn policy(mode: &str) -> Option<&'static str> {
    match mode {
        "strict" => Some("bind"),
        "preferred" => Some("preferred"),
        "interleave" => Some("interleave"),
        _ => None,
    }
}

/// The QEMU arguments libvirt writes for this domain's memory, and notes on what it left out.
pub fn command_line(xml: &str, mounts: &[MountFact]) -> Result<(Vec<String>, Vec<String>), String> {
    let d: Domain = quick_xml::de::from_str(xml).map_err(|e| format!("the domain XML: {e}"))?;
    let mut notes = Vec::new();
    let name = d.name.clone().unwrap_or_else(|| "guest".into());
    let machine = d.os.as_ref().and_then(|o| o.ty.as_ref()).and_then(|t| t.machine.clone()).ok_or("the domain XML: <os><type machine='...'> is missing (use the XML `virsh dumpxml` prints)")?;
    let backing = d.memory_backing.as_ref();
    let source_type = backing.and_then(|b| b.source.as_ref()).map(|s| s.ty.as_str()).unwrap_or("anonymous");
    let access = backing.and_then(|b| b.access.as_ref()).map(|a| a.mode.as_str()).unwrap_or("default");
    let immediate = backing.and_then(|b| b.allocation.as_ref()).is_some_and(|a| a.mode == "immediate");
    let pages: Vec<(u64, Option<Vec<u32>>)> = match backing.and_then(|b| b.hugepages.as_ref()) {
        Some(h) if h.pages.is_empty() => vec![(0, None)],
        Some(h) => h.pages.iter().map(|p| Ok((scaled(&p.size, p.unit.as_deref(), "<hugepages><page size>")?, p.nodeset.as_deref().map(nodeset).transpose()?))).collect::<Result<_, String>>()?,
        None => Vec::new(),
    };
    let cells = d.cpu.as_ref().and_then(|c| c.numa.as_ref()).map(|n| n.cells.as_slice()).unwrap_or(&[]);
    let devices = d.devices.as_ref();
    let mems: Vec<&MemoryDevice> = devices.map(|x| x.memories.iter().collect()).unwrap_or_default();
    for m in mems.iter().filter(|m| m.model != "virtio-mem") {
        notes.push(format!("<memory model='{}'>: not modelled", m.model));
    }
    let vmems: Vec<&MemoryDevice> = mems.into_iter().filter(|m| m.model == "virtio-mem").collect();
    if vmems.is_empty() {
        return Err("the domain has no <memory model='virtio-mem'> device".into());
    }
    // qemuBuildMemoryGetPagesize: the device's own, else the <page> whose nodeset holds its
    // node, else the <page> without one; the system page size means none. 0 is the default
    // huge page size (the default hugetlbfs mount's; 2 MiB here).
    let page_for = |node: Option<u32>, own: Option<u64>| -> Option<u64> {
        let p = own.or_else(|| {
            let by_node = node.and_then(|n| pages.iter().find(|(_, ns)| ns.as_ref().is_some_and(|ns| ns.contains(&n))));
            by_node.or_else(|| pages.iter().find(|(_, ns)| ns.is_none())).map(|(s, _)| *s)
        })?;
        match p {
            0 => Some(2 << 20),
            4096 => None,
            p => Some(p),
        }
    };
    let hugetlbfs = |page: u64| -> Result<String, String> {
        let m = mounts.iter().find(|m| m.fs == "hugetlbfs" && m.page_size.unwrap_or(2 << 20) == page);
        // qemuGetDomainHupageMemPath: <mount>/libvirt/qemu/<id>-<name>.
        m.map(|m| format!("{}/libvirt/qemu/{name}", m.path)).ok_or_else(|| format!("no hugetlbfs mount for {} pages: give --mount PATH:hugetlbfs (or hugetlbfs-1G), or --host", super::super::build_memory::qemu_size(vmemsim_model::Bytes(page))))
    };
    let memnode = |cell: u32| d.numatune.as_ref().and_then(|n| n.memnodes.iter().find(|m| m.cellid == cell));
    let numa_mode = |cell: Option<u32>| -> (Option<String>, Option<String>) {
        let n = cell.and_then(memnode);
        let mode = n.and_then(|m| m.mode.clone()).or_else(|| d.numatune.as_ref().and_then(|t| t.memory.as_ref()).and_then(|m| m.mode.clone())).unwrap_or_else(|| "strict".into());
        let set = n.and_then(|m| m.nodeset.clone()).or_else(|| d.numatune.as_ref().and_then(|t| t.memory.as_ref()).and_then(|m| m.nodeset.clone()));
        (Some(mode), set)
    };
    let mut args: Vec<String> = vec!["qemu-system-x86_64".into()];
    // qemuBuildMemoryBackendProps for main RAM and for each device.
    let backend = |id: &str, size: u64, page: Option<u64>, access: &str, nodes: Option<String>, mode: Option<String>, prealloc: bool, virtio_mem: bool| -> Result<String, String> {
        let mut props = Vec::new();
        let ty = if source_type == "memfd" {
            "memory-backend-memfd"
        } else if page.is_some() || access != "default" || source_type == "file" {
            "memory-backend-file"
        } else {
            "memory-backend-ram"
        };
        props.push(format!("{ty},id={id}"));
        if ty == "memory-backend-memfd" {
            if let Some(p) = page {
                props.push(format!("hugetlb=on,hugetlbsize={p}"));
            }
        }
        if ty == "memory-backend-file" {
            let path = match page {
                Some(p) => hugetlbfs(p)?,
                // qemuGetMemoryBackingPath: <memoryBackingDir>/<shortname>/<alias>.
                None => format!("/var/lib/libvirt/qemu/ram/{name}/{id}"),
            };
            props.push(format!("mem-path={path}"));
        }
        match access {
            "shared" => props.push("share=on".into()),
            "private" => props.push("share=off".into()),
            _ => {}
        }
        if virtio_mem {
            props.push("reserve=off".into());
        } else if prealloc {
            props.push("prealloc=on".into());
        }
        props.push(format!("size={size}"));
        if let (Some(set), Some(p)) = (nodes, mode.as_deref().and_then(policy)) {
            let list = nodeset(&set)?;
            props.push(list.iter().map(|n| format!("host-nodes={n}")).collect::<Vec<_>>().join(","));
            props.push(format!("policy={p}"));
        }
        Ok(props.join(","))
    };
    args.extend(["-machine".to_string(), machine.clone()]);
    // Every command line libvirt starts has these: no default VGA or NIC takes a slot.
    args.extend(["-no-user-config".to_string(), "-nodefaults".to_string()]);
    let dev_total: u64 = vmems.iter().map(|m| sc(&m.target.size, "<target><size>")).sum::<Result<u64, String>>()?;
    let initial = if cells.is_empty() {
        d.memory.as_ref().map(|m| sc(m, "<memory>")).transpose()?.map(|m| m.saturating_sub(dev_total)).ok_or("the domain XML has no <memory>")?
    } else {
        cells.iter().map(|c| scaled(&c.memory, c.unit.as_deref(), "<cell memory>")).sum::<Result<u64, String>>()?
    };
    let maxmem = d.max_memory.as_ref().map(|m| sc(m, "<maxMemory>")).transpose()?;
    args.push("-m".into());
    args.push(match maxmem {
        Some(mm) => format!("size={}k,maxmem={}k", initial >> 10, mm >> 10),
        None => format!("size={}k", initial >> 10),
    });
    let main_prealloc = |page: Option<u64>| page.is_some() || immediate;
    if cells.is_empty() {
        let page = page_for(None, None);
        let b = backend("pc.ram", initial, page, access, None, None, main_prealloc(page), false)?;
        args[2] = format!("{machine},memory-backend=pc.ram");
        args.push("-object".into());
        args.push(b);
    } else {
        for (i, c) in cells.iter().enumerate() {
            let id = c.id.unwrap_or(i as u32);
            let size = scaled(&c.memory, c.unit.as_deref(), "<cell memory>")?;
            let page = page_for(Some(id), None);
            let (mode, set) = numa_mode(Some(id));
            let acc = c.mem_access.as_deref().unwrap_or(access);
            let b = backend(&format!("ram-node{id}"), size, page, acc, set, mode, main_prealloc(page), false)?;
            args.extend(["-object".to_string(), b, "-numa".to_string(), format!("node,nodeid={id},memdev=ram-node{id}")]);
        }
    }
    // PCI controllers become buses pci.<index>.
    let q35 = machine == "q35" || machine.starts_with("pc-q35-");
    let root = if q35 { "pcie.0" } else { "pci.0" };
    let bus_name = |bus: u64| if bus == 0 { root.to_string() } else { format!("pci.{bus}") };
    if let Some(devs) = devices {
        for c in devs.controllers.iter().filter(|c| c.ty == "pci") {
            let model = c.model.as_deref().unwrap_or("");
            let driver = match model {
                "pcie-root-port" => "pcie-root-port",
                "pci-bridge" => "pci-bridge",
                "pcie-to-pci-bridge" => "pcie-pci-bridge",
                "pcie-root" | "pci-root" => continue,
                other => {
                    notes.push(format!("<controller type='pci' model='{other}'>: not modelled"));
                    continue;
                }
            };
            let index = hex(c.index.as_deref().unwrap_or("0"), "<controller index>")?;
            let addr = c.address.as_ref().ok_or_else(|| format!("<controller type='pci' index='{index}'> has no <address>: use the XML `virsh dumpxml` prints"))?;
            let bus = hex(addr.bus.as_deref().unwrap_or("0"), "<address bus>")?;
            let slot = hex(addr.slot.as_deref().unwrap_or("0"), "<address slot>")?;
            let func = hex(addr.function.as_deref().unwrap_or("0"), "<address function>")?;
            args.extend(["-device".to_string(), format!("{driver},id=pci.{index},bus={},addr={slot:#x}.{func:#x}", bus_name(bus))]);
        }
    }
    for (i, m) in vmems.iter().enumerate() {
        let alias = m.alias.as_ref().map_or_else(|| format!("virtiomem{i}"), |x| x.name.clone());
        let t = &m.target;
        let own_page = m.source.as_ref().and_then(|s| s.pagesize.as_ref()).map(|p| sc(p, "<source><pagesize>")).transpose()?;
        let page = page_for(t.node, own_page);
        let nodes = m.source.as_ref().and_then(|s| s.nodemask.clone());
        let (mode, tuned) = numa_mode(t.node);
        let acc = m.access.as_deref().or_else(|| t.node.and_then(|n| cells.iter().find(|c| c.id == Some(n))).and_then(|c| c.mem_access.as_deref())).unwrap_or(access);
        let memdev = format!("mem{alias}");
        args.push("-object".into());
        args.push(backend(&memdev, sc(&t.size, "<target><size>")?, page, acc, nodes.or(tuned), mode, false, true)?);
        let mut props = vec![format!("virtio-mem-pci,id={alias},memdev={memdev}")];
        if let Some(n) = t.node {
            props.push(format!("node={n}"));
        }
        if let Some(b) = &t.block {
            props.push(format!("block-size={}", sc(b, "<block>")?));
        }
        if let Some(r) = &t.requested {
            props.push(format!("requested-size={}", sc(r, "<requested>")?));
        }
        if page.is_some() || immediate {
            props.push("prealloc=on".into());
        }
        if let Some(base) = &t.address {
            props.push(format!("memaddr={:#x}", hex(&base.base, "<address base>")?));
        }
        let addr = m.address.as_ref().filter(|x| x.ty.as_deref().unwrap_or("pci") == "pci").ok_or_else(|| {
            format!("<memory model='virtio-mem'> {alias} has no PCI <address>: libvirt assigns it when the domain is defined; use the XML `virsh dumpxml` prints")
        })?;
        let bus = hex(addr.bus.as_deref().unwrap_or("0"), "<address bus>")?;
        let slot = hex(addr.slot.as_deref().unwrap_or("0"), "<address slot>")?;
        let func = hex(addr.function.as_deref().unwrap_or("0"), "<address function>")?;
        props.push(format!("bus={},addr={slot:#x}.{func:#x}", bus_name(bus)));
        args.push("-device".into());
        args.push(props.join(","));
    }
    // Sizes are bytes here; make sure each reads back (a typo in the XML surfaces now).
    for w in args.iter().filter(|w| w.starts_with("memory-backend")) {
        if let Some(s) = w.split(',').find_map(|p| p.strip_prefix("size=")) {
            size(s, 1)?;
        }
    }
    Ok((args, notes))
}
