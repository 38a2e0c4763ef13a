//! Real mappings of guest RAM: anonymous, memfd, memfd hugetlb, and files on mounts.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;

use rustix::fs::MemfdFlags;
use rustix::mm::{MapFlags, ProtFlags};

/// One mapped RAM block. Unmapped on drop.
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
    /// The fd of fd-backed memory (memfd or file), kept open for fallocate.
    pub fd: Option<OwnedFd>,
    pub page_size: usize,
    pub shared: bool,
}

// SAFETY: the mapping is plain memory owned by this value; moving it to another thread moves
// the ownership of that memory with it.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only hands out raw addresses (`at`, `base`); the kernel calls made through
// them (madvise, fallocate, UFFDIO_COPY) are safe to run from several threads at once, and the
// volatile page touches of concurrent preallocation threads go to disjoint ranges.
unsafe impl Sync for Mapping {}

/// How a block is backed.
pub enum Backing<'a> {
    PrivateAnonymous,
    SharedAnonymous,
    Memfd { hugetlb: bool },
    /// A file at this path (on a tmpfs or hugetlbfs mount).
    File(&'a Path),
    /// A file at this path, mapped MAP_PRIVATE (QEMU's `share=off`).
    PrivateFile(&'a Path),
    /// A file without a name in this directory (`O_TMPFILE`): nothing is left behind when the
    /// process ends, however it ends.
    TempFile(&'a Path),
}

impl Mapping {
    /// Maps `len` bytes; `page_size` is 4 KiB or the huge page size (a hugetlb memfd draws
    /// from the pool of that size: 2 MiB or 1 GiB). With `reserve` the
    /// mapping is made without MAP_NORESERVE (QEMU's `reserve=on`): hugetlb reserves every
    /// page at mmap, and mmap fails with ENOMEM when the pool or the mount cannot.
    pub fn new(backing: Backing, len: usize, page_size: usize, name: &str, reserve: bool) -> std::io::Result<Mapping> {
        let (fd, shared): (Option<OwnedFd>, bool) = match backing {
            Backing::PrivateAnonymous => (None, false),
            Backing::SharedAnonymous => (None, true),
            Backing::Memfd { hugetlb } => {
                let mut flags = MemfdFlags::CLOEXEC;
                if hugetlb {
                    // The pool the pages come from: MFD_HUGE_1GB for 1 GiB pages, else 2 MiB.
                    flags |= MemfdFlags::HUGETLB | if page_size == 1 << 30 { MemfdFlags::HUGE_1GB } else { MemfdFlags::HUGE_2MB };
                }
                let fd = rustix::fs::memfd_create(name, flags)?;
                rustix::fs::ftruncate(&fd, len as u64)?;
                (Some(fd), true)
            }
            Backing::File(path) | Backing::PrivateFile(path) => {
                let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
                file.set_len(len as u64)?;
                (Some(OwnedFd::from(file)), matches!(backing, Backing::File(_)))
            }
            Backing::TempFile(dir) => {
                let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_TMPFILE).mode(0o600).open(dir)?;
                file.set_len(len as u64)?;
                (Some(OwnedFd::from(file)), true)
            }
        };
        let mut flags = if reserve { MapFlags::empty() } else { MapFlags::NORESERVE };
        flags |= if shared { MapFlags::SHARED } else { MapFlags::PRIVATE };
        let prot = ProtFlags::READ | ProtFlags::WRITE;
        let ptr = match &fd {
            // SAFETY: a fresh mapping at an address the kernel picks; nothing else refers to it.
            Some(fd) => unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, flags, fd.as_fd(), 0)? },
            // SAFETY: as above, anonymous.
            None => unsafe { rustix::mm::mmap_anonymous(std::ptr::null_mut(), len, prot, flags)? },
        };
        let base = NonNull::new(ptr.cast::<u8>()).expect("mmap never returns null on success");
        Ok(Mapping { base, len, fd, page_size, shared })
    }

    pub fn base(&self) -> usize {
        self.base.as_ptr() as usize
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of `offset`, checked against the mapping.
    pub fn at(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(offset.checked_add(len).is_some_and(|e| e <= self.len), "range {offset:#x}+{len:#x} beyond the mapping ({:#x})", self.len);
        // SAFETY: offset + len lies inside the mapping, checked above.
        unsafe { self.base.as_ptr().add(offset) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned and nothing borrows the memory now.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
