//! This host's facts for an import or a preflight: which file system each mount point is
//! (`/proc/self/mounts`), what a mount's `size=` quota has left (statvfs), and the free huge
//! pages per size and NUMA node (sysfs).

use super::qemu::{HugeFact, MountFact};

/// The hugetlbfs, tmpfs and other mounts of this host; `with_free` reads each quota's free
/// space (`f_bavail * f_bsize`) where the mount has a quota.
pub fn mounts(with_free: bool) -> Result<Vec<MountFact>, String> {
    let text = std::fs::read_to_string("/proc/self/mounts").map_err(|e| format!("/proc/self/mounts: {e}"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [_, path, fstype, opts, ..] = f.as_slice() else { continue };
        // /proc/mounts escapes spaces and other bytes as \ooo.
        let path = crate::real::cleanup::unescape(path);
        let (fs, page_size) = match *fstype {
            "hugetlbfs" => {
                let page = opts.split(',').find_map(|o| o.strip_prefix("pagesize=")).and_then(|p| crate::import::qemu_args::size(p, 1).ok()).unwrap_or(2 << 20);
                ("hugetlbfs", Some(page))
            }
            "tmpfs" => ("tmpfs", None),
            "proc" | "sysfs" | "cgroup" | "cgroup2" | "devpts" | "mqueue" | "debugfs" | "tracefs" | "securityfs" | "pstore" | "bpf" | "autofs" | "configfs" | "fusectl" | "binfmt_misc" | "devtmpfs" | "nsfs" => continue,
            _ => ("disk", None),
        };
        let has_quota = opts.split(',').any(|o| o.starts_with("size=") || o.starts_with("nr_inodes=")) || fs == "tmpfs";
        let free = if with_free && fs != "disk" && has_quota { statvfs_free(&path) } else { None };
        out.push(MountFact { path, fs: fs.to_string(), page_size, free });
    }
    Ok(out)
}

fn statvfs_free(path: &str) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    // A hugetlbfs without size= reports no blocks: no quota.
    if st.f_blocks == 0 {
        return None;
    }
    st.f_bavail.checked_mul(st.f_bsize)
}

/// Free huge pages per size, system-wide (`/sys/kernel/mm/hugepages`) and, with `per_node`,
/// per NUMA node (`/sys/devices/system/node/nodeN/hugepages`).
pub fn hugepages(per_node: bool) -> Vec<HugeFact> {
    let mut out = Vec::new();
    let read_dir = |dir: &std::path::Path, node: Option<u32>, out: &mut Vec<HugeFact>| {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut found: Vec<HugeFact> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let kb: u64 = name.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
                let free: u64 = std::fs::read_to_string(e.path().join("free_hugepages")).ok()?.trim().parse().ok()?;
                Some(HugeFact { page_size: kb << 10, node, free: free.saturating_mul(kb << 10) })
            })
            .collect();
        found.sort_by_key(|h| h.page_size);
        out.extend(found);
    };
    if per_node {
        let mut nodes: Vec<u32> = std::fs::read_dir("/sys/devices/system/node")
            .map(|d| d.filter_map(Result::ok).filter_map(|e| e.file_name().to_str()?.strip_prefix("node")?.parse().ok()).collect())
            .unwrap_or_default();
        nodes.sort_unstable();
        for n in nodes {
            read_dir(&std::path::Path::new("/sys/devices/system/node").join(format!("node{n}/hugepages")), Some(n), &mut out);
        }
    } else {
        read_dir(std::path::Path::new("/sys/kernel/mm/hugepages"), None, &mut out);
    }
    out
}

/// Replaces the limits of a destination's memory with what this host has now: each mount's
/// quota (statvfs), each huge page count (sysfs), and a system-wide count for a huge page size
/// its memdevs map that has none. Returns what it read, one line each.
pub fn refresh(memory: &mut vmemsim_model::Memory) -> Vec<String> {
    use vmemsim_model::{Bytes, Capacity, Limit, LimitKind, MountFs};
    let mut said = Vec::new();
    let free_pages = |page: u64, node: Option<u32>| -> Option<u64> {
        let kb = page >> 10;
        let dir = match node {
            Some(n) => format!("/sys/devices/system/node/node{n}/hugepages/hugepages-{kb}kB"),
            None => format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB"),
        };
        let n: u64 = std::fs::read_to_string(format!("{dir}/free_hugepages")).ok()?.trim().parse().ok()?;
        n.checked_mul(page)
    };
    for l in &mut memory.limits {
        match &l.kind {
            LimitKind::Mount { path, fs: MountFs::Hugetlbfs(_) | MountFs::Tmpfs } => match statvfs_free(path) {
                Some(f) => {
                    l.capacity = Capacity::Limited(Bytes(f));
                    said.push(format!("{path}: {} left of its size= quota (statvfs)", Bytes(f)));
                }
                None => {
                    l.capacity = Capacity::Unlimited;
                    said.push(format!("{path}: no size= quota here (not mounted, or mounted without one)"));
                }
            },
            LimitKind::HugePages { page_size, node } => match free_pages(page_size.0, *node) {
                Some(f) => {
                    l.capacity = Capacity::Limited(Bytes(f));
                    said.push(format!("{}: {} free (sysfs)", l.kind.describe(), Bytes(f)));
                }
                None => said.push(format!("{}: this host has no such pool; kept as written", l.kind.describe())),
            },
            _ => {}
        }
    }
    let mut sizes: Vec<Bytes> = memory.memdevs.iter().filter(|m| m.kind.is_hugetlb()).map(|m| m.page_size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for page in sizes {
        let has = memory.limits.iter().any(|l| matches!(l.kind, LimitKind::HugePages { page_size, .. } if page_size == page));
        if !has {
            let f = free_pages(page.0, None).unwrap_or(0);
            said.push(format!("free {page} huge pages: {} (sysfs /sys/kernel/mm/hugepages)", Bytes(f)));
            memory.limits.push(Limit { kind: LimitKind::HugePages { page_size: page, node: None }, capacity: Capacity::Limited(Bytes(f)) });
        }
    }
    said
}
