//! The model's one error enum: every way a configuration or a request can be refused.
//! Messages are QEMU's own where QEMU has one, so a user can match them against real logs.

use crate::units::UnitError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// `-machine` names a machine type this QEMU version does not offer.
    /// The text is QEMU's (`select_machine`); [`ModelError::hint`] says what the version offers.
    #[error("unsupported machine type: \"{name}\"")]
    UnknownMachine { name: String, qemu: crate::qemu_version::QemuVersion, oldest: String, newest: String },
    /// A device property or realize check failed; `message` is QEMU's error text.
    #[error("-device virtio-mem-pci,id={device}: {message}")]
    Realize { device: String, message: String },
    /// A memory backend could not be created (`host_memory_backend_memory_complete`); `object`
    /// is its `-object` option. QEMU 10.0.2 prints the message alone (observed: "unable to map
    /// backing store for guest RAM: Cannot allocate memory", "qemu_prealloc_mem: preallocating
    /// memory failed: Bad address").
    #[error("{message}")]
    Backend { object: String, message: String },
    /// The mmap of a memory backend failed (`qemu_ram_alloc_from_fd`, `qemu_anon_ram_alloc`):
    /// QEMU refuses to start; `object` is the backend's `-object` option.
    #[error("unable to map backing store for guest RAM: {errno}")]
    Map { object: String, errno: crate::host::Errno },
    /// Setting `requested-size` at run time failed (`virtio_mem_set_requested_size`).
    #[error("qom-set {device} requested-size: {message}")]
    RequestedSize { device: String, message: String },
    /// A size or address could not be parsed.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// Postcopy on memory userfaultfd cannot handle (`postcopy_ram_supported_by_host`).
    #[error("postcopy is not supported on {backend} memory: use anonymous, memfd, tmpfs or hugetlbfs memory")]
    PostcopyUnsupported { backend: &'static str },
}

impl ModelError {
    /// What the user can write instead, where the error has an answer to that.
    pub fn hint(&self) -> Option<String> {
        match self {
            ModelError::UnknownMachine { qemu, oldest, newest, .. } => Some(format!(
                "QEMU {qemu} offers q35 = pc-q35-{newest}, pc = pc-i440fx-{newest}, and pc-q35-X.Y or pc-i440fx-X.Y from {oldest} to {newest}"
            )),
            _ => None,
        }
    }
}
