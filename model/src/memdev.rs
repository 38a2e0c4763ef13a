//! Memory backends per memdev (`-object memory-backend-*,id=...`) and the host limits they
//! draw from: a mount's `size=` quota, the free huge pages of one size (per NUMA node), a
//! cgroup's hugetlb limit, or the one capacity of the older one-backend scenario form.

use crate::backend::{Backend, BackendKind, Capacity};
use crate::units::Bytes;

/// A limit of one side's host, by its place in [`Memory::limits`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LimitId(pub usize);

/// The file system of a mount.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum MountFs {
    /// hugetlbfs, with its `pagesize=`.
    Hugetlbfs(Bytes),
    Tmpfs,
    /// A disk file system (ext4, xfs, ...): no quota a VMM sees.
    Disk,
}

/// What a limit is on the host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// A mount; its capacity is the `size=` quota (statvfs free blocks).
    Mount { path: String, fs: MountFs },
    /// The free huge pages of one size, system-wide (`node: None`) or on one NUMA node
    /// (`/sys/devices/system/node/nodeN/hugepages/hugepages-<size>kB/free_hugepages`).
    HugePages { page_size: Bytes, node: Option<u32> },
    /// A cgroup's `hugetlb.<size>.max` less its `hugetlb.<size>.current`.
    CgroupHugetlb { page_size: Bytes },
    /// The older scenario form's one capacity, which every virtio-mem memdev shares.
    OneBackend,
}

impl LimitKind {
    /// How a trace line or an error names the limit.
    pub fn describe(&self) -> String {
        match self {
            LimitKind::Mount { path, fs } => match fs {
                MountFs::Hugetlbfs(p) => format!("hugetlbfs mount {path} (pagesize={p})"),
                MountFs::Tmpfs => format!("tmpfs mount {path}"),
                MountFs::Disk => format!("disk mount {path}"),
            },
            LimitKind::HugePages { page_size, node: None } => format!("free {page_size} huge pages"),
            LimitKind::HugePages { page_size, node: Some(n) } => format!("free {page_size} huge pages on node {n}"),
            LimitKind::CgroupHugetlb { page_size } => format!("cgroup hugetlb limit for {page_size} pages"),
            LimitKind::OneBackend => "the backend's capacity".into(),
        }
    }
}

/// One limit and how much it has left for the VM.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    pub kind: LimitKind,
    pub capacity: Capacity,
}

/// One `-object memory-backend-*`: what kind of memory it maps, and where it lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Memdev {
    /// Its `id=`.
    pub id: String,
    pub kind: BackendKind,
    pub page_size: Bytes,
    /// The mount a `memory-backend-file` lives on.
    pub mount: Option<LimitId>,
    /// `host-nodes=` with `policy=bind` (empty: the kernel's default, any node).
    pub host_nodes: Vec<u32>,
    /// `reserve` (QEMU's default on): without `reserve=off` QEMU maps without MAP_NORESERVE,
    /// and a hugetlb mapping reserves all its pages at mmap.
    pub reserve: bool,
    /// `share=off` on a file: a MAP_PRIVATE mapping of the file (hugetlbfs only here).
    pub private: bool,
    /// The backend's own `prealloc=on`: populated when the backend is created (virtio-mem
    /// refuses such a memdev; main RAM takes it).
    pub prealloc: bool,
    /// The `-object` option as QEMU echoes it in errors.
    pub object: String,
}

impl Memdev {
    /// The kind and page size as the RAM block layer sees them.
    pub fn backend(&self) -> Backend {
        Backend { kind: self.kind, page_size: self.page_size, capacity: Capacity::Unlimited }
    }
}

/// The memory of one side: its memdevs, its host's limits, and which memdev holds main RAM.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Memory {
    /// In `-object` order.
    pub memdevs: Vec<Memdev>,
    pub limits: Vec<Limit>,
    /// `-machine memory-backend=<id>`: main RAM on a memdev (default: private anonymous
    /// memory without a limit, QEMU's `memory_region_init_ram` for `-m`).
    pub main: Option<String>,
}

/// Where one RAM block's pages come from: its kind and page size, the mount its file lives
/// on, and the limits each page is charged to. Each entry of `draws` is a set of
/// alternatives: a page takes from the first alternative with room (the kernel's node
/// fallback), and every entry must have room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMemory {
    pub backend: Backend,
    pub mount: Option<LimitId>,
    pub draws: Vec<Vec<LimitId>>,
    /// A hugetlb mapping without MAP_NORESERVE: all its pages are reserved at mmap.
    pub reserve: bool,
    /// A MAP_PRIVATE mapping of a file (`share=off`).
    pub private: bool,
}

impl BlockMemory {
    /// Ordinary guest RAM (`-m`): private anonymous memory that nothing limits here.
    pub fn main_ram() -> BlockMemory {
        BlockMemory { backend: Backend::unlimited(BackendKind::PrivateAnonymous), mount: None, draws: Vec::new(), reserve: false, private: false }
    }
}

impl Memory {
    /// The older form: every device's memdev (`ids`) on one backend sharing its capacity.
    pub fn one_backend(backend: Backend, ids: impl IntoIterator<Item = String>) -> Memory {
        let memdevs = ids
            .into_iter()
            .map(|id| Memdev {
                object: format!("{},id={id}", backend.kind.name()),
                id,
                kind: backend.kind,
                page_size: backend.page_size,
                mount: None,
                host_nodes: Vec::new(),
                // The older form is what the conformance suite runs: reserve=off.
                reserve: false,
                private: false,
                prealloc: false,
            })
            .collect();
        Memory { memdevs, limits: vec![Limit { kind: LimitKind::OneBackend, capacity: backend.capacity }], main: None }
    }

    pub fn memdev(&self, id: &str) -> Option<&Memdev> {
        self.memdevs.iter().find(|m| m.id == id)
    }

    /// The one backend of the older form, when this memory can be written that way: every
    /// memdev of one kind and page size sharing one limit, main RAM on no memdev.
    pub fn single_backend(&self) -> Option<Backend> {
        let first = self.memdevs.first()?;
        let same = self.memdevs.iter().all(|m| m.kind == first.kind && m.page_size == first.page_size);
        match self.limits.as_slice() {
            [Limit { kind: LimitKind::OneBackend, capacity }] if same && self.main.is_none() => {
                Some(Backend { kind: first.kind, page_size: first.page_size, capacity: *capacity })
            }
            _ => None,
        }
    }

    /// The limits a memdev's pages are charged to (see [`BlockMemory::draws`]).
    pub fn draws(&self, m: &Memdev) -> Vec<Vec<LimitId>> {
        let mut draws = Vec::new();
        let mut huge = Vec::new();
        for (i, l) in self.limits.iter().enumerate() {
            let id = LimitId(i);
            match &l.kind {
                LimitKind::OneBackend if self.main.as_deref() != Some(m.id.as_str()) => draws.push(vec![id]),
                LimitKind::OneBackend => {}
                LimitKind::Mount { .. } if m.mount == Some(id) => draws.push(vec![id]),
                LimitKind::Mount { .. } => {}
                LimitKind::HugePages { page_size, node } if m.kind.is_hugetlb() && *page_size == m.page_size => {
                    // A bound memdev takes only from its nodes; a system-wide count covers all.
                    if node.is_none_or(|n| m.host_nodes.is_empty() || m.host_nodes.contains(&n)) {
                        huge.push(id);
                    }
                }
                LimitKind::HugePages { .. } => {}
                LimitKind::CgroupHugetlb { page_size } if m.kind.is_hugetlb() && *page_size == m.page_size => draws.push(vec![id]),
                LimitKind::CgroupHugetlb { .. } => {}
            }
        }
        if !huge.is_empty() {
            draws.push(huge);
        }
        draws
    }

    /// The RAM block memory of a memdev.
    pub fn block_memory(&self, m: &Memdev) -> BlockMemory {
        // hostmem: `ram_flags |= backend->reserve ? 0 : RAM_NORESERVE`; only hugetlb reserves
        // pages at mmap (shmem and anonymous memory only account them).
        BlockMemory { backend: m.backend(), mount: m.mount, draws: self.draws(m), reserve: m.reserve && m.kind.is_hugetlb(), private: m.private }
    }

    /// Where a competitor takes memory from when a scenario does not say: the first limit
    /// the first device memdev draws from.
    pub fn first_limit_of(&self, memdev: &str) -> Option<LimitId> {
        let m = self.memdev(memdev)?;
        self.draws(m).first().and_then(|d| d.first().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hugetlb(id: &str, nodes: Vec<u32>, mount: Option<usize>) -> Memdev {
        Memdev { id: id.into(), kind: BackendKind::Hugetlbfs, page_size: Bytes::mib(2), mount: mount.map(LimitId), host_nodes: nodes, reserve: false, private: false, prealloc: false, object: String::new() }
    }

    #[test]
    fn a_memdev_draws_from_its_mount_its_nodes_pools_and_its_cgroup() {
        let lim = |kind| Limit { kind, capacity: Capacity::Limited(Bytes::gib(1)) };
        let mem = Memory {
            memdevs: vec![hugetlb("mem0", vec![1], Some(0)), hugetlb("mem1", vec![], Some(1))],
            limits: vec![
                lim(LimitKind::Mount { path: "/a".into(), fs: MountFs::Hugetlbfs(Bytes::mib(2)) }),
                lim(LimitKind::Mount { path: "/b".into(), fs: MountFs::Hugetlbfs(Bytes::mib(2)) }),
                lim(LimitKind::HugePages { page_size: Bytes::mib(2), node: Some(0) }),
                lim(LimitKind::HugePages { page_size: Bytes::mib(2), node: Some(1) }),
                lim(LimitKind::HugePages { page_size: Bytes::gib(1), node: None }),
                lim(LimitKind::CgroupHugetlb { page_size: Bytes::mib(2) }),
            ],
            main: None,
        };
        let ids = |v: &[usize]| v.iter().map(|i| LimitId(*i)).collect::<Vec<_>>();
        assert_eq!(mem.draws(&mem.memdevs[0]), vec![ids(&[0]), ids(&[5]), ids(&[3])]);
        assert_eq!(mem.draws(&mem.memdevs[1]), vec![ids(&[1]), ids(&[5]), ids(&[2, 3])]);
        assert_eq!(mem.single_backend(), None);
    }

    #[test]
    fn the_older_form_is_one_shared_limit() {
        let b = Backend { kind: BackendKind::Hugetlbfs, page_size: Bytes::mib(2), capacity: Capacity::Limited(Bytes::mib(768)) };
        let mem = Memory::one_backend(b, ["mem0".to_string(), "mem1".to_string()]);
        assert_eq!(mem.single_backend(), Some(b));
        assert_eq!(mem.draws(&mem.memdevs[1]), vec![vec![LimitId(0)]]);
        assert_eq!(mem.first_limit_of("mem0"), Some(LimitId(0)));
    }
}
