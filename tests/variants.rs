//! The framework must catch bugs: for every variant a campaign finds a violation within a
//! bounded number of runs, shrinks it, and the saved file's replay fails the same property.
//! The faithful model finds nothing over the same campaign.

mod common;

use std::time::Duration;

use vmemsim_model::Variant;
use vmemsim_sim::campaign::{campaign, Options, Shard};
use vmemsim_sim::found::record;
use vmemsim_sim::{check_expectations, load, run, Property};

const RUNS: u64 = 2000;

fn campaign_of(variant: Variant) -> vmemsim_sim::campaign::Summary {
    let o = Options { runs: Some(RUNS), seed: 1, threads: 2, shard: Shard::WHOLE, variant, qemu: vmemsim_model::QemuVersion::DEFAULT, time: None, stop_on_finding: false, guided: false, target: None };
    campaign(&o, &|_, _| {})
}

#[test]
fn the_faithful_model_finds_nothing() {
    let s = campaign_of(Variant::Faithful);
    assert!(s.generator_errors.is_empty(), "{:?}", s.generator_errors.first());
    assert!(s.findings.is_empty(), "{:?}", s.by_property);
    // The campaign exercises every outcome class.
    assert_eq!(s.by_class.len(), 5, "{:?}", s.by_class);
}

/// The property each variant is expected to break.
fn expected(variant: Variant) -> Property {
    match variant {
        Variant::Faithful => unreachable!("the faithful model breaks nothing"),
        Variant::Pre80 => Property::GracefulCapacityFailure,
        Variant::NoDiscardAfterPrealloc => Property::PostcopyCleanSlate,
        Variant::DontneedOnShared => Property::PostcopyCleanSlate,
        Variant::PreallocWholeRegion => Property::ReferenceTable,
        Variant::PreallocAfterRamLoad => Property::GracefulCapacityFailure,
        Variant::PlugDuringMigration => Property::PlugStateFrozen,
        Variant::NoRollback => Property::PluggedSizeInvariant,
    }
}

#[test]
fn every_variant_is_caught_shrunk_and_replayed() {
    let dir = common::scratch("variants");
    for variant in Variant::ALL.into_iter().filter(|v| *v != Variant::Faithful) {
        let s = campaign_of(variant);
        let property = expected(variant);
        let t = s.by_property.get(&property).unwrap_or_else(|| panic!("{variant}: no {property} in {RUNS} runs: {:?}", s.by_property));
        assert!(t.count > 0);
        let seed = t.first();
        let f = record(seed, variant, vmemsim_model::QemuVersion::DEFAULT, property, &dir, Duration::from_secs(20)).expect("writes the finding");
        assert!(f.size_after <= f.size_before, "{variant}: shrinking never grows");
        let l = load(&f.path).expect("the written finding parses");
        let sim = run(&l).expect("builds");
        assert!(sim.violates(property), "{variant}: the replay of {} no longer fails {property}", f.path.display());
        assert_eq!(check_expectations(&l, &sim).unwrap(), Vec::<String>::new(), "{variant}: replay matches the recorded outcome and hash");
    }
    std::fs::remove_dir_all(&dir).ok();
}
