//! The guided campaign against the unguided one, same seeds and budget: a planted rare bug (it
//! needs three fault kinds at once, each with a rare effect) is found in fewer runs.

use vmemsim_sim::campaign::{campaign, Options, Shard, Summary};
use vmemsim_sim::coverage::{find, reached};
use vmemsim_sim::gen::swarm;
use vmemsim_sim::hazards::hazards;
use vmemsim_sim::{Built, Sim};

/// The planted bug: it fires when a run has a competitor find the pool already empty at
/// POSTCOPY_LISTEN (drain and postcopy), a migrate_cancel with its retry (cancel-retry), and a
/// `requested-size` change taken by the restored device (plug-after-migration).
fn planted(b: &Built, sim: &Sim) -> bool {
    let p = reached(sim, &swarm(b.seed), &hazards(sim));
    ["competitor: finds nothing left at listen", "manager: migrate_cancel and a retry", "requested-size: taken on the destination"]
        .iter()
        .all(|k| p.has(find(k).unwrap_or_else(|| panic!("{k} names no point"))))
}

const BUDGET: u64 = 30_000;

fn hunt(seed: u64, guided: bool) -> Summary {
    let o = Options {
        runs: Some(BUDGET),
        seed,
        threads: 2,
        shard: Shard::WHOLE,
        variant: vmemsim_model::Variant::Faithful,
        qemu: vmemsim_model::QemuVersion::DEFAULT,
        time: None,
        stop_on_finding: true,
        guided,
        target: Some(planted),
    };
    campaign(&o, &|_, _| {})
}

#[test]
fn the_guided_campaign_finds_a_planted_rare_bug_in_fewer_runs() {
    let (mut unguided_total, mut guided_total) = (0, 0);
    for seed in [1u64, 1_000_001, 2_000_001, 3_000_001, 4_000_001] {
        let (u, g) = (hunt(seed, false), hunt(seed, true));
        println!("seed {seed}: unguided {} runs (first hit at seed {:?}), guided {} runs (at {:?})", u.runs, u.findings.first(), g.runs, g.findings.first());
        assert!(!g.findings.is_empty(), "seed {seed}: the guided campaign finds the bug within {BUDGET} runs");
        // Found in the first epoch, before any steering, both ran the same seeds.
        assert!(g.runs <= u.runs, "seed {seed}: guided {} runs, unguided {}", g.runs, u.runs);
        unguided_total += u.runs;
        guided_total += g.runs;
    }
    println!("total: unguided {unguided_total} runs, guided {guided_total}");
    assert!(guided_total * 3 <= unguided_total, "guided {guided_total} runs against unguided {unguided_total}: at least 3 times fewer");
}

#[test]
fn a_guided_campaign_does_not_depend_on_the_thread_count() {
    let o = |threads| Options {
        runs: Some(2_500),
        seed: 7,
        threads,
        shard: Shard::WHOLE,
        variant: vmemsim_model::Variant::Faithful,
        qemu: vmemsim_model::QemuVersion::DEFAULT,
        time: None,
        stop_on_finding: false,
        guided: true,
        target: None,
    };
    let (one, two) = (campaign(&o(1), &|_, _| {}), campaign(&o(2), &|_, _| {}));
    assert_eq!(one.by_class, two.by_class);
    assert_eq!(one.by_point, two.by_point);
    assert_eq!(one.weights, two.weights);
    assert_ne!(one.weights, Some(vmemsim_sim::guide::Weights::default()), "two epochs steered the weights");
    // Every run is a plain seed: run alone, it gives the same result.
    let first = one.by_class.values().map(|t| t.first()).min().unwrap();
    let (alone, _) = vmemsim_sim::campaign::run_seed(first, vmemsim_model::Variant::Faithful);
    assert!(one.by_class.get(alone.class.as_ref().unwrap()).unwrap().examples.contains(&first));
}

#[test]
fn the_campaign_prints_its_coverage_and_sometimes_and_the_json_holds_them() {
    let exe = env!("CARGO_BIN_EXE_vmemsim");
    let o = std::process::Command::new(exe).args(["campaign", "--runs", "300", "--seed", "1", "--threads", "1"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    let total = vmemsim_sim::coverage::COUNT;
    let line = text.lines().find(|l| l.starts_with("coverage: ")).unwrap_or_else(|| panic!("no coverage line in\n{text}"));
    let reached: usize = line.trim_start_matches("coverage: ").split(' ').next().unwrap().parse().unwrap();
    assert!(line.ends_with(&format!("of {total} points reached")) && reached > 50 && reached < total, "{line}");
    assert!(text.contains("sometimes (must be reached; enforced from 10000 runs, not in these 300):"), "{text}");
    assert!(text.contains("never reached ("), "{text}");

    let o = std::process::Command::new(exe).args(["--format", "json", "campaign", "--runs", "300", "--seed", "1", "--guided"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let coverage = doc["coverage"].as_array().unwrap();
    assert_eq!(coverage.len(), total);
    assert_eq!(coverage.iter().filter(|r| r["count"].as_u64() > Some(0)).count(), reached.min(total), "the guided first epoch ran the same 300 seeds");
    assert_eq!(doc["sometimes"].as_array().unwrap().len(), vmemsim_sim::coverage::SOMETIMES.len());
    assert_eq!(doc["weights"].as_array().unwrap().len(), vmemsim_sim::gen::FaultKind::ALL.len());
    assert_eq!(doc["options"]["guided"], true);
}
