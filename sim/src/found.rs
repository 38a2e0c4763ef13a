//! Recording a finding: write the generated scenario at once, shrink it, then rewrite it with
//! its expected outcome, trace hash and violated properties, so `cargo test` replays it forever.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use vmemsim_model::{QemuVersion, Variant};

use crate::build::build;
use crate::campaign::{loaded, write_scenario};
use crate::engine::{simulate, Sim};
use crate::hazards::{hazards, Hazard};
use crate::gen::generate_on;
use crate::properties::Property;
use crate::scenario::Expect;
use crate::shrink::{shrink, shrink_while, size, Shrunk};

/// A recorded finding.
#[derive(Clone, Debug)]
pub struct Finding {
    pub seed: u64,
    pub property: Property,
    pub path: PathBuf,
    pub size_before: (usize, u64),
    pub size_after: (usize, u64),
    pub shrunk: Shrunk,
}

impl Finding {
    /// The one-line command that replays it.
    pub fn replay_command(&self) -> String {
        format!("vmemsim replay {}", self.path.display())
    }
}

/// Writes, shrinks and rewrites the finding of `seed` for `property` under `dir`.
pub fn record(seed: u64, variant: Variant, qemu: QemuVersion, property: Property, dir: &Path, budget: Duration) -> std::io::Result<Finding> {
    let mut scenario = generate_on(seed, variant, qemu);
    let path = dir.join(format!("{}-{}-seed{seed}.toml", variant.name(), property.name()));
    write_scenario(&path, &scenario)?;
    let size_before = crate::shrink::size(&scenario);
    let shrunk = shrink(&scenario, property, budget);
    scenario = shrunk.scenario.clone();
    let b = build(&loaded(scenario.clone())).expect("a shrunk scenario builds: shrinking only accepts those that do");
    let sim = simulate(&b);
    scenario.name = format!("found: {} under variant {} (seed {seed}, shrunk)", property.name(), variant.name());
    scenario.description = format!(
        "Found by `vmemsim campaign --variant {} --qemu {qemu} --seed {seed} --runs 1`, shrunk in {} steps from {} parts to {}. {}",
        variant.name(),
        shrunk.steps,
        size_before.0,
        size(&scenario).0,
        sim.violations.iter().map(|v| format!("{}: {}.", v.property, v.detail)).collect::<Vec<_>>().join(" ")
    );
    scenario.expect = Some(expect_of(&sim));
    write_scenario(&path, &scenario)?;
    Ok(Finding { seed, property, path, size_before, size_after: size(&scenario), shrunk })
}

/// The `[expect]` a recorded finding replays: the run's outcome, trace hash, violated properties
/// (sorted) and verdict.
pub fn expect_of(sim: &Sim) -> Spanned<Expect> {
    let mut violates: Vec<String> = sim.violations.iter().map(|v| v.property.name().to_string()).collect();
    violates.sort();
    Spanned::new(
        0..0,
        Expect {
            outcome: sim.outcome.class().name().to_string(),
            trace_hash: Some(format!("{:016x}", sim.trace_hash)),
            violates,
            verdict: Some(sim.judgement.verdict.name().to_string()),
            ..Expect::default()
        },
    )
}

/// A hazard of QEMU's own, found by a faithful campaign, shrunk and written as a scenario.
#[derive(Clone, Debug)]
pub struct HazardFound {
    pub seed: u64,
    pub hazard: Hazard,
    pub path: PathBuf,
    pub size_before: (usize, u64),
    pub size_after: (usize, u64),
    pub shrunk: Shrunk,
}

/// Writes, shrinks and rewrites the faithful seed that shows `hazard` on `qemu`, under `dir`,
/// with the release on both sides and the expected verdict and source status.
pub fn record_hazard(seed: u64, qemu: QemuVersion, hazard: Hazard, dir: &Path, budget: Duration) -> std::io::Result<HazardFound> {
    let mut scenario = generate_on(seed, Variant::Faithful, qemu);
    scenario.source.qemu = Some(qemu);
    let path = dir.join(format!("qemu-{qemu}-{}-seed{seed}.toml", hazard.name()));
    write_scenario(&path, &scenario)?;
    let size_before = size(&scenario);
    let shrunk = shrink_while(&scenario, &|sim: &Sim| hazards(sim).contains(&hazard), budget);
    scenario = shrunk.scenario.clone();
    let b = build(&loaded(scenario.clone())).expect("a shrunk scenario builds: shrinking only accepts those that do");
    let sim = simulate(&b);
    scenario.name = format!("hazard: {} on QEMU {qemu} (seed {seed}, shrunk)", hazard.name());
    scenario.description = format!(
        "Found by `vmemsim campaign --qemu {qemu} --seed {seed} --runs 1 --save-hazards DIR`, shrunk in {} steps from {} parts to {}. Verdict {}. Source: {}",
        shrunk.steps,
        size_before.0,
        size(&scenario).0,
        sim.judgement,
        sim.source.to_string().lines().next().unwrap_or_default().trim_start_matches("source: ")
    );
    scenario.expect = Some(Spanned::new(
        0..0,
        Expect {
            outcome: sim.outcome.class().name().to_string(),
            trace_hash: Some(format!("{:016x}", sim.trace_hash)),
            verdict: Some(sim.judgement.verdict.name().to_string()),
            source_status: Some(sim.source.status.name().to_string()),
            ..Expect::default()
        },
    ));
    write_scenario(&path, &scenario)?;
    Ok(HazardFound { seed, hazard, path, size_before, size_after: size(&scenario), shrunk })
}
