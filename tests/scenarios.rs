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
