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
        let built = vmemsim_sim::build(&l).unwrap();
        assert_eq!(a.lines(&built), b.lines(&built), "{}", f.display());
        assert_eq!(a.trace_hash, a.rehash(&built));
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
    assert_eq!(format!("{:016x}", r.trace_hash), "2d20fbd30d66259c");
    // The text is the one the quadratic engine wrote for this scenario (since the set-up lines
    // name the QEMU release and the canonical machine type), when its hash was FNV-1a of the text.
    let b = vmemsim_sim::build(&l).unwrap();
    let mut fnv: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in r.lines(&b).iter().flat_map(|line| line.bytes().chain(std::iter::once(b'\n'))) {
        fnv = (fnv ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    assert_eq!(format!("{fnv:016x}"), "a0ef5e0e183f94a1");
    assert!(start.elapsed() < std::time::Duration::from_secs(60), "{:?}", start.elapsed());
}

/// The trace hash covers every step: moving any one step in time, or changing what a channel
/// step carried, changes it.
#[test]
fn every_step_is_in_the_trace_hash() {
    use vmemsim_sim::trace::{hash, ItemRef, Step};
    for rel in ["seed/two-devices-short-hugetlb.toml", "hazards/two-devices-sum-postcopy.toml", "hazards/qemu-10.0.2-source-stuck-seed11.toml"] {
        let l = load(&common::scenario(rel)).unwrap();
        let b = vmemsim_sim::build(&l).unwrap();
        let r = vmemsim_sim::run_built(&b);
        assert_eq!(hash(&b, &r.trace, &r.violations, &r.outcome), r.trace_hash);
        for i in 0..r.trace.len() {
            let mut t = r.trace.clone();
            t.entries[i].at += 1;
            assert_ne!(hash(&b, &t, &r.violations, &r.outcome), r.trace_hash, "{rel}: step {i} moved");
            if let Step::Channel(ItemRef::Stream { attempt, index }) = t.entries[i].step {
                let mut t = r.trace.clone();
                let n = t.attempts[usize::from(attempt)].len() as u32;
                t.entries[i].step = Step::Channel(ItemRef::Stream { attempt, index: (index + 1) % n });
                assert_ne!(hash(&b, &t, &r.violations, &r.outcome), r.trace_hash, "{rel}: step {i} carries another item");
            }
        }
    }
}
