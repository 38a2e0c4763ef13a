//! Same seed, same trace hash, on any thread count; shards add up to the whole run.

use vmemsim_model::Variant;
use vmemsim_sim::campaign::{campaign, loaded, run_seed, Options, Shard};
use vmemsim_sim::gen::generate;
use vmemsim_sim::{build, parse, simulate};

fn options(runs: u64, threads: usize, shard: Shard, variant: Variant) -> Options {
    Options { runs: Some(runs), seed: 1, threads, shard, variant, qemu: vmemsim_model::QemuVersion::DEFAULT, time: None, stop_on_finding: false, guided: false, target: None }
}

#[test]
fn a_thousand_seeds_twice_give_the_same_trace_hashes() {
    let hashes = |_: ()| -> Vec<u64> { (1..=1000).map(|seed| run_seed(seed, Variant::Faithful).1.expect("builds").trace_hash).collect() };
    let a = hashes(());
    let b = hashes(());
    assert_eq!(a, b);
    // Across threads too: each seed on its own thread.
    let c: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=1000u64).step_by(250).map(|start| s.spawn(move || (start..start + 250).map(|seed| run_seed(seed, Variant::Faithful).1.expect("builds").trace_hash).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("no panic")).collect()
    });
    assert_eq!(a, c);
    let distinct: std::collections::BTreeSet<_> = a.iter().collect();
    assert!(distinct.len() > 990, "different seeds give different runs");
}

#[test]
fn campaign_results_do_not_depend_on_the_thread_count() {
    let one = campaign(&options(1500, 1, Shard::WHOLE, Variant::PlugDuringMigration), &|_, _| {});
    let four = campaign(&options(1500, 4, Shard::WHOLE, Variant::PlugDuringMigration), &|_, _| {});
    assert_eq!(one.runs, 1500);
    assert_eq!(one.by_class, four.by_class);
    assert_eq!(one.by_property, four.by_property);
    assert_eq!(one.findings, four.findings);
    assert!(!one.findings.is_empty());
}

#[test]
fn shards_add_up_to_the_whole_campaign() {
    let whole = campaign(&options(999, 2, Shard::WHOLE, Variant::Pre80), &|_, _| {});
    let mut findings = Vec::new();
    let mut runs = 0;
    for index in 0..3 {
        let part = campaign(&options(999, 2, Shard { index, count: 3 }, Variant::Pre80), &|_, _| {});
        runs += part.runs;
        findings.extend(part.findings);
    }
    findings.sort();
    assert_eq!(runs, whole.runs);
    assert_eq!(findings, whole.findings);
    assert_eq!(Shard::parse("3/3"), Err("'3/3' is not a shard: write i/n with 0 <= i < n, e.g. 0/4".into()));
}

#[test]
fn generated_scenarios_survive_a_round_trip_through_toml() {
    for seed in 1..=200 {
        let scenario = generate(seed, Variant::Faithful);
        let direct = simulate(&build(&loaded(scenario.clone())).expect("builds"));
        let text = toml::to_string(&scenario).expect("serializes");
        let parsed = parse(std::path::Path::new("roundtrip.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let again = simulate(&build(&parsed).expect("builds"));
        assert_eq!(direct.trace_hash, again.trace_hash, "seed {seed}:\n{text}");
    }
}

/// Replaying a run's trace on the simulator's own memory gives the run's outcome, with nothing
/// diverging: the replay the real-memory child does follows the engine step for step.
#[test]
fn a_trace_replayed_on_model_memory_is_the_run() {
    use vmemsim_sim::trace_replay::{replay, ModelHost};
    let mut checked = 0;
    let mut with_events = 0;
    for seed in 1..=3000u64 {
        let l = vmemsim_sim::campaign::loaded(vmemsim_sim::gen::generate(seed, Variant::Faithful));
        let Ok(b) = vmemsim_sim::build(&l) else { continue };
        let sim = vmemsim_sim::run_built(&b);
        let r = replay(&b, &sim, &mut ModelHost(&b));
        assert!(r.divergences.is_empty(), "seed {seed}: {:?}", r.divergences);
        assert_eq!(r.outcome, sim.outcome, "seed {seed}");
        checked += 1;
        with_events += usize::from(!b.actions.is_empty() || !b.resizes.is_empty() || !b.drains.is_empty() || b.cancel_at.is_some());
    }
    assert!(checked > 2900 && with_events > 1000, "{checked} seeds, {with_events} with events");
}
