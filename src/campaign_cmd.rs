//! `vmemsim campaign`: runs many seeds, shows progress, prints the summary, records findings.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::{OutcomeClass, Variant};
use vmemsim_sim::campaign::{campaign, Options, Shard, Summary};
use vmemsim_sim::found::{record, record_hazard};
use vmemsim_sim::hazards::Hazard;
use vmemsim_sim::Property;

pub struct Args {
    pub options: Options,
    pub found_dir: PathBuf,
    pub shrink_time: Duration,
    pub shrink: bool,
    pub save_hazards: Option<PathBuf>,
}

/// One table of counts with the first seed of each row.
fn counts_table<const N: usize>(what: &str, counted: &str, seed: &str, rows: [(&str, Option<(u64, u64)>); N]) {
    out!("{:<28} {:>10}  {}", what, counted, seed);
    for (name, entry) in rows {
        match entry {
            Some((n, seed)) => out!("{:<28} {:>10}  {seed}", name, n),
            None => out!("{:<28} {:>10}", name, 0),
        }
    }
}

fn print_summary(o: &Options, s: &Summary) {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    out!(
        "campaign: {} runs from seed {}, shard {}/{}, variant {}, {} threads, {:.3} s ({:.0} runs/s)",
        s.runs,
        o.seed,
        o.shard.index,
        o.shard.count,
        o.variant,
        o.threads,
        secs,
        s.runs as f64 / secs
    );
    out!("");
    out!("{:<28} {:>10}", "outcome", "runs");
    for c in OutcomeClass::ALL {
        out!("{:<28} {:>10}", c.name(), s.by_class.get(c.name()).copied().unwrap_or(0));
    }
    out!("");
    counts_table("verdict", "runs", "first seed (vmemsim campaign --seed S --runs 1)", Verdict::ALL.map(|v| (v.name(), s.by_verdict.get(&v).copied())));
    out!("");
    counts_table("QEMU hazard", "runs", "first seed", Hazard::ALL.map(|h| (h.name(), s.by_hazard.get(&h).copied())));
    out!("");
    counts_table("property", "violations", "first seed", Property::ALL.map(|p| (p.name(), s.by_property.get(&p).copied())));
    if !s.generator_errors.is_empty() {
        out!("");
        out!("generator errors (a bug in vmemsim): {}", s.generator_errors.len());
        for (seed, e) in s.generator_errors.iter().take(5) {
            out!("  seed {seed}: {e}");
        }
    }
}

/// Runs the campaign; returns whether it found anything.
pub fn run(args: Args) -> Result<bool, String> {
    let o = &args.options;
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(o.runs.map(|r| r / o.shard.count), if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} runs, {per_sec}, findings: {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    bar.set_message("0");
    let last_line = Mutex::new(Instant::now());
    let start = Instant::now();
    let progress = |done: u64, findings: u64| {
        if tty {
            bar.set_position(done);
            bar.set_message(findings.to_string());
        } else if let Ok(mut last) = last_line.try_lock() {
            if last.elapsed() >= Duration::from_secs(2) {
                *last = Instant::now();
                let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-9);
                eprintln!("progress: {done} runs, {rate:.0} runs/s, findings: {findings}");
            }
        }
    };
    let summary = campaign(o, &progress);
    bar.finish_and_clear();
    print_summary(o, &summary);
    if !summary.generator_errors.is_empty() {
        return Err(format!("{} generated scenarios did not build: a bug in the generator", summary.generator_errors.len()));
    }
    if let Some(dir) = &args.save_hazards {
        save_hazards(o, &summary, dir, args.shrink_time)?;
    }
    if summary.findings.is_empty() {
        return Ok(false);
    }
    out!("");
    out!("findings: {} seeds violate a property", summary.findings.len());
    for (p, (_, seed)) in &summary.by_property {
        out!("  {p}: first at seed {seed}; unshrunk replay: vmemsim campaign --variant {} --qemu {} --seed {seed} --runs 1", o.variant, o.qemu);
        if !args.shrink {
            continue;
        }
        let f = record(*seed, o.variant, o.qemu, *p, &args.found_dir, args.shrink_time).map_err(|e| format!("cannot write the finding: {e}"))?;
        out!(
            "    shrunk from {} parts to {} in {} steps ({:.2} s{}); replay: {}",
            f.size_before.0,
            f.size_after.0,
            f.shrunk.steps,
            f.shrunk.elapsed.as_secs_f64(),
            if f.shrunk.timed_out { ", budget reached" } else { "" },
            f.replay_command()
        );
    }
    Ok(true)
}

/// Shrinks and writes the first seed of each hazard the campaign saw.
fn save_hazards(o: &Options, summary: &Summary, dir: &std::path::Path, budget: Duration) -> Result<(), String> {
    if o.variant != Variant::Faithful {
        return Err("--save-hazards is for faithful campaigns: a variant's runs show the variant, not QEMU".into());
    }
    for (h, (_, seed)) in &summary.by_hazard {
        let f = record_hazard(*seed, o.qemu, *h, dir, budget).map_err(|e| format!("cannot write the hazard: {e}"))?;
        out!(
            "hazard {h} (seed {seed}): shrunk from {} parts to {} in {} steps; replay: vmemsim replay {}",
            f.size_before.0,
            f.size_after.0,
            f.shrunk.steps,
            f.path.display()
        );
    }
    Ok(())
}

pub fn parse_variant(s: &str) -> Result<Variant, String> {
    s.parse()
}

pub fn parse_shard(s: &str) -> Result<Shard, String> {
    Shard::parse(s)
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("'{s}' is not a duration (e.g. 30s, 2m, 500ms): {e}"))
}
