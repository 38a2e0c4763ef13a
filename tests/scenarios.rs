//! Replays every scenario in `scenarios/` and checks its expected outcome.

mod common;

use vmemsim_sim::{check_expectations, load, run};

#[test]
fn every_scenario_meets_its_expectation() {
    let files = common::scenario_files();
    assert!(files.len() >= 7, "the seed case and the six real-qemu cases ship");
    let mut failures = Vec::new();
    for f in &files {
        let l = load(f).unwrap_or_else(|e| panic!("{e}"));
        assert!(l.scenario.expect.is_some(), "{}: every shipped scenario states its expected outcome", f.display());
        let r = run(&l).unwrap_or_else(|e| panic!("{e}"));
        let diffs = check_expectations(&l, &r).unwrap();
        if !diffs.is_empty() {
            failures.push(format!("{}:\n  {}", f.display(), diffs.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_same_scenario_gives_the_same_trace_hash() {
    for f in common::scenario_files() {
        let l = load(&f).unwrap();
        let a = run(&l).unwrap();
        let b = run(&l).unwrap();
        assert_eq!(a.trace, b.trace, "{}", f.display());
        assert_eq!(a.trace_hash, b.trace_hash);
    }
}

/// Ten thousand devices: each step checks only the device it touched, so the run is linear in
/// the devices (it was quadratic: every step checked every device, over 120 s).
#[test]
fn ten_thousand_devices_run_in_linear_time() {
    let mut text = String::from("name = \"many devices\"\n[source]\nmachine = \"q35\"\nbackend = { kind = \"memfd\" }\n[destination]\nbackend = { kind = \"memfd\" }\n");
    for i in 0..10_000u64 {
        let addr = 0x1_0000_0000 + i * (16 << 20);
        text += &format!("[[device]]\nid = \"vmem{i}\"\npci = \"0000:{:02x}:{:02x}.0\"\nmemaddr = \"{addr:#x}\"\nregion = \"16M\"\nblock_size = \"2M\"\nrequested = \"4M\"\n", i / 32, i % 32);
    }
    let start = std::time::Instant::now();
    let l = vmemsim_sim::parse(std::path::Path::new("many.toml"), &text).unwrap();
    let r = run(&l).unwrap();
    assert_eq!(r.outcome.class(), vmemsim_model::OutcomeClass::Completed, "{}", r.outcome);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    // The trace the quadratic engine wrote for this scenario, since the setup lines name the QEMU
    // release and the canonical machine type.
    assert_eq!(format!("{:016x}", r.trace_hash), "a0ef5e0e183f94a1");
    assert!(start.elapsed() < std::time::Duration::from_secs(60), "{:?}", start.elapsed());
}
