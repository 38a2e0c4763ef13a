//! `vmemsim import qemu`: a source's QEMU command line (and the destination's, or flags that
//! describe it) written as a commented scenario in the per-memdev form.

use std::fmt::Write as _;

use vmemsim_model::{QemuProfile, QemuVersion};

use super::cmdline::{read, Backend, Side, VirtioMem};
use crate::build_memory::qemu_size;

/// A mount as the importer knows it: from `--mount`, or read on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountFact {
    pub path: String,
    /// `hugetlbfs`, `tmpfs` or `disk`.
    pub fs: String,
    pub page_size: Option<u64>,
    /// What its `size=` quota has left (statvfs), if it has one.
    pub free: Option<u64>,
}

/// Free huge pages of one size, system-wide or on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugeFact {
    pub page_size: u64,
    pub node: Option<u32>,
    pub free: u64,
}

/// What the import reads besides the command lines.
#[derive(Clone, Debug, Default)]
pub struct Import {
    pub source: Vec<String>,
    pub destination: Option<Vec<String>>,
    pub source_qemu: Option<QemuVersion>,
    pub destination_qemu: Option<QemuVersion>,
    /// Mounts of the source host (file systems of the memdevs' mem-paths).
    pub source_mounts: Vec<MountFact>,
    /// Mounts of the destination host, with what their quotas have left.
    pub destination_mounts: Vec<MountFact>,
    pub destination_hugepages: Vec<HugeFact>,
    /// Where each fact came from, for the file's header.
    pub said: Vec<String>,
    /// `migrate-start-postcopy` time for a postcopy migration ("at-once", "1s", "40%").
    pub postcopy: Option<String>,
}

/// User text inside a `#` comment: TOML comments take no control characters, so those are
/// written escaped (`\u{1b}`), as a reader would want to see them anyway.
fn c(s: &str) -> String {
    s.chars().map(|ch| if ch.is_control() && ch != '\t' { ch.escape_default().to_string() } else { ch.to_string() }).collect()
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn qs(b: u64) -> String {
    q(&qemu_size(vmemsim_model::Bytes(b)))
}

/// The mount a path lies on: the longest mount point that is a whole-component prefix.
fn mount_for<'a>(path: &str, mounts: &'a [MountFact]) -> Option<&'a MountFact> {
    mounts.iter().filter(|m| crate::build_memory::lies_under(path, &m.path)).max_by_key(|m| m.path.len())
}

/// The scenario text.
pub fn import_qemu(i: &Import) -> Result<String, String> {
    let src_qemu = QemuProfile::of(i.source_qemu.unwrap_or_default());
    let src = read(&i.source, &src_qemu).map_err(|e| format!("source command line: {e}"))?;
    let dst_qemu = QemuProfile::of(i.destination_qemu.or(i.source_qemu).unwrap_or_default());
    let dst = match &i.destination {
        Some(args) => Some(read(args, &dst_qemu).map_err(|e| format!("destination command line: {e}"))?),
        None => None,
    };
    if src.devices.is_empty() {
        return Err("the source command line has no -device virtio-mem-pci".into());
    }
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# Imported by `vmemsim import` from the source's QEMU command line:");
    let _ = writeln!(w, "#   {}", c(&i.source.join(" ")));
    if let Some(d) = &i.destination {
        let _ = writeln!(w, "# and the destination's:");
        let _ = writeln!(w, "#   {}", c(&d.join(" ")));
    }
    for s in &i.said {
        let _ = writeln!(w, "# {}", c(s));
    }
    let mut notes: Vec<String> = src.notes.iter().map(|n| format!("source: {n}")).collect();
    if let Some(d) = &dst {
        notes.extend(d.notes.iter().map(|n| format!("destination: {n}")));
    }
    if !notes.is_empty() {
        let _ = writeln!(w, "# Kept, not used by the model:");
        for n in &notes {
            let _ = writeln!(w, "#   {}", c(n));
        }
    }
    let _ = writeln!(w, "# The guest is taken to have plugged each device's requested-size when migration starts.");
    let _ = writeln!(w);
    let _ = writeln!(w, "name = {}", q(&format!("imported: {} with {} virtio-mem device(s)", src.machine, src.devices.len())));
    let _ = writeln!(w);
    side_section(w, "source", &src, i.source_qemu, &i.source_mounts, &[], None)?;
    match &dst {
        Some(d) => side_section(w, "destination", d, i.destination_qemu, &dest_mounts(i, d), &i.destination_hugepages, Some(&src))?,
        None => {
            let _ = writeln!(w, "[destination]                          # the source's command line, on the destination's host");
            if let Some(v) = i.destination_qemu {
                let _ = writeln!(w, "qemu = {}", q(&v.to_string()));
            }
            limits(w, "destination", &src, &dest_mounts(i, &src), &i.destination_hugepages)?;
        }
    }
    for d in &src.devices {
        device(w, &src, d, dst.as_ref())?;
    }
    if let Some(p) = &i.postcopy {
        let _ = writeln!(w, "\n[migration]\nmode = \"postcopy\"\nstart_postcopy = {}", q(p));
    }
    Ok(out)
}

/// The destination's mounts: `--dest-mount` or `--host` facts, else the source's file systems
/// without a quota.
fn dest_mounts(i: &Import, side: &Side) -> Vec<MountFact> {
    let mut m = i.destination_mounts.clone();
    for b in &side.backends {
        if let Some(p) = &b.mem_path {
            if mount_for(p, &m).is_none() {
                if let Some(s) = mount_for(p, &i.source_mounts) {
                    m.push(MountFact { free: None, ..s.clone() });
                }
            }
        }
    }
    m
}

fn side_section(w: &mut String, name: &str, s: &Side, qemu: Option<QemuVersion>, mounts: &[MountFact], huge: &[HugeFact], source: Option<&Side>) -> Result<(), String> {
    let _ = writeln!(w, "[{name}]");
    if let Some(v) = qemu {
        let _ = writeln!(w, "qemu = {}", q(&v.to_string()));
    }
    let differs = |f: &dyn Fn(&Side) -> String| source.is_none_or(|src| f(src) != f(s));
    if differs(&|x| x.machine.clone()) {
        let _ = writeln!(w, "machine = {}", q(&s.machine));
    }
    if differs(&|x| x.ram.to_string()) {
        let _ = writeln!(w, "main_ram = {}                     # -m", qs(s.ram));
    }
    if s.numa_nodes > 0 && differs(&|x| x.numa_nodes.to_string()) {
        let _ = writeln!(w, "numa_nodes = {}", s.numa_nodes);
    }
    if let Some(m) = &s.main_memdev {
        let _ = writeln!(w, "main_memdev = {}                # main RAM's backend (-machine memory-backend, or one -numa node's memdev)", q(m));
    }
    if let Some(mm) = s.maxmem {
        let regions: u64 = s.backends.iter().filter(|b| s.devices.iter().any(|d| d.memdev == b.id)).filter_map(|b| b.size).sum();
        if mm.saturating_sub(s.ram) < regions {
            return Err(format!("{name}: maxmem {} leaves {} for memory devices, less than their {}: QEMU refuses this (\"not enough space ... for memory devices\")", qemu_size(vmemsim_model::Bytes(mm)), qemu_size(vmemsim_model::Bytes(mm.saturating_sub(s.ram))), qemu_size(vmemsim_model::Bytes(regions))));
        }
    } else {
        return Err(format!("{name}: -m has no maxmem: QEMU refuses memory devices (\"the configuration is not prepared for memory devices (e.g., for memory hotplug), consider specifying the maxmem option\")"));
    }
    limits(w, name, s, mounts, huge)?;
    // The source always lists its memdevs; the destination only when its command line is given.
    for b in &s.backends {
        memdev(w, name, b)?;
    }
    let _ = writeln!(w);
    Ok(())
}

fn limits(w: &mut String, name: &str, s: &Side, mounts: &[MountFact], huge: &[HugeFact]) -> Result<(), String> {
    let mut used: Vec<&MountFact> = Vec::new();
    for b in &s.backends {
        if b.ty != "memory-backend-file" {
            continue;
        }
        let path = b.mem_path.as_deref().ok_or_else(|| format!("-object {}: memory-backend-file needs mem-path", b.text))?;
        let m = mount_for(path, mounts).ok_or_else(|| format!("{name}: mem-path {path} of {} is on no known mount: give --mount PATH:FS[:FREE] (FS hugetlbfs, tmpfs or disk)", b.id))?;
        if !used.contains(&m) {
            used.push(m);
        }
    }
    for m in used {
        let _ = writeln!(w, "\n[[{name}.mount]]\npath = {}\nfs = {}", q(&m.path), q(&m.fs));
        if let Some(p) = m.page_size.filter(|_| m.fs == "hugetlbfs") {
            let _ = writeln!(w, "page_size = {}", qs(p));
        }
        match m.free {
            Some(f) => {
                let _ = writeln!(w, "size = {}                          # what its size= quota has left", qs(f));
            }
            None if name == "destination" && m.fs != "disk" => {
                let _ = writeln!(w, "# size: not known (give --dest-mount {}:{}:FREE, or import with --host on the destination)", c(&m.path), m.fs);
            }
            None => {}
        }
    }
    let huge_sizes: Vec<u64> = s.backends.iter().filter_map(|b| hugetlb_page(b, mounts)).collect();
    for h in huge.iter().filter(|h| huge_sizes.contains(&h.page_size)) {
        let _ = writeln!(w, "\n[[{name}.hugepages]]\npage_size = {}", qs(h.page_size));
        if let Some(n) = h.node {
            let _ = writeln!(w, "node = {n}");
        }
        let _ = writeln!(w, "free = {}", qs(h.free));
    }
    Ok(())
}

/// The huge page size a backend maps, if it maps huge pages.
fn hugetlb_page(b: &Backend, mounts: &[MountFact]) -> Option<u64> {
    match b.ty.as_str() {
        "memory-backend-memfd" if b.hugetlb => Some(b.hugetlbsize.unwrap_or(2 << 20)),
        "memory-backend-file" => mount_for(b.mem_path.as_deref()?, mounts).filter(|m| m.fs == "hugetlbfs").map(|m| m.page_size.unwrap_or(2 << 20)),
        _ => None,
    }
}

fn memdev(w: &mut String, name: &str, b: &Backend) -> Result<(), String> {
    let _ = writeln!(w, "\n[[{name}.memdev]]\nid = {}\ntype = {}", q(&b.id), q(&b.ty));
    if let Some(p) = &b.mem_path {
        let _ = writeln!(w, "mem_path = {}", q(p));
    }
    let on = |x: bool| if x { "true" } else { "false" };
    if let Some(s) = b.share {
        let _ = writeln!(w, "share = {}", on(s));
    }
    if let Some(r) = b.reserve {
        let _ = writeln!(w, "reserve = {}", on(r));
    }
    if b.prealloc {
        let _ = writeln!(w, "prealloc = true");
    }
    if b.hugetlb {
        let _ = writeln!(w, "hugetlb = true");
    }
    if let Some(h) = b.hugetlbsize {
        let _ = writeln!(w, "hugetlbsize = {}", qs(h));
    }
    if !b.host_nodes.is_empty() {
        let _ = writeln!(w, "host_nodes = [{}]", b.host_nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "));
    }
    if let Some(p) = &b.policy {
        let _ = writeln!(w, "policy = {}", q(p));
    }
    let _ = writeln!(w, "object = {}", q(&b.text));
    Ok(())
}

fn device(w: &mut String, s: &Side, d: &VirtioMem, dst: Option<&Side>) -> Result<(), String> {
    let b = s.backends.iter().find(|b| b.id == d.memdev).ok_or_else(|| format!("-device {}: no -object memory backend has id '{}'", d.text, d.memdev))?;
    let region = b.size.ok_or_else(|| format!("-object {}: a memory backend needs a size", b.text))?;
    let _ = writeln!(w, "\n# -device {}", c(&d.text));
    let _ = writeln!(w, "[[device]]\nid = {}", q(&d.id));
    let how = if d.pci_assigned { "                   # the slot QEMU assigns it" } else { "" };
    let _ = writeln!(w, "pci = {}{how}", q(&d.pci));
    let _ = writeln!(w, "memdev = {}", q(&d.memdev));
    if let Some(a) = d.memaddr {
        let _ = writeln!(w, "memaddr = {}", q(&format!("{a:#x}")));
    }
    let _ = writeln!(w, "region = {}", qs(region));
    if let Some(bs) = d.block_size {
        let _ = writeln!(w, "block_size = {}", qs(bs));
    }
    let _ = writeln!(w, "requested = {}", qs(d.requested));
    let _ = writeln!(w, "prealloc = {}", d.prealloc);
    if d.node != 0 {
        let _ = writeln!(w, "node = {}", d.node);
    }
    if let Some(e) = d.early_migration {
        let _ = writeln!(w, "early_migration = {e}");
    }
    let Some(dst) = dst else { return Ok(()) };
    let Some(o) = dst.devices.iter().find(|x| x.id == d.id) else {
        return Err(format!("the destination's command line has no virtio-mem device with id '{}'", d.id));
    };
    let mut over = Vec::new();
    let db = dst.backends.iter().find(|x| x.id == o.memdev);
    let dregion = db.and_then(|x| x.size).ok_or_else(|| format!("destination: -device {}: its memdev '{}' has no -object with a size", o.text, o.memdev))?;
    if o.pci != d.pci {
        // Not modelled: the destination would find no device for the source's sections.
        return Err(format!("the destination puts {} at {} and the source at {}: QEMU then has no device for the source's sections (\"Unknown savevm section\"); the model runs both at one address", d.id, o.pci, d.pci));
    }
    if o.memdev != d.memdev {
        over.push(format!("memdev = {}", q(&o.memdev)));
    }
    if o.memaddr != d.memaddr {
        if let Some(a) = o.memaddr {
            over.push(format!("memaddr = {}", q(&format!("{a:#x}"))));
        }
    }
    if dregion != region {
        over.push(format!("region = {}", qs(dregion)));
    }
    if o.block_size != d.block_size {
        if let Some(bs) = o.block_size {
            over.push(format!("block_size = {}", qs(bs)));
        }
    }
    if o.requested != d.requested {
        over.push(format!("requested = {}", qs(o.requested)));
    }
    if o.prealloc != d.prealloc {
        over.push(format!("prealloc = {}", o.prealloc));
    }
    if o.node != d.node {
        over.push(format!("node = {}", o.node));
    }
    if o.early_migration != d.early_migration {
        if let Some(e) = o.early_migration {
            over.push(format!("early_migration = {e}"));
        }
    }
    if !over.is_empty() {
        let _ = writeln!(w, "[device.destination]\n{}", over.join("\n"));
    }
    Ok(())
}
