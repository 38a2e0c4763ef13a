//! Importers: a deployment as QEMU's command line (or libvirt's domain) describes it, written as
//! a scenario.

pub mod cmdline;
pub mod host;
pub mod libvirt;
pub mod qemu;
pub mod qemu_args;
