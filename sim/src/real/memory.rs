//! [`HostMemory`] over real mappings: populate with MADV_POPULATE_WRITE, discard as QEMU's
//! `ram_block_discard_range`, load pages as `ram_load_precopy`, place pages with userfaultfd.

use std::path::PathBuf;

use rustix::fs::FallocateFlags;
use rustix::io::Errno as SysErrno;
use rustix::mm::Advice;
use vmemsim_model::backend::{BackendKind, DiscardMethod, HOST_PAGE_SIZE};
use vmemsim_model::host::{Errno, HostError, HostMemory, HostSetup, PageKind, RamBlockId, Sigbus};
use vmemsim_model::{BlockMemory, Bytes, LimitId};

use super::mapping::{Backing, Mapping};
use super::prealloc::{preallocate, Strategy};
use super::uffd::Userfault;

const PAGE: usize = 4096;

/// Where file-backed blocks live.
#[derive(Clone, Debug, Default)]
pub struct Places {
    /// Private tmpfs or hugetlbfs mounts with their `size=` quotas: the scenario's mount
    /// (`Some(limit)`), or the older form's one backend (`None`), which also holds its limited
    /// memfd kinds.
    pub mounts: Vec<(Option<LimitId>, PathBuf)>,
    /// A directory on a disk file system, for regular files (made there without a name).
    pub files: Option<PathBuf>,
}

struct Block {
    map: Mapping,
    /// The virtio-mem block size of a device's memdev (per-block preallocation), else the page.
    block_size: usize,
    discard: DiscardMethod,
    registered: bool,
}

/// Real guest memory of one process.
pub struct RealMemory {
    places: Places,
    strategy: Strategy,
    /// Block sizes of the devices' memdevs, by RAM block name.
    block_sizes: Vec<(String, u64)>,
    blocks: Vec<Block>,
    discard_override: Option<DiscardMethod>,
    uffd: Option<Userfault>,
    /// A zero-filled source page per page size for UFFDIO_COPY.
    zero_src: Vec<u8>,
}

fn errno(e: SysErrno) -> Errno {
    match e {
        SysErrno::FAULT => Errno::Fault,
        SysErrno::NOMEM | SysErrno::NOSPC => Errno::NoMem,
        SysErrno::EXIST => Errno::Exist,
        SysErrno::BUSY => Errno::Busy,
        _ => Errno::Inval,
    }
}

impl RealMemory {
    pub fn new(places: Places, discard_override: Option<DiscardMethod>) -> RealMemory {
        RealMemory { places, strategy: Strategy::Qemu, block_sizes: Vec::new(), blocks: Vec::new(), discard_override, uffd: None, zero_src: Vec::new() }
    }

    /// Preallocates with `strategy`; `block_sizes` names each memdev's virtio-mem block size.
    pub fn with_strategy(mut self, strategy: Strategy, block_sizes: Vec<(String, u64)>) -> RealMemory {
        self.strategy = strategy;
        self.block_sizes = block_sizes;
        self
    }

    /// (name-independent) base address and length of each block, for mapping a SIGBUS address
    /// back to a block and offset.
    pub fn layout(&self) -> Vec<(usize, usize)> {
        self.blocks.iter().map(|b| (b.map.base(), b.map.len())).collect()
    }

    fn block(&self, id: RamBlockId) -> &Block {
        &self.blocks[id.0]
    }

    /// Writes or reads one byte per 4 KiB page of the range: a fault that cannot be served is a
    /// real SIGBUS, which ends this process.
    fn touch_pages(&self, id: RamBlockId, offset: Bytes, len: Bytes, write: bool) {
        let b = self.block(id);
        let start = b.map.at(offset.0 as usize, len.0 as usize);
        for p in (0..len.0 as usize).step_by(PAGE) {
            // SAFETY: `start + p` lies inside the mapping (checked by `at`); volatile access is
            // what makes the kernel fault the page in, as QEMU's own accesses do.
            unsafe {
                let addr = start.add(p);
                if write {
                    std::ptr::write_volatile(addr, 0x5a);
                } else if std::ptr::read_volatile(addr) != 0 {
                    // ram_handle_zero: write only when the page is not already zero.
                    std::ptr::write_bytes(addr, 0, PAGE);
                }
            }
        }
    }
}

impl HostSetup for RealMemory {
    fn add_ram_block(&mut self, name: &str, mem: &BlockMemory, len: Bytes) -> Result<RamBlockId, HostError> {
        let backend = mem.backend;
        let page = backend.page_size.0 as usize;
        let file_name = name.replace(['/', ':'], "_");
        let dir = |limit: Option<LimitId>| -> &PathBuf {
            &self.places.mounts.iter().find(|(l, _)| *l == limit).expect("fits() asked for a mount for this backend").1
        };
        // The older form runs its limited memfd kinds as files on its one mount.
        let one_mount = mem.mount.is_none() && self.places.mounts.iter().any(|(l, _)| l.is_none());
        let size = len.0 as usize;
        let result = match backend.kind {
            BackendKind::PrivateAnonymous => Mapping::new(Backing::PrivateAnonymous, size, PAGE, name, false),
            BackendKind::SharedAnonymous => Mapping::new(Backing::SharedAnonymous, size, PAGE, name, false),
            BackendKind::RegularFile => {
                let dir = self.places.files.as_ref().expect("fits() asked for a directory for this backend");
                Mapping::new(Backing::TempFile(dir), size, PAGE, name, false)
            }
            BackendKind::Memfd if !one_mount => Mapping::new(Backing::Memfd { hugetlb: false }, size, PAGE, name, false),
            BackendKind::MemfdHugetlb if !one_mount => Mapping::new(Backing::Memfd { hugetlb: true }, size, page, name, mem.reserve),
            kind => {
                let at = dir(mem.mount).join(&file_name);
                let backing = if mem.private { Backing::PrivateFile(&at) } else { Backing::File(&at) };
                Mapping::new(backing, size, if kind.is_hugetlb() { page } else { PAGE }, name, mem.reserve)
            }
        };
        let map = match result {
            Ok(m) => m,
            // A reservation the pool or quota cannot give: mmap's ENOMEM, as QEMU sees it.
            Err(e) if mem.reserve && matches!(e.raw_os_error(), Some(libc::ENOMEM) | Some(libc::ENOSPC)) => {
                return Err(HostError { errno: Errno::NoMem, offset: Bytes::ZERO });
            }
            Err(e) => panic!("cannot map RAM block '{name}' ({} bytes): {e}", len.0),
        };
        let discard = self.discard_override.unwrap_or_else(|| DiscardMethod::qemu_choice(backend.kind, Bytes(map.page_size as u64)));
        let block_size = self.block_sizes.iter().find(|(n, _)| n == name).map_or(map.page_size, |(_, b)| *b as usize);
        self.blocks.push(Block { map, block_size, discard, registered: false });
        Ok(RamBlockId(self.blocks.len() - 1))
    }
}

impl HostMemory for RealMemory {
    fn populate(&mut self, block: RamBlockId, offset: Bytes, len: Bytes) -> Result<(), HostError> {
        let b = self.block(block);
        let runs = [(offset.0 as usize, len.0 as usize)];
        match preallocate(&b.map, &runs, b.block_size, self.strategy) {
            Ok(()) => Ok(()),
            // qemu_prealloc_mem's fallback, only where the kernel does not know the advice:
            // touch every page (a shortage then kills the process by SIGBUS here, where QEMU's
            // own handler would turn it into EFAULT).
            Err(SysErrno::INVAL) => {
                self.touch_pages(block, offset, len, true);
                Ok(())
            }
            Err(e) => Err(HostError { errno: errno(e), offset }),
        }
    }

    fn discard(&mut self, block: RamBlockId, offset: Bytes, len: Bytes) -> Result<(), HostError> {
        let b = self.block(block);
        let addr = b.map.at(offset.0 as usize, len.0 as usize);
        let fail = |e| HostError { errno: errno(e), offset };
        let punch = |b: &Block| {
            let fd = b.map.fd.as_ref().expect("punching a hole needs an fd-backed block");
            rustix::fs::fallocate(fd, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset.0, len.0)
        };
        // SAFETY (both madvise calls): the range lies inside the mapping and nothing holds a
        // reference into it; discarding only drops page contents.
        let advise = |a| unsafe { rustix::mm::madvise(addr.cast(), len.0 as usize, a) };
        match b.discard {
            DiscardMethod::PunchHole => punch(b).map_err(fail),
            DiscardMethod::PunchHoleAndDontneed => {
                punch(b).map_err(fail)?;
                advise(Advice::LinuxDontNeed).map_err(fail)
            }
            DiscardMethod::Dontneed => advise(Advice::LinuxDontNeed).map_err(fail),
            DiscardMethod::Remove => advise(Advice::LinuxRemove).map_err(fail),
        }
    }

    fn load(&mut self, block: RamBlockId, offset: Bytes, len: Bytes, kind: PageKind) -> Result<(), Sigbus> {
        self.touch_pages(block, offset, len, kind == PageKind::Normal);
        Ok(())
    }

    fn place(&mut self, block: RamBlockId, offset: Bytes, len: Bytes, zero: bool) -> Result<(), HostError> {
        if self.uffd.is_none() {
            self.uffd = Some(Userfault::new().unwrap_or_else(|e| panic!("userfaultfd: {e}")));
        }
        let page = self.blocks[block.0].map.page_size;
        if !self.blocks[block.0].registered {
            let b = &self.blocks[block.0];
            let uffd = self.uffd.as_ref().expect("created above");
            uffd.register(b.map.base(), b.map.len()).unwrap_or_else(|e| panic!("UFFDIO_REGISTER: {e}"));
            self.blocks[block.0].registered = true;
        }
        if self.zero_src.len() < page {
            self.zero_src = vec![0u8; page];
        }
        let b = &self.blocks[block.0];
        let uffd = self.uffd.as_ref().expect("created above");
        for p in (0..len.0 as usize).step_by(page) {
            let at = offset.0 as usize + p;
            let dst = b.map.at(at, page) as usize;
            let placed = if zero { uffd.zeropage(dst, page) } else { uffd.copy(dst, self.zero_src.as_ptr(), page) };
            placed.map_err(|e| HostError { errno: errno(e), offset: Bytes(at as u64) })?;
        }
        Ok(())
    }

    fn end_postcopy(&mut self) {
        let Some(uffd) = self.uffd.as_ref() else { return };
        for b in self.blocks.iter_mut().filter(|b| b.registered) {
            uffd.unregister(b.map.base(), b.map.len()).unwrap_or_else(|e| panic!("UFFDIO_UNREGISTER: {e}"));
            b.registered = false;
        }
    }

    fn touch(&mut self, block: RamBlockId, offset: Bytes, len: Bytes) -> Result<(), Sigbus> {
        self.touch_pages(block, offset, len, true);
        Ok(())
    }

    fn populated(&self, block: RamBlockId, offset: Bytes, len: Bytes) -> Bytes {
        let b = self.block(block);
        let start = b.map.at(offset.0 as usize, len.0 as usize);
        let mut vec = vec![0u8; (len.0 as usize).div_ceil(PAGE)];
        // SAFETY: mincore writes one byte per page of the range into `vec`, sized for it.
        let rc = unsafe { libc::mincore(start.cast(), len.0 as usize, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore failed on a mapped range");
        Bytes(vec.iter().filter(|v| **v & 1 == 1).count() as u64 * HOST_PAGE_SIZE.0)
    }
}
