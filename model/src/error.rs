//! The model's one error enum: every way a configuration or a request can be refused.
//! Messages are QEMU's own where QEMU has one, so a user can match them against real logs.

use crate::units::UnitError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// `-machine` names a machine type this model does not know.
    #[error("unsupported machine type: \"{0}\" (known: q35, pc, pc-q35-X.Y and pc-i440fx-X.Y from 2.0 on)")]
    UnknownMachine(String),
    /// A device property or realize check failed; `message` is QEMU's error text.
    #[error("-device virtio-mem-pci,id={device}: {message}")]
    Realize { device: String, message: String },
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
