//! Memory backends: what kind of memory backs a RAM block, how much of it there is, and how
//! QEMU discards it.

use serde::{Deserialize, Serialize};

use crate::units::Bytes;

/// The host page size of ordinary memory on x86-64 (`qemu_real_host_page_size()`).
pub const HOST_PAGE_SIZE: Bytes = Bytes(4096);
/// The target page size of x86 guests (`TARGET_PAGE_SIZE`): the unit of RAM records in the stream.
pub const TARGET_PAGE_SIZE: Bytes = Bytes(4096);

/// What backs a RAM block, as QEMU's memory backends and the kernel distinguish it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// `memory-backend-ram` (MAP_PRIVATE | MAP_ANONYMOUS).
    PrivateAnonymous,
    /// `memory-backend-ram,share=on` (MAP_SHARED | MAP_ANONYMOUS, no fd).
    SharedAnonymous,
    /// `memory-backend-memfd` (shmem, 4 KiB pages).
    Memfd,
    /// `memory-backend-file` on tmpfs (shmem, 4 KiB pages, mount `size=` quota).
    TmpfsFile,
    /// `memory-backend-file` on a disk file system.
    RegularFile,
    /// `memory-backend-file` on hugetlbfs (mount `size=` quota or the huge page pool).
    Hugetlbfs,
    /// `memory-backend-memfd,hugetlb=on` (the huge page pool).
    MemfdHugetlb,
}

impl BackendKind {
    pub const ALL: [BackendKind; 7] = [
        BackendKind::PrivateAnonymous,
        BackendKind::SharedAnonymous,
        BackendKind::Memfd,
        BackendKind::TmpfsFile,
        BackendKind::RegularFile,
        BackendKind::Hugetlbfs,
        BackendKind::MemfdHugetlb,
    ];

    /// True for memory QEMU maps through a file descriptor (`rb->fd != -1`).
    pub fn has_fd(self) -> bool {
        !matches!(self, BackendKind::PrivateAnonymous | BackendKind::SharedAnonymous)
    }

    pub fn is_hugetlb(self) -> bool {
        matches!(self, BackendKind::Hugetlbfs | BackendKind::MemfdHugetlb)
    }

    /// True if the mapping is MAP_SHARED (every fd-backed backend QEMU uses here, and
    /// `share=on` anonymous memory).
    pub fn is_shared(self) -> bool {
        !matches!(self, BackendKind::PrivateAnonymous)
    }

    /// Whether reading an absent page allocates one. Only private anonymous memory maps the
    /// shared zero page on a read fault (`virtio_mem_has_shared_zeropage`, hw/virtio/virtio-mem.c);
    /// shmem, files and hugetlb allocate (real-qemu.md: the SIGBUS in `buffer_is_zero_ool`).
    pub fn read_allocates(self) -> bool {
        !matches!(self, BackendKind::PrivateAnonymous)
    }

    /// The page size this kind uses when the scenario does not say: 2 MiB for hugetlb.
    pub fn default_page_size(self) -> Bytes {
        if self.is_hugetlb() {
            Bytes::mib(2)
        } else {
            HOST_PAGE_SIZE
        }
    }

    /// Whether postcopy can register this memory with userfaultfd
    /// (`postcopy_ram_supported_by_host`: anonymous, tmpfs/shmem or hugetlbfs).
    pub fn supports_postcopy(self) -> bool {
        !matches!(self, BackendKind::RegularFile)
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::PrivateAnonymous => "private-anonymous",
            BackendKind::SharedAnonymous => "shared-anonymous",
            BackendKind::Memfd => "memfd",
            BackendKind::TmpfsFile => "tmpfs-file",
            BackendKind::RegularFile => "regular-file",
            BackendKind::Hugetlbfs => "hugetlbfs",
            BackendKind::MemfdHugetlb => "memfd-hugetlb",
        }
    }
}

/// How much memory a backend can hand out: a huge page pool, a file-system quota, or no limit.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Capacity {
    #[default]
    Unlimited,
    Limited(Bytes),
}

impl Capacity {
    pub fn limit(self) -> Option<Bytes> {
        match self {
            Capacity::Unlimited => None,
            Capacity::Limited(b) => Some(b),
        }
    }
}

/// The system calls `ram_block_discard_range()` (system/physmem.c) issues for a backend.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DiscardMethod {
    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)` only (hugetlb: "madvise DONTNEED fails for hugepages").
    PunchHole,
    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)` and then `MADV_DONTNEED` (fd-backed, base pages).
    PunchHoleAndDontneed,
    /// `MADV_DONTNEED` (private anonymous memory).
    Dontneed,
    /// `MADV_REMOVE` (shared anonymous memory without an fd).
    Remove,
}

impl DiscardMethod {
    /// QEMU's choice in `ram_block_discard_range` (system/physmem.c): fallocate when there is an
    /// fd, madvise when the page size is the host's, REMOVE for shared memory without an fd.
    pub fn qemu_choice(kind: BackendKind, page_size: Bytes) -> DiscardMethod {
        let need_madvise = page_size == HOST_PAGE_SIZE;
        match (kind.has_fd(), need_madvise) {
            (true, true) => DiscardMethod::PunchHoleAndDontneed,
            (true, false) => DiscardMethod::PunchHole,
            (false, _) if kind.is_shared() => DiscardMethod::Remove,
            (false, _) => DiscardMethod::Dontneed,
        }
    }

    /// Whether the method frees the pages of this kind of memory. MADV_DONTNEED on a shared
    /// mapping only drops the page table entries: the page stays in the page cache
    /// (host-memory.md: UFFDIO_COPY still fails with EEXIST afterwards).
    pub fn frees(self, kind: BackendKind) -> bool {
        match self {
            DiscardMethod::Dontneed => !kind.is_shared(),
            DiscardMethod::PunchHole | DiscardMethod::PunchHoleAndDontneed | DiscardMethod::Remove => true,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DiscardMethod::PunchHole => "fallocate(PUNCH_HOLE|KEEP_SIZE)",
            DiscardMethod::PunchHoleAndDontneed => "fallocate(PUNCH_HOLE|KEEP_SIZE)+MADV_DONTNEED",
            DiscardMethod::Dontneed => "MADV_DONTNEED",
            DiscardMethod::Remove => "MADV_REMOVE",
        }
    }
}

/// A memory backend as one side of a migration has it: kind, page size and capacity.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    pub kind: BackendKind,
    pub page_size: Bytes,
    pub capacity: Capacity,
}

impl Backend {
    pub fn unlimited(kind: BackendKind) -> Backend {
        Backend { kind, page_size: kind.default_page_size(), capacity: Capacity::Unlimited }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_discard_choice_per_kind() {
        use BackendKind::*;
        let choice = |k: BackendKind| DiscardMethod::qemu_choice(k, k.default_page_size());
        assert_eq!(choice(PrivateAnonymous), DiscardMethod::Dontneed);
        assert_eq!(choice(SharedAnonymous), DiscardMethod::Remove);
        assert_eq!(choice(Memfd), DiscardMethod::PunchHoleAndDontneed);
        assert_eq!(choice(TmpfsFile), DiscardMethod::PunchHoleAndDontneed);
        assert_eq!(choice(Hugetlbfs), DiscardMethod::PunchHole);
        assert_eq!(choice(MemfdHugetlb), DiscardMethod::PunchHole);
        for k in BackendKind::ALL {
            assert!(choice(k).frees(k), "QEMU's own choice frees {k:?}");
        }
        assert!(!DiscardMethod::Dontneed.frees(Memfd));
        assert!(DiscardMethod::Dontneed.frees(PrivateAnonymous));
    }
}
