//! vmemsim-model: a pure, QEMU-faithful model of virtio-mem plug state, preallocation,
//! discard and migration ordering. No I/O, clock, randomness or threads.
#![forbid(unsafe_code)]

pub mod backend;
pub mod config;
pub mod device;
pub mod error;
pub mod host;
pub mod machine;
pub mod memdev;
pub mod memory_device;
pub mod migration;
pub mod model_memory;
pub mod plug_map;
pub mod profile;
pub mod qemu_version;
pub mod pc_layout;
pub mod ranges;
pub mod request;
pub mod units;
pub mod variant;
pub mod vm;
pub mod vmm;
pub mod wire;

pub use backend::{Backend, BackendKind, Capacity, DiscardMethod};
pub use config::{DeviceConfig, HostFacts};
pub use device::VirtioMem;
pub use error::ModelError;
pub use host::{HostMemory, RamBlockId};
pub use machine::MachineType;
pub use memdev::{BlockMemory, Limit, LimitId, LimitKind, Memdev, Memory, MountFs};
pub use migration::outcome::{Outcome, OutcomeClass, Stage};
pub use migration::plan::{GuestRange, Mode, Plan, PostcopyStart};
pub use model_memory::ModelMemory;
pub use plug_map::{BlockRun, PlugMap};
pub use profile::QemuProfile;
pub use qemu_version::QemuVersion;
pub use request::{BlockState, Request, Response};
pub use units::{BlockCount, BlockIndex, Bytes, Gpa};
pub use variant::Variant;
pub use vm::{Vm, VmConfig};
