//! Whether a destination with memdevs of its own (the per-memdev scenario form) runs on real
//! memory here: a private mount per scenario mount with its quota, huge pages for what the
//! run can take, and a refusal that names the host's real limit otherwise.

use vmemsim_model::{BackendKind, Bytes, LimitId, LimitKind, Memdev, MountFs, Variant};

use super::isolation::MountSpec;
use super::mounts::is_root;
use super::parent::{huge_page_runs, zero_pool_refusal, Needs};
use super::pool::PoolDir;
use crate::build::Built;

/// NUMA nodes this host has (`/sys/devices/system/node/node*`), at least one.
fn host_nodes() -> u32 {
    let count = std::fs::read_dir("/sys/devices/system/node")
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_str().is_some_and(|n| n.strip_prefix("node").is_some_and(|r| r.parse::<u32>().is_ok()))).count())
        .unwrap_or(1);
    (count as u32).max(1)
}

/// The page size of the RAM block `name` on the destination.
pub fn page_of(b: &Built, name: &str) -> u64 {
    let mem = &b.destination.memory;
    let memdev = if mem.main.as_deref() == Some(name) {
        mem.memdev(name)
    } else {
        b.destination.devices.iter().find(|d| d.ram_block_name() == name).and_then(|d| mem.memdev(&d.memdev))
    };
    memdev.map_or(4096, |m| m.page_size.0)
}

/// The memdevs the destination maps, with the most each could populate in the run.
fn uses(b: &Built) -> Vec<(&Memdev, u64)> {
    let mem = &b.destination.memory;
    let mut out = Vec::new();
    for (i, d) in b.destination.devices.iter().enumerate() {
        let Some(m) = mem.memdev(&d.memdev) else { continue };
        let src = &b.source.devices[i];
        let touched: u64 = b.plan.touches.iter().filter(|t| t.device == i).map(|t| t.len.0).sum();
        let reserved = m.reserve && m.kind.is_hugetlb();
        let whole = b.destination.variant == Variant::PreallocWholeRegion || reserved;
        let grown = super::parent::plug_growth(b, i);
        let worst = if whole { d.region_size.0 } else { src.size().0.saturating_add(touched).saturating_add(grown).min(d.region_size.0) };
        out.push((m, worst));
    }
    if let Some(m) = mem.main.as_deref().and_then(|id| mem.memdev(id)) {
        out.push((m, b.destination.main_ram.0));
    }
    out
}

pub fn fits_memdevs(b: &Built, budget: u64) -> Result<Needs, String> {
    let mem = &b.destination.memory;
    let nodes = host_nodes();
    let uses = uses(b);
    for (m, _) in &uses {
        if m.kind.is_hugetlb() {
            huge_page_runs(m.page_size).map_err(|why| format!("{why} (memdev {})", m.id))?;
        }
        if let Some(n) = m.host_nodes.iter().find(|n| **n >= nodes) {
            return Err(format!("memdev {} is bound to host node {n}, and this host has {nodes} NUMA node(s)", m.id));
        }
    }
    let populate: u64 = uses.iter().map(|(_, w)| *w).fold(0, u64::saturating_add);
    let mut needs = Needs { mounts: Vec::new(), files: false, huge_pages: Vec::new() };
    let mut quota_of = vec![None; mem.limits.len()];
    let mut zero_pools: Vec<(LimitId, Bytes)> = Vec::new();
    for (i, limit) in mem.limits.iter().enumerate() {
        let id = LimitId(i);
        let users: Vec<&(&Memdev, u64)> = uses.iter().filter(|(m, _)| mem.draws(m).iter().flatten().any(|l| *l == id)).collect();
        if users.is_empty() {
            continue;
        }
        let need: u64 = users.iter().map(|(_, w)| *w).fold(0, u64::saturating_add);
        let cap = limit.capacity.limit().map(|c| c.0);
        let what = limit.kind.describe();
        match &limit.kind {
            LimitKind::Mount { fs: MountFs::Disk, .. } => needs.files = true,
            LimitKind::Mount { fs, .. } => {
                let (fstype, page) = match fs {
                    MountFs::Hugetlbfs(p) => ("hugetlbfs", Some(p.0)),
                    _ => ("tmpfs", None),
                };
                if let Some(c) = cap.filter(|c| c % page.unwrap_or(4096) != 0) {
                    return Err(format!("the quota of {what}, {}, is not whole pages", Bytes(c)));
                }
                // A quota of 0 is one page a filler takes; unlimited mounts still get the
                // budget as their quota: nothing can run away.
                let used_up = cap == Some(0);
                let quota = if used_up { page.unwrap_or(4096) } else { cap.unwrap_or(budget) };
                quota_of[i] = Some(quota);
                needs.mounts.push((Some(id), MountSpec { fstype: fstype.into(), quota: Some(quota), huge_page: page, used_up }));
            }
            // A pool of 0 is real while the host's has no free page and the run adds none.
            LimitKind::HugePages { page_size, node: None } if cap == Some(0) => match PoolDir::for_page_size(page_size.0).available() {
                0 => zero_pools.push((id, *page_size)),
                free => return Err(zero_pool_refusal(free, *page_size)),
            },
            LimitKind::HugePages { .. } if cap.is_some_and(|c| c < need) => {
                return Err(format!(
                    "{what} ({}) is less than the run can take ({}): the free huge pages of a shared host cannot be set exactly; put the limit on a hugetlbfs mount's size= instead",
                    Bytes(cap.unwrap_or(0)),
                    Bytes(need)
                ));
            }
            LimitKind::CgroupHugetlb { .. } if cap.is_some_and(|c| c < need) => {
                return Err(format!("a {what} that binds ({} for up to {}) does not run on real memory here: vmemsim sets up no cgroup", Bytes(cap.unwrap_or(0)), Bytes(need)));
            }
            LimitKind::HugePages { .. } | LimitKind::CgroupHugetlb { .. } => {}
            LimitKind::OneBackend => return Err("the older one-backend form cannot be mixed with memdevs".into()),
        }
    }
    if populate > budget {
        return Err(super::parent::over_budget(populate, budget));
    }
    // Per page size: what each hugetlb memdev can take, in its own pages.
    // Memdevs on a used-up mount take nothing; its filler takes one page, once per mount.
    let used_up = |l: LimitId| needs.mounts.iter().any(|(id, s)| *id == Some(l) && s.used_up);
    let mut pages: Vec<(Bytes, u64)> = Vec::new();
    // Memdevs drawing on a zero pool get no page from the kernel, as the model says.
    let on_zero_pool = |m: &Memdev| mem.draws(m).iter().flatten().any(|l| zero_pools.iter().any(|(z, _)| z == l));
    for (m, w) in uses.iter().filter(|(m, _)| m.kind.is_hugetlb() && !m.mount.is_some_and(used_up) && !on_zero_pool(m)) {
        // The competitor takes from the first device's memdev's mount too.
        let first = b.destination.devices.first().is_some_and(|d| d.memdev == m.id);
        let w = if first { w.saturating_add(super::parent::drained(b)) } else { *w };
        let bytes = m.mount.and_then(|l| quota_of[l.0]).map_or(w, |q| q.min(w));
        pages.push((m.page_size, bytes.div_ceil(m.page_size.0)));
    }
    for (_, s) in needs.mounts.iter().filter(|(_, s)| s.used_up) {
        if let Some(p) = s.huge_page {
            pages.push((Bytes(p), 1));
        }
    }
    for (size, n) in pages {
        if let Some((_, z)) = zero_pools.iter().find(|(_, z)| *z == size && n > 0) {
            return Err(format!("a pool of 0 free {z} pages is real only while the run adds none, and its other memory needs {n} added: give that memory a page size of its own"));
        }
        needs.add_huge_pages(size, n);
    }
    if uses.iter().any(|(m, _)| m.kind == BackendKind::RegularFile) {
        needs.files = true;
    }
    if needs.needs_root() && !is_root() {
        return Err("it needs root for a private mount or huge pages".into());
    }
    Ok(needs)
}
