//! The port between semantics and memory: what a QEMU process does to its guest memory.
//!
//! The model's own implementation is [`crate::model_memory::ModelMemory`]; the real-memory
//! adapter implements the same trait over actual mappings.

use std::fmt;

use crate::units::Bytes;

/// A RAM block (QEMU's `RAMBlock`) of one process, by registration order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RamBlockId(pub usize);

/// The error numbers memory operations report, with the kernel's meaning.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    /// EFAULT: MADV_POPULATE_WRITE where a real access would SIGBUS (pool or quota exhausted).
    Fault,
    /// ENOMEM: out of memory (UFFDIO_COPY with no page to allocate).
    NoMem,
    /// EEXIST: UFFDIO_COPY/ZEROPAGE onto a page that is present.
    Exist,
    /// EEXIST that is really an allocation failure: on hugetlb, UFFDIO_COPY reports EEXIST when
    /// it cannot allocate a huge page but a page table for the address exists
    /// (`hugetlb_mfill_atomic_pte`, mm/hugetlb.c; seen here by vmemsim's real-memory runs).
    ExistNoPage,
    /// EINVAL: bad arguments.
    Inval,
    /// EBUSY.
    Busy,
}

impl Errno {
    /// The errno value on Linux x86-64, as `%i` prints it.
    pub fn number(self) -> i32 {
        match self {
            Errno::Fault => 14,
            Errno::NoMem => 12,
            Errno::Exist | Errno::ExistNoPage => 17,
            Errno::Inval => 22,
            Errno::Busy => 16,
        }
    }

    /// `strerror()` text, as QEMU prints it.
    pub fn strerror(self) -> &'static str {
        match self {
            Errno::Fault => "Bad address",
            Errno::NoMem => "Cannot allocate memory",
            Errno::Exist | Errno::ExistNoPage => "File exists",
            Errno::Inval => "Invalid argument",
            Errno::Busy => "Device or resource busy",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.strerror())
    }
}

/// A memory operation that failed with an error number at a byte offset of its RAM block.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostError {
    pub errno: Errno,
    pub offset: Bytes,
}

/// A page access that the kernel answered with SIGBUS, at a byte offset of its RAM block.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sigbus {
    pub offset: Bytes,
}

/// How a page arrives in the precopy stream (`ram_load_precopy`, migration/ram.c).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PageKind {
    /// RAM_SAVE_FLAG_PAGE: the page's bytes are written into guest RAM.
    Normal,
    /// RAM_SAVE_FLAG_ZERO: `ram_handle_zero` reads the target and writes only if non-zero.
    Zero,
}

/// What a process does to its guest memory. Offsets and lengths are bytes within one RAM block.
pub trait HostMemory {
    /// Populates a range for writing, as `qemu_prealloc_mem` (util/oslib-posix.c) does with
    /// MADV_POPULATE_WRITE. Fails gracefully (EFAULT) when capacity runs out; what was
    /// populated before the failure stays populated.
    fn populate(&mut self, block: RamBlockId, offset: Bytes, len: Bytes) -> Result<(), HostError>;

    /// Discards a range as `ram_block_discard_range` (system/physmem.c) does for this backend.
    fn discard(&mut self, block: RamBlockId, offset: Bytes, len: Bytes) -> Result<(), HostError>;

    /// Loads a run of pages from the precopy stream (`ram_load_precopy`). A write, or a read
    /// that must allocate, beyond capacity is a SIGBUS.
    fn load(&mut self, block: RamBlockId, offset: Bytes, len: Bytes, kind: PageKind) -> Result<(), Sigbus>;

    /// Places pages after LISTEN: with UFFDIO_COPY (`postcopy_place_page`), or with
    /// UFFDIO_ZEROPAGE when `zero` (`postcopy_place_page_zero` on a zeroable block): EEXIST when
    /// a page is present, ENOMEM when no page can be allocated.
    fn place(&mut self, block: RamBlockId, offset: Bytes, len: Bytes, zero: bool) -> Result<(), HostError>;

    /// The end of an incoming postcopy, when the stream's EOF arrives
    /// (`postcopy_ram_incoming_cleanup` from `postcopy_ram_listen_thread`): RAM leaves
    /// userfaultfd (UFFDIO_UNREGISTER), so a later fault populates as it does without postcopy.
    /// The model's memory has no userfaultfd: nothing to do.
    fn end_postcopy(&mut self) {}

    /// The guest writes a range after switchover. Beyond capacity: SIGBUS at run time.
    fn touch(&mut self, block: RamBlockId, offset: Bytes, len: Bytes) -> Result<(), Sigbus>;

    /// Bytes of the range that are populated now.
    fn populated(&self, block: RamBlockId, offset: Bytes, len: Bytes) -> Bytes;

    /// What the block's backend has left for new pages; None when nothing limits it (or the
    /// host cannot say).
    fn left(&self, _block: RamBlockId) -> Option<Bytes> {
        None
    }
}

/// Creating the RAM blocks of a process: what a host needs besides the memory operations.
pub trait HostSetup: HostMemory {
    /// Registers (maps) a RAM block of `len` bytes on the memory `mem` describes.
    /// Fails as mmap does (ENOMEM when a reservation cannot be had).
    fn add_ram_block(&mut self, name: &str, mem: &crate::memdev::BlockMemory, len: Bytes) -> Result<RamBlockId, HostError>;
}
