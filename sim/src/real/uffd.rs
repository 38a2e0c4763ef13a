//! userfaultfd: register RAM in MISSING mode at LISTEN and place pages with UFFDIO_COPY or
//! UFFDIO_ZEROPAGE, as QEMU's postcopy does (`postcopy_ram_incoming_setup`,
//! `qemu_ufd_copy_ioctl`).

use std::os::fd::{AsFd, OwnedFd};

use linux_raw_sys::general::{uffdio_api, uffdio_copy, uffdio_range, uffdio_register, uffdio_zeropage, UFFDIO_REGISTER_MODE_MISSING, UFFD_API, UFFD_FEATURE_SIGBUS};
use linux_raw_sys::ioctl::{UFFDIO_API, UFFDIO_COPY, UFFDIO_REGISTER, UFFDIO_UNREGISTER, UFFDIO_ZEROPAGE};
use rustix::io::Errno;
use rustix::ioctl::{ioctl, Updater};
use rustix::mm::UserfaultfdFlags;

/// One userfaultfd with UFFD_FEATURE_SIGBUS: a fault on a missing page raises SIGBUS instead
/// of waiting for a handler thread, so nothing can hang.
pub struct Userfault {
    fd: OwnedFd,
}

impl Userfault {
    pub fn new() -> std::io::Result<Userfault> {
        // SAFETY: userfaultfd has no memory-safety preconditions; the fd is owned here.
        let fd = unsafe { rustix::mm::userfaultfd(UserfaultfdFlags::CLOEXEC | UserfaultfdFlags::NONBLOCK)? };
        let mut api = uffdio_api { api: UFFD_API as u64, features: UFFD_FEATURE_SIGBUS as u64, ioctls: 0 };
        // SAFETY: UFFDIO_API reads and writes a `uffdio_api`, which `api` is.
        unsafe { ioctl(fd.as_fd(), Updater::<{ UFFDIO_API }, uffdio_api>::new(&mut api))? };
        Ok(Userfault { fd })
    }

    /// UFFDIO_REGISTER with UFFDIO_REGISTER_MODE_MISSING over `[start, start + len)`.
    pub fn register(&self, start: usize, len: usize) -> std::io::Result<()> {
        let mut reg = uffdio_register { range: uffdio_range { start: start as u64, len: len as u64 }, mode: UFFDIO_REGISTER_MODE_MISSING as u64, ioctls: 0 };
        // SAFETY: UFFDIO_REGISTER reads and writes a `uffdio_register`; the range is a mapping
        // the caller owns.
        unsafe { ioctl(self.fd.as_fd(), Updater::<{ UFFDIO_REGISTER }, uffdio_register>::new(&mut reg))? };
        Ok(())
    }

    /// UFFDIO_UNREGISTER over `[start, start + len)`: faults there populate as usual again
    /// (`cleanup_range` in `postcopy_ram_incoming_cleanup`, migration/postcopy-ram.c).
    pub fn unregister(&self, start: usize, len: usize) -> std::io::Result<()> {
        let mut range = uffdio_range { start: start as u64, len: len as u64 };
        // SAFETY: UFFDIO_UNREGISTER reads a `uffdio_range` of a mapping the caller owns.
        unsafe { ioctl(self.fd.as_fd(), Updater::<{ UFFDIO_UNREGISTER }, uffdio_range>::new(&mut range))? };
        Ok(())
    }

    /// UFFDIO_COPY of `len` bytes from `src` to `dst`: EEXIST when the target is present.
    pub fn copy(&self, dst: usize, src: *const u8, len: usize) -> Result<(), Errno> {
        let mut c = uffdio_copy { dst: dst as u64, src: src as u64, len: len as u64, mode: 0, copy: 0 };
        // SAFETY: UFFDIO_COPY reads `len` bytes at `src` (a buffer the caller keeps alive) and
        // writes them to `dst` inside a registered range; it writes back `copy`.
        match unsafe { ioctl(self.fd.as_fd(), Updater::<{ UFFDIO_COPY }, uffdio_copy>::new(&mut c)) } {
            Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// UFFDIO_ZEROPAGE of `len` bytes at `dst` (`uffd_zero_page`): EEXIST when present.
    pub fn zeropage(&self, dst: usize, len: usize) -> Result<(), Errno> {
        let mut z = uffdio_zeropage { range: uffdio_range { start: dst as u64, len: len as u64 }, mode: 0, zeropage: 0 };
        // SAFETY: UFFDIO_ZEROPAGE reads and writes a `uffdio_zeropage`; the range lies inside a
        // registered mapping the caller owns.
        unsafe { ioctl(self.fd.as_fd(), Updater::<{ UFFDIO_ZEROPAGE }, uffdio_zeropage>::new(&mut z)) }
    }
}
