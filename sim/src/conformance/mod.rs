//! Conformance: the model's predictions checked against a real QEMU and a real Linux guest
//! under TCG (real-qemu.md): QEMU command lines from a scenario, QMP, and the destination's real
//! outcome (exit status 1 with its stderr lines, death by SIGBUS, or a completed restore).

pub mod qmp;
pub mod vm;
