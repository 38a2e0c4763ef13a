//! A side's memory from the scenario: the older one-backend form, or QEMU's memory backends
//! per memdev with the host limits they draw from (mounts, huge pages per size and node,
//! cgroup hugetlb limits).

use toml::Spanned;
use vmemsim_model::{Backend, BackendKind, Bytes, Capacity, Limit, LimitId, LimitKind, Memdev, Memory, MountFs};

use crate::error::SimError;
use crate::load::Loaded;
use crate::scenario::{BackendSpec, BackendType, CapacitySpec, MemdevSpec, MemoryView, MountFsSpec, PolicySpec};

/// The older form's backend, checked.
pub fn one_backend(l: &Loaded, spec: &Spanned<BackendSpec>, field: &str) -> Result<Backend, SimError> {
    let s = spec.get_ref();
    let b = Backend {
        kind: s.kind,
        page_size: s.page_size.unwrap_or_else(|| s.kind.default_page_size()),
        capacity: capacity(&s.capacity),
    };
    page_size_fits(l, spec.span().start, &format!("{field}.page_size"), b.kind, b.page_size)?;
    Ok(b)
}

fn capacity(c: &CapacitySpec) -> Capacity {
    match c {
        CapacitySpec::Unlimited => Capacity::Unlimited,
        CapacitySpec::Limited(b) => Capacity::Limited(*b),
    }
}

fn page_size_fits(l: &Loaded, at: usize, field: &str, kind: BackendKind, page: Bytes) -> Result<(), SimError> {
    if kind.is_hugetlb() {
        if page != Bytes::mib(2) && page != Bytes::gib(1) {
            return Err(l.invalid(at, field, format!("x86-64 huge pages are 2M or 1G, not {page}")));
        }
    } else if page != Bytes(4096) {
        return Err(l.invalid(at, field, format!("{} memory has 4K pages", kind.name())));
    }
    Ok(())
}

/// The per-memdev form of one side. `side` is `source` or `destination`, for field names.
/// `size` gives each memdev's size (its device's region, or main RAM), for the `-object`
/// text QEMU echoes.
pub fn per_memdev(l: &Loaded, v: MemoryView<'_>, side: &str, size: &dyn Fn(&str) -> Option<Bytes>) -> Result<Memory, SimError> {
    let mut limits = Vec::new();
    for m in v.mounts {
        let (at, ms) = (m.span().start, m.get_ref());
        let field = format!("{side}.mount");
        if !ms.path.starts_with('/') {
            return Err(l.invalid(at, &format!("{field}.path"), format!("'{}' is not an absolute path", ms.path)));
        }
        if v.mounts.iter().filter(|o| o.get_ref().path.trim_end_matches('/') == ms.path.trim_end_matches('/')).count() > 1 {
            return Err(l.invalid(at, &format!("{field}.path"), format!("mount '{}' is listed twice", ms.path)));
        }
        let fs = match ms.fs {
            MountFsSpec::Hugetlbfs => {
                let page = ms.page_size.unwrap_or(Bytes::mib(2));
                page_size_fits(l, at, &format!("{field}.page_size"), BackendKind::Hugetlbfs, page)?;
                MountFs::Hugetlbfs(page)
            }
            other => {
                if ms.page_size.is_some() {
                    return Err(l.invalid(at, &format!("{field}.page_size"), "only a hugetlbfs mount has a pagesize="));
                }
                if other == MountFsSpec::Disk && ms.size != CapacitySpec::Unlimited {
                    return Err(l.invalid(at, &format!("{field}.size"), "a disk file system has no size= quota the VM sees"));
                }
                if other == MountFsSpec::Tmpfs { MountFs::Tmpfs } else { MountFs::Disk }
            }
        };
        limits.push(Limit { kind: LimitKind::Mount { path: ms.path.trim_end_matches('/').to_string(), fs }, capacity: capacity(&ms.size) });
    }
    for h in v.hugepages {
        let (at, hs) = (h.span().start, h.get_ref());
        let field = format!("{side}.hugepages");
        page_size_fits(l, at, &format!("{field}.page_size"), BackendKind::Hugetlbfs, hs.page_size)?;
        let same: Vec<_> = v.hugepages.iter().map(|o| o.get_ref()).filter(|o| o.page_size == hs.page_size).collect();
        if same.iter().filter(|o| o.node == hs.node).count() > 1 {
            return Err(l.invalid(at, &field, format!("the free {} huge pages{} are given twice", hs.page_size, hs.node.map_or(String::new(), |n| format!(" of node {n}")))));
        }
        if same.iter().any(|o| o.node.is_none()) && same.iter().any(|o| o.node.is_some()) {
            return Err(l.invalid(at, &field, format!("give the free {} huge pages either system-wide or per node, not both", hs.page_size)));
        }
        limits.push(Limit { kind: LimitKind::HugePages { page_size: hs.page_size, node: hs.node }, capacity: Capacity::Limited(hs.free) });
    }
    for c in v.cgroup_hugetlb {
        let (at, cs) = (c.span().start, c.get_ref());
        let field = format!("{side}.cgroup_hugetlb");
        page_size_fits(l, at, &format!("{field}.page_size"), BackendKind::Hugetlbfs, cs.page_size)?;
        if v.cgroup_hugetlb.iter().filter(|o| o.get_ref().page_size == cs.page_size).count() > 1 {
            return Err(l.invalid(at, &field, format!("the cgroup limit of {} pages is given twice", cs.page_size)));
        }
        limits.push(Limit { kind: LimitKind::CgroupHugetlb { page_size: cs.page_size }, capacity: Capacity::Limited(cs.left) });
    }
    let mut memdevs = Vec::new();
    for m in v.memdevs {
        let (at, ms) = (m.span().start, m.get_ref());
        if memdevs.iter().any(|o: &Memdev| o.id == ms.id) {
            return Err(l.invalid(at, &format!("{side}.memdev.id"), format!("memdev id '{}' is used twice", ms.id)));
        }
        memdevs.push(memdev(l, at, ms, &limits, &format!("{side}.memdev"), size(&ms.id))?);
    }
    let main = match v.main_memdev {
        Some(id) if !memdevs.iter().any(|m| m.id == *id.get_ref()) => {
            return Err(l.invalid(id.span().start, &format!("{side}.main_memdev"), format!("no [[{side}.memdev]] has id '{}'", id.get_ref())));
        }
        Some(id) => Some(id.get_ref().clone()),
        None => None,
    };
    Ok(Memory { memdevs, limits, main })
}

/// One memdev: its kind of memory from the object type, `share`, `hugetlb` and the mount its
/// `mem-path` lies on.
fn memdev(l: &Loaded, at: usize, m: &MemdevSpec, limits: &[Limit], field: &str, size: Option<Bytes>) -> Result<Memdev, SimError> {
    let bad = |f: &str, msg: String| Err(l.invalid(at, &format!("{field}.{f}"), msg));
    let ty = m.backend.name();
    if m.backend != BackendType::File && m.mem_path.is_some() {
        return bad("mem_path", format!("{ty} has no mem-path (memory-backend-file has)"));
    }
    if m.backend != BackendType::Memfd && (m.hugetlb || m.hugetlbsize.is_some()) {
        return bad("hugetlb", format!("{ty} has no hugetlb (memory-backend-memfd has; for hugetlbfs use memory-backend-file on a hugetlbfs mount)"));
    }
    // host_memory_backend_memory_complete (backends/hostmem.c).
    if !m.host_nodes.is_empty() && matches!(m.policy, None | Some(PolicySpec::Default)) {
        return bad("host_nodes", "host-nodes must be empty for policy default, or you should explicitly specify a policy other than default".into());
    }
    if m.host_nodes.is_empty() && matches!(m.policy, Some(PolicySpec::Bind | PolicySpec::Interleave)) {
        return bad("policy", "policy bind and interleave need host_nodes".into());
    }
    let (kind, page_size, mount) = match m.backend {
        BackendType::Ram if m.share == Some(true) => (BackendKind::SharedAnonymous, Bytes(4096), None),
        BackendType::Ram => (BackendKind::PrivateAnonymous, Bytes(4096), None),
        BackendType::Memfd => {
            if m.share == Some(false) {
                return bad("share", "a memfd with share=off (a private mapping of shmem) is not modelled; QEMU's default for memfd is share=on".into());
            }
            if m.hugetlb {
                let page = m.hugetlbsize.unwrap_or(Bytes::mib(2));
                page_size_fits(l, at, &format!("{field}.hugetlbsize"), BackendKind::MemfdHugetlb, page)?;
                (BackendKind::MemfdHugetlb, page, None)
            } else if m.hugetlbsize.is_some() {
                return bad("hugetlbsize", "hugetlbsize needs hugetlb = true".into());
            } else {
                (BackendKind::Memfd, Bytes(4096), None)
            }
        }
        BackendType::File => {
            let Some(path) = &m.mem_path else { return bad("mem_path", "memory-backend-file needs mem_path".into()) };
            let Some((id, fs)) = mount_of(path, limits) else {
                return bad("mem_path", format!("'{path}' is not under any mount of this side: add the [[mount]] it lives on (fs = \"hugetlbfs\", \"tmpfs\" or \"disk\")"));
            };
            // share=off (QEMU's default for files): a private mapping; modelled on hugetlbfs,
            // where its pages come from the pool as a shared mapping's do.
            if m.share != Some(true) && !matches!(fs, MountFs::Hugetlbfs(_)) {
                return bad("share", "a memory-backend-file without share=on (a private file mapping) is modelled on hugetlbfs only; write share = true".into());
            }
            match fs {
                MountFs::Hugetlbfs(page) => (BackendKind::Hugetlbfs, page, Some(id)),
                MountFs::Tmpfs => (BackendKind::TmpfsFile, Bytes(4096), Some(id)),
                MountFs::Disk => (BackendKind::RegularFile, Bytes(4096), Some(id)),
            }
        }
    };
    let host_nodes = if m.policy == Some(PolicySpec::Bind) { m.host_nodes.clone() } else { Vec::new() };
    let object = m.object.clone().unwrap_or_else(|| object_text(m, size));
    let private = m.backend == BackendType::File && m.share != Some(true);
    Ok(Memdev { id: m.id.clone(), kind, page_size, mount, host_nodes, reserve: m.reserve.unwrap_or(true), private, prealloc: m.prealloc, object })
}

/// The `-object` option as a command line would write it, when the scenario does not give
/// the user's own text.
fn object_text(m: &MemdevSpec, size: Option<Bytes>) -> String {
    let mut parts = vec![m.backend.name().to_string(), format!("id={}", m.id)];
    if let Some(p) = &m.mem_path {
        parts.push(format!("mem-path={p}"));
    }
    if let Some(s) = size {
        parts.push(format!("size={}", qemu_size(s)));
    }
    if m.hugetlb {
        parts.push("hugetlb=on".into());
    }
    if let Some(h) = m.hugetlbsize {
        parts.push(format!("hugetlbsize={}", qemu_size(h)));
    }
    let on = |b: bool| if b { "on" } else { "off" };
    if let Some(s) = m.share {
        parts.push(format!("share={}", on(s)));
    }
    if let Some(r) = m.reserve {
        parts.push(format!("reserve={}", on(r)));
    }
    if !m.host_nodes.is_empty() {
        parts.push(format!("host-nodes={}", m.host_nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",host-nodes=")));
    }
    if let Some(p) = m.policy {
        parts.push(format!("policy={}", format!("{p:?}").to_lowercase()));
    }
    parts.join(",")
}

/// A size as one writes it on QEMU's command line: `30G`, `512M`, or bytes.
pub fn qemu_size(b: Bytes) -> String {
    const G: u64 = 1 << 30;
    const M: u64 = 1 << 20;
    if b.0 != 0 && b.0 % G == 0 {
        format!("{}G", b.0 / G)
    } else if b.0 != 0 && b.0 % M == 0 {
        format!("{}M", b.0 / M)
    } else {
        b.0.to_string()
    }
}

/// Whether `path` lies on the mount at `mount`: the mount point is a whole-component prefix
/// (`/` and the empty root hold every absolute path).
pub fn lies_under(path: &str, mount: &str) -> bool {
    let mp = mount.trim_end_matches('/');
    mp.is_empty() || path == mp || path.strip_prefix(mp).is_some_and(|rest| rest.starts_with('/'))
}

/// The mount a path lies on: the longest mount path that is a whole-component prefix.
fn mount_of(path: &str, limits: &[Limit]) -> Option<(LimitId, MountFs)> {
    limits
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match &l.kind {
            LimitKind::Mount { path: mp, fs } => lies_under(path, mp).then_some((LimitId(i), *fs, mp.len())),
            _ => None,
        })
        .max_by_key(|(_, _, len)| *len)
        .map(|(id, fs, _)| (id, fs))
}
