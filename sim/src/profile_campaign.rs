//! Campaigns on a Cloud Hypervisor or Firecracker profile: the generator's scenarios, each run
//! by the profile's rules (`profile_run`), tallied by outcome, verdict and VMM-neutral
//! property; the first seed of each broken property is shrunk while the profile still breaks it
//! and written with the QEMU run's expectation (so `cargo test` replays it) under
//! `scenarios/profiles/<vmm>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vmemsim_model::vmm::Vmm;
use vmemsim_model::Variant;

use crate::build::build;
use crate::campaign::{loaded, write_scenario};
use crate::engine::simulate;
use crate::gen::generate;
use crate::profile_run::{run_profile, NEUTRAL};
use crate::scenario::Scenario;
use crate::shrink::{shrink_scenario, size};

/// One seed on one profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeedRun {
    /// The generated scenario does not build (a generator bug: none expected).
    BuildError(String),
    /// The profile cannot express it: the refusal's kind.
    NotExpressible(&'static str),
    Ran { class: &'static str, verdict: &'static str, violations: Vec<&'static str> },
}

/// Generates, builds and runs `seed` on `vmm`.
pub fn run_seed(seed: u64, vmm: Vmm) -> SeedRun {
    let l = loaded(generate(seed, Variant::Faithful));
    let b = match build(&l) {
        Ok(b) => b,
        Err(e) => return SeedRun::BuildError(e.to_string()),
    };
    match run_profile(&l, &b, vmm) {
        Err(why) => SeedRun::NotExpressible(why.kind.name()),
        Ok(r) => SeedRun::Ran { class: r.outcome.class().name(), verdict: r.verdict.name(), violations: r.violations.iter().map(|v| v.0).collect() },
    }
}

/// A profile campaign's tables.
#[derive(Clone, Debug, Default)]
pub struct ProfileSummary {
    pub runs: u64,
    pub not_expressible: BTreeMap<&'static str, u64>,
    pub by_class: BTreeMap<&'static str, u64>,
    pub by_verdict: BTreeMap<&'static str, u64>,
    /// Per neutral property: runs that break it and the first seed.
    pub by_property: BTreeMap<&'static str, (u64, u64)>,
    pub build_errors: Vec<(u64, String)>,
    pub elapsed: Duration,
}

/// Seeds `seed..seed+runs` (or until `time`) on `threads` workers; the tables do not depend
/// on the thread count.
pub fn campaign(vmm: Vmm, seed: u64, runs: Option<u64>, threads: usize, time: Option<Duration>) -> ProfileSummary {
    assert!(vmm.qemu().is_none(), "QEMU campaigns run in campaign::campaign");
    let start = Instant::now();
    let next = AtomicU64::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    if time.is_some_and(|t| start.elapsed() >= t) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if runs.is_some_and(|r| i >= r) {
                        break;
                    }
                    let s = seed.wrapping_add(i);
                    mine.push((s, run_seed(s, vmm)));
                }
                results.lock().expect("no worker panics while holding the lock").extend(mine);
            });
        }
    });
    let mut results = results.into_inner().expect("workers finished");
    results.sort_by_key(|r| r.0);
    let mut sum = ProfileSummary { runs: results.len() as u64, elapsed: start.elapsed(), ..ProfileSummary::default() };
    for (s, r) in results {
        match r {
            SeedRun::BuildError(e) => sum.build_errors.push((s, e)),
            SeedRun::NotExpressible(k) => *sum.not_expressible.entry(k).or_default() += 1,
            SeedRun::Ran { class, verdict, violations } => {
                *sum.by_class.entry(class).or_default() += 1;
                *sum.by_verdict.entry(verdict).or_default() += 1;
                for p in violations {
                    sum.by_property.entry(p).or_insert((0, s)).0 += 1;
                }
            }
        }
    }
    sum
}

/// Whether `s` still breaks `property` on `vmm`.
fn still_breaks(s: &Scenario, vmm: Vmm, property: &str) -> bool {
    let l = loaded(s.clone());
    build(&l).ok().and_then(|b| run_profile(&l, &b, vmm).ok()).is_some_and(|r| r.violations.iter().any(|v| v.0 == property))
}

/// A shrunk finding, written.
#[derive(Clone, Debug)]
pub struct ProfileFinding {
    pub seed: u64,
    pub property: &'static str,
    pub path: PathBuf,
    pub parts_before: usize,
    pub parts_after: usize,
    pub detail: String,
}

/// Shrinks the generated scenario of `seed` while `vmm` still breaks `property`, and writes it
/// under `dir` with the QEMU run's expectation and, in its description, the profile's detail.
pub fn record(seed: u64, vmm: Vmm, property: &'static str, dir: &Path, budget: Duration) -> std::io::Result<ProfileFinding> {
    assert!(NEUTRAL.contains(&property));
    let first = generate(seed, Variant::Faithful);
    let shrunk = shrink_scenario(&first, &|c| still_breaks(c, vmm, property), budget);
    let mut scenario = shrunk.scenario;
    let l = loaded(scenario.clone());
    let b = build(&l).expect("a shrunk scenario builds: shrinking only accepts those that do");
    let run = run_profile(&l, &b, vmm).expect("the shrunk scenario still runs on the profile");
    let detail = run.violations.iter().find(|v| v.0 == property).map(|v| v.1.clone()).expect("still breaks the property");
    let sim = simulate(&b);
    scenario.name = format!("found on {vmm}: {property} (seed {seed}, shrunk)");
    scenario.description = format!(
        "Found by `vmemsim campaign --vmm {vmm} --seed {seed} --runs 1`, shrunk in {} steps from {} parts to {}; `vmemsim diff FILE --vmm qemu-10.0.2,{vmm}` shows it. On {vmm}: {detail}. The [expect] is QEMU's run of the same scenario.",
        shrunk.steps,
        size(&first).0,
        size(&scenario).0,
    );
    scenario.expect = Some(crate::found::expect_of(&sim));
    let path = dir.join(format!("{vmm}-{property}-seed{seed}.toml"));
    std::fs::create_dir_all(dir)?;
    write_scenario(&path, &scenario)?;
    Ok(ProfileFinding { seed, property, path, parts_before: size(&first).0, parts_after: size(&scenario).0, detail })
}
