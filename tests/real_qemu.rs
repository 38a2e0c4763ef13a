//! The six outcomes of real-qemu.md (old/new machine × prealloc on/off × short/enough) and
//! the seed's two-device case, produced by the model with QEMU's exact stderr lines.

mod common;

use vmemsim_model::OutcomeClass;
use vmemsim_sim::{load, run, Sim as Report};

fn report(rel: &str) -> Report {
    let l = load(&common::scenario(rel)).unwrap_or_else(|e| panic!("{e}"));
    run(&l).unwrap_or_else(|e| panic!("{e}"))
}

/// QEMU's three lines, word for word from real-qemu.md.
const GRACEFUL: [&str; 3] = [
    "qemu-system-x86_64: qemu_prealloc_mem: preallocating memory failed: Bad address",
    "qemu-system-x86_64: error while loading state for instance 0x0 of device '0000:00:03.0/virtio-mem-device-early'",
    "qemu-system-x86_64: load of migration failed: Cannot allocate memory",
];

#[test]
fn new_machine_prealloc_short_fails_gracefully_with_qemus_lines() {
    let r = report("real-qemu/new-prealloc-short.toml");
    assert_eq!(r.outcome.class(), OutcomeClass::Failed);
    assert_eq!(r.outcome.stderr(), GRACEFUL);
    insta::assert_snapshot!(r.outcome.to_string());
}

#[test]
fn new_machine_without_prealloc_short_dies_of_sigbus_silently() {
    let r = report("real-qemu/new-noprealloc-short.toml");
    assert_eq!(r.outcome.class(), OutcomeClass::Crashed);
    assert!(r.outcome.stderr().is_empty(), "nothing on stderr");
    insta::assert_snapshot!(r.outcome.to_string());
}

#[test]
fn old_machine_prealloc_short_dies_before_the_warning() {
    let r = report("real-qemu/old-prealloc-short.toml");
    assert_eq!(r.outcome.class(), OutcomeClass::Crashed);
    assert!(r.outcome.stderr().is_empty(), "the old-machine warning is never reached");
    insta::assert_snapshot!(r.outcome.to_string());
}

#[test]
fn old_machine_without_prealloc_short_dies_of_sigbus() {
    let r = report("real-qemu/old-noprealloc-short.toml");
    assert_eq!(r.outcome.class(), OutcomeClass::Crashed);
    insta::assert_snapshot!(r.outcome.to_string());
}

#[test]
fn new_machine_prealloc_enough_completes() {
    let r = report("real-qemu/new-prealloc-enough.toml");
    assert_eq!(r.outcome.class(), OutcomeClass::Completed);
    assert!(r.outcome.stderr().is_empty());
    insta::assert_snapshot!(r.outcome.to_string());
}

#[test]
fn old_machine_prealloc_enough_completes_with_the_warning() {
    let r = report("real-qemu/old-prealloc-enough.toml");
    assert_eq!(r.outcome.class(), OutcomeClass::Completed);
    assert_eq!(
        r.outcome.stderr(),
        ["qemu-system-x86_64: warning: Proper preallocation with migration requires a newer QEMU machine"]
    );
    insta::assert_snapshot!(r.outcome.to_string());
}

#[test]
fn seed_two_devices_fail_gracefully_in_the_first_early_section() {
    let built = vmemsim_sim::build(&load(&common::scenario("seed/two-devices-short-hugetlb.toml")).unwrap()).unwrap();
    let r = vmemsim_sim::run_built(&built);
    assert_eq!(r.outcome.class(), OutcomeClass::Failed);
    assert_eq!(r.outcome.stderr(), GRACEFUL);
    insta::assert_snapshot!(r.outcome.to_string());
    insta::assert_snapshot!("seed_trace", r.lines(&built).join("\n"));
}
