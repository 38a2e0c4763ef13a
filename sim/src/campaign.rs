//! Campaigns: many seeds over all cores. Results are collected per seed and sorted, so they do
//! not depend on the thread count; shards split the seed space so that the union of shards is
//! one big run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::{QemuVersion, Variant};

use crate::build::{build, Built};
use crate::coverage::{self, Points};
use crate::guide::{self, Weights};
use crate::engine::{simulate, Sim};
use crate::gen::{generate_on, swarm, FaultKind};
use crate::hazards::{hazards, Hazard};
use crate::load::Loaded;
use crate::properties::Property;
use crate::scenario::Scenario;

/// `--shard i/n`: this process runs the seeds whose index is `i` modulo `n`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// How many of a campaign's `runs` seed indices this shard runs (those equal to its index
    /// modulo the count).
    pub fn share(self, runs: u64) -> u64 {
        runs / self.count + u64::from(runs % self.count > self.index)
    }

    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("'{s}' is not a shard: write i/n with 0 <= i < n, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// What a campaign runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// How many seed indices (before sharding); `None`: until `time` runs out.
    pub runs: Option<u64>,
    /// The first seed.
    pub seed: u64,
    pub threads: usize,
    pub shard: Shard,
    pub variant: Variant,
    /// The QEMU release on both sides.
    pub qemu: QemuVersion,
    pub time: Option<Duration>,
    /// Stop at the first finding: every seed before it still runs, so the first finding is the
    /// same whatever the thread count.
    pub stop_on_finding: bool,
    /// Steer the swarm toward rarely reached points (`guide.rs`); one shard only.
    pub guided: bool,
    /// A state to search for: a run that reaches it counts as a finding. Tests plant rare bugs
    /// with it; the command line has none.
    pub target: Option<Target>,
}

/// A planted bug: true when a run reaches the state it looks for.
pub type Target = fn(&Built, &Sim) -> bool;

/// The result of one seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedResult {
    pub seed: u64,
    /// The outcome class, or why the generated scenario could not be built (a generator bug).
    pub class: Result<String, String>,
    /// The verdict over both sides (None when the scenario could not be built).
    pub verdict: Option<Verdict>,
    pub violations: Vec<Property>,
    /// QEMU's own hazards the run shows.
    pub hazards: Vec<Hazard>,
    pub faults: Vec<FaultKind>,
    /// The coverage points the run reached.
    pub points: Points,
    /// It reached [`Options::target`].
    pub hit_target: bool,
}

/// How many seeds a row of a campaign's tables counts, and the lowest few of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    /// The lowest [`Tally::EXAMPLES`] seeds, ascending.
    pub examples: Vec<u64>,
}

impl Tally {
    /// How many example seeds a row keeps.
    pub const EXAMPLES: usize = 3;

    /// Counts a seed; seeds come in ascending order, so the first ones are the lowest.
    pub fn add(&mut self, seed: u64) {
        self.count += 1;
        if self.examples.len() < Tally::EXAMPLES {
            self.examples.push(seed);
        }
    }

    /// The lowest seed.
    pub fn first(&self) -> u64 {
        self.examples[0]
    }
}

/// A campaign's summary, in seed order.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub runs: u64,
    /// Runs per outcome class (by name).
    pub by_class: BTreeMap<String, Tally>,
    /// Violations per property.
    pub by_property: BTreeMap<Property, Tally>,
    /// Runs per verdict.
    pub by_verdict: BTreeMap<Verdict, Tally>,
    /// Runs per QEMU hazard.
    pub by_hazard: BTreeMap<Hazard, Tally>,
    /// Runs per coverage point, by its number (`coverage::points`).
    pub by_point: Vec<Tally>,
    /// With `--guided`: the weights the last epoch ran with.
    pub weights: Option<Weights>,
    pub generator_errors: Vec<(u64, String)>,
    /// Seeds with at least one violation, ascending.
    pub findings: Vec<u64>,
    pub elapsed: Duration,
}

/// A generated scenario as if loaded from a file named after its seed.
pub fn loaded(scenario: Scenario) -> Loaded {
    Loaded { path: format!("<seed {}>", scenario.seed).into(), text: String::new(), scenario }
}

/// Generates, builds and simulates one seed.
pub fn run_seed(seed: u64, variant: Variant) -> (SeedResult, Option<Sim>) {
    run_seed_on(seed, variant, QemuVersion::DEFAULT)
}

/// [`run_seed`] on a QEMU release.
pub fn run_seed_on(seed: u64, variant: Variant, qemu: QemuVersion) -> (SeedResult, Option<Sim>) {
    run_seed_for(seed, variant, qemu, None)
}

/// [`run_seed_on`], looking for `target`.
fn run_seed_for(seed: u64, variant: Variant, qemu: QemuVersion, target: Option<Target>) -> (SeedResult, Option<Sim>) {
    let l = loaded(generate_on(seed, variant, qemu));
    let faults = swarm(seed);
    match build(&l) {
        Err(e) => (SeedResult { seed, class: Err(e.to_string()), verdict: None, violations: vec![], hazards: vec![], faults, points: Points::default(), hit_target: false }, None),
        Ok(b) => {
            let sim = simulate(&b);
            let violations = sim.violations.iter().map(|v| v.property).collect();
            let verdict = Some(sim.judgement.verdict);
            let hazards = hazards(&sim);
            let points = coverage::reached(&sim, &faults, &hazards);
            let hit_target = target.is_some_and(|t| t(&b, &sim));
            (SeedResult { seed, class: Ok(sim.outcome.class().name().to_string()), verdict, violations, hazards, faults, points, hit_target }, Some(sim))
        }
    }
}

impl SeedResult {
    /// A violation, or the planted target reached.
    pub fn is_finding(&self) -> bool {
        !self.violations.is_empty() || self.hit_target
    }
}

/// The seeds of a campaign, in order.
pub fn seeds(opts: &Options, index: u64) -> u64 {
    opts.seed.wrapping_add(index * opts.shard.count + opts.shard.index)
}

/// Runs a campaign; `progress(done, findings)` is called from the workers now and then.
pub fn campaign(opts: &Options, progress: &(dyn Fn(u64, u64) + Sync)) -> Summary {
    if opts.guided {
        return guided(opts, progress);
    }
    let start = Instant::now();
    let total = opts.runs.map(|r| opts.shard.share(r));
    let next = AtomicU64::new(0);
    let findings = AtomicU64::new(0);
    let first_finding = AtomicU64::new(u64::MAX);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..opts.threads.max(1) {
            scope.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    if opts.time.is_some_and(|t| start.elapsed() >= t) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if total.is_some_and(|t| i >= t) || i > first_finding.load(Ordering::Relaxed) {
                        break;
                    }
                    let (r, _) = run_seed_for(seeds(opts, i), opts.variant, opts.qemu, opts.target);
                    if r.is_finding() {
                        findings.fetch_add(1, Ordering::Relaxed);
                        if opts.stop_on_finding {
                            first_finding.fetch_min(i, Ordering::Relaxed);
                        }
                    }
                    mine.push(r);
                    if mine.len() % 64 == 0 {
                        progress(next.load(Ordering::Relaxed).min(total.unwrap_or(u64::MAX)), findings.load(Ordering::Relaxed));
                    }
                }
                results.lock().expect("no worker panics while holding the lock").extend(mine);
            });
        }
    });
    let mut results = results.into_inner().expect("workers finished");
    results.sort_by_key(|r| r.seed);
    // Seeds after the first finding ran only by the race of the workers: drop them.
    let cut = first_finding.load(Ordering::Relaxed);
    if cut != u64::MAX {
        let last = seeds(opts, cut);
        results.retain(|r| r.seed <= last);
    }
    summarize(&results, start.elapsed())
}

/// A campaign's tables from its results in seed order.
fn summarize(results: &[SeedResult], elapsed: Duration) -> Summary {
    let mut s = Summary { runs: results.len() as u64, elapsed, by_point: vec![Tally::default(); coverage::COUNT], ..Summary::default() };
    for r in results {
        match &r.class {
            Ok(c) => s.by_class.entry(c.clone()).or_default().add(r.seed),
            Err(e) => s.generator_errors.push((r.seed, e.clone())),
        }
        for p in &r.violations {
            s.by_property.entry(*p).or_default().add(r.seed);
        }
        if let Some(v) = r.verdict {
            s.by_verdict.entry(v).or_default().add(r.seed);
        }
        for h in &r.hazards {
            s.by_hazard.entry(*h).or_default().add(r.seed);
        }
        for p in r.points.iter() {
            s.by_point[p].add(r.seed);
        }
        if r.is_finding() {
            s.findings.push(r.seed);
        }
    }
    s
}

/// `--guided`: epochs of [`guide::EPOCH`] runs, each over the candidates the weights accept,
/// the weights steered between epochs. Every thread takes runs from the epoch's list, so the
/// result does not depend on the thread count.
fn guided(opts: &Options, progress: &(dyn Fn(u64, u64) + Sync)) -> Summary {
    assert_eq!(opts.shard, Shard::WHOLE, "the command line refuses --guided with --shard");
    let start = Instant::now();
    let mut weights = Weights::default();
    let mut counts = vec![0u64; coverage::COUNT];
    let mut results: Vec<SeedResult> = Vec::new();
    let mut candidate = opts.seed;
    let findings = AtomicU64::new(0);
    loop {
        let done = results.len() as u64;
        let n = opts.runs.map_or(guide::EPOCH, |r| r.saturating_sub(done).min(guide::EPOCH));
        if n == 0 || opts.time.is_some_and(|t| start.elapsed() >= t) {
            break;
        }
        let mut batch = Vec::with_capacity(n as usize);
        while (batch.len() as u64) < n {
            if guide::accepts(candidate, &weights) {
                batch.push(candidate);
            }
            candidate = candidate.wrapping_add(1);
        }
        let next = AtomicU64::new(0);
        let ran = Mutex::new(Vec::with_capacity(batch.len()));
        std::thread::scope(|scope| {
            for _ in 0..opts.threads.max(1) {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some(&seed) = batch.get(i) else { break };
                        let (r, _) = run_seed_for(seed, opts.variant, opts.qemu, opts.target);
                        if r.is_finding() {
                            findings.fetch_add(1, Ordering::Relaxed);
                        }
                        mine.push((i, r));
                        if mine.len() % 64 == 0 {
                            progress(done + next.load(Ordering::Relaxed).min(n), findings.load(Ordering::Relaxed));
                        }
                    }
                    ran.lock().expect("no worker panics while holding the lock").extend(mine);
                });
            }
        });
        let mut ran = ran.into_inner().expect("workers finished");
        ran.sort_by_key(|(i, _)| *i);
        let mut epoch: Vec<SeedResult> = ran.into_iter().map(|(_, r)| r).collect();
        if opts.stop_on_finding {
            if let Some(first) = epoch.iter().position(SeedResult::is_finding) {
                epoch.truncate(first + 1);
                results.extend(epoch);
                break;
            }
        }
        for r in &epoch {
            for p in r.points.iter() {
                counts[p] += 1;
            }
        }
        let seen: Vec<guide::Seen> = epoch.iter().map(|r| guide::Seen { faults: &r.faults, points: &r.points }).collect();
        let steered = guide::steer(&counts, &seen);
        results.extend(epoch);
        weights = steered;
    }
    let mut s = summarize(&results, start.elapsed());
    s.weights = Some(weights);
    s
}

/// Writes a scenario as TOML.
pub fn write_scenario(path: &Path, scenario: &Scenario) -> std::io::Result<()> {
    let text = toml::to_string(scenario).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}
