//! `vmemsim campaign`: runs many seeds, shows progress, prints the summary, records findings.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use vmemsim_model::Variant;
use vmemsim_sim::campaign::{campaign, run_seed_on, seeds, Options, Shard, Summary};
use vmemsim_sim::found::{record, record_hazard};
use vmemsim_sim::gen::generate_on;
use vmemsim_sim::report::campaign_doc::{seed_command, CampaignDoc, FindingDoc, RowDoc, ShownDoc};
use vmemsim_sim::report::junit::{self, Case, Problem};
use vmemsim_sim::report::result_lines;
use vmemsim_sim::Property;

use crate::format::{print_doc, Format};

pub struct Args {
    pub options: Options,
    pub found_dir: PathBuf,
    pub shrink_time: Duration,
    pub shrink: bool,
    pub save_hazards: Option<PathBuf>,
    pub show: bool,
    pub junit: Option<PathBuf>,
    pub format: Format,
}

/// One table of counts: each row with its lowest seeds, and the command that shows the first.
fn counts_table(what: &str, counted: &str, rows: &[RowDoc]) {
    out!("{:<28} {:>10}  {}", what, counted, "lowest seeds");
    for r in rows {
        match r.examples.first() {
            Some(first) => {
                let seeds: Vec<String> = r.examples.iter().map(|e| e.seed.to_string()).collect();
                out!("{:<28} {:>10}  {}", r.name, r.count, seeds.join(", "));
                out!("{:<28} {:>10}    {}", "", "", first.command);
            }
            None => out!("{:<28} {:>10}", r.name, r.count),
        }
    }
}

/// The campaign's first line: what ran, how long, how fast.
pub fn header(d: &CampaignDoc) -> String {
    let o = &d.options;
    format!(
        "campaign: {} runs from seed {}, shard {}/{}, variant {}, {} thread{}, {:.3} s ({:.0} runs/s)",
        d.runs,
        o.seed,
        o.shard.index,
        o.shard.count,
        o.variant,
        o.threads,
        if o.threads == 1 { "" } else { "s" },
        d.elapsed_s,
        d.runs_per_s
    )
}

/// The tables of a campaign's document (a run's or merged shards'), and its generator errors.
pub fn print_tables(d: &CampaignDoc) {
    out!("");
    counts_table("outcome", "runs", &d.outcomes);
    out!("");
    counts_table("verdict", "runs", &d.verdicts);
    out!("");
    counts_table("QEMU hazard", "runs", &d.hazards);
    out!("");
    counts_table("property", "violations", &d.properties);
    out!("");
    coverage_table(d);
    if !d.generator_errors.is_empty() {
        out!("");
        out!("generator errors (a bug in vmemsim): {}", d.generator_errors.len());
        for e in d.generator_errors.iter().take(5) {
            out!("  seed {}: {}", e.seed, e.error);
        }
    }
}

/// The coverage points reached, by group, with the lowest seed of each; the points never
/// reached; the sometimes assertions; a guided campaign's last weights.
fn coverage_table(d: &CampaignDoc) {
    let reached = d.coverage.iter().filter(|r| r.count > 0).count();
    out!("coverage: {reached} of {} points reached", d.coverage.len());
    out!("{:<52} {:>10}  {}", "point", "runs", "lowest seed");
    let mut group = "";
    let mut never: Vec<(&str, &str)> = Vec::new();
    for r in &d.coverage {
        let (g, name) = r.name.split_once(": ").unwrap_or(("", r.name.as_str()));
        if r.count == 0 {
            never.push((g, name));
            continue;
        }
        if g != group {
            out!("{g}");
            group = g;
        }
        let first = r.examples.first().map(|e| e.seed.to_string()).unwrap_or_default();
        out!("  {:<50} {:>10}  {first}", name, r.count);
    }
    if !never.is_empty() {
        out!("never reached ({}):", never.len());
        let mut at = 0;
        while at < never.len() {
            let g = never[at].0;
            let names: Vec<&str> = never[at..].iter().take_while(|(h, _)| *h == g).map(|(_, n)| *n).collect();
            at += names.len();
            out!("  {g}: {}", names.join("; "));
        }
    }
    out!("");
    let faithful = d.options.variant == Variant::Faithful.name();
    match d.sometimes.first() {
        Some(_) if !faithful => out!("sometimes (bind the faithful model only; this variant removes rules on purpose):"),
        Some(s) if d.runs < s.enforced_from => out!("sometimes (must be reached; enforced from {} runs, not in these {}):", s.enforced_from, d.runs),
        _ => out!("sometimes (must be reached at least once):"),
    }
    for s in &d.sometimes {
        let verdict = if s.count > 0 { "reached" } else if s.holds { "not yet" } else { "NEVER REACHED" };
        out!("  {:<62} {:>8}  {verdict}: {}", s.point, s.count, s.why);
    }
    if !d.weights.is_empty() {
        out!("");
        let w: Vec<String> = d.weights.iter().map(|w| format!("{} {:.2}", w.fault, w.weight)).collect();
        out!("guided: the last epoch's chance per fault kind: {}", w.join(", "));
    }
}

/// The most seeds `--show` prints.
const SHOW_MAX: u64 = 100;

/// `--show`: each seed's scenario as TOML, with its result as comments, so the output is a
/// file `vmemsim run` takes.
fn show(o: &Options) -> Result<Vec<ShownDoc>, String> {
    let runs = o.runs.filter(|r| *r <= SHOW_MAX).ok_or_else(|| format!("--show prints every scenario: give --runs {SHOW_MAX} or fewer"))?;
    let count = o.shard.share(runs);
    let mut shown = Vec::new();
    for i in 0..count {
        let seed = seeds(o, i);
        let scenario = generate_on(seed, o.variant, o.qemu);
        let text = toml::to_string(&scenario).map_err(|e| format!("seed {seed}: cannot write the scenario: {e}"))?;
        let (r, sim) = run_seed_on(seed, o.variant, o.qemu);
        let mut result = match (&r.class, &sim) {
            (Ok(_), Some(sim)) => result_lines(sim),
            (Err(e), _) | (Ok(e), None) => vec![format!("does not build: {e}")],
        };
        result.insert(0, format!("{} (seed {seed}):", seed_command(o, seed)));
        shown.push(ShownDoc { seed, scenario: text, result });
    }
    Ok(shown)
}

/// Runs the campaign: exit 0 when it found nothing, 1 on a finding, 2 on a generator bug.
pub fn run(args: Args) -> Result<ExitCode, String> {
    let o = &args.options;
    let json = args.format.json();
    let shown = if args.show { show(o)? } else { Vec::new() };
    if args.show && !json {
        for (i, s) in shown.iter().enumerate() {
            if i > 0 {
                out!("");
            }
            out_raw!("{}", s.scenario);
            for l in &s.result {
                out!("# {l}");
            }
        }
    }
    let tty = std::io::stderr().is_terminal() && !args.show;
    let bar = ProgressBar::with_draw_target(o.runs.map(|r| o.shard.share(r)), if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} runs, {rate}, findings: {msg}")
            .map_err(|e| e.to_string())?
            .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} runs/s", state.per_sec());
            })
            .progress_chars("=> "),
    );
    bar.set_message("0");
    let last_line = Mutex::new(Instant::now());
    let start = Instant::now();
    let progress = |done: u64, findings: u64| {
        if tty {
            bar.set_position(done);
            bar.set_message(findings.to_string());
        } else if args.show {
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
    if !json && !args.show {
        let doc = CampaignDoc::new(o, &summary, Vec::new(), 0);
        out!("{}", header(&doc));
        print_tables(&doc);
    }
    let bug = !summary.generator_errors.is_empty();
    if let Some(dir) = &args.save_hazards {
        if !bug {
            save_hazards(o, &summary, dir, args.shrink_time, json)?;
        }
    }
    let mut findings = Vec::new();
    if !summary.findings.is_empty() && !bug {
        if !json {
            out!("");
            out!("findings: {} seed{} violate a property", summary.findings.len(), if summary.findings.len() == 1 { "" } else { "s" });
        }
        for (p, t) in &summary.by_property {
            let seed = t.first();
            let unshrunk = seed_command(o, seed);
            if !json {
                out!("  {p}: first at seed {seed}; unshrunk: {unshrunk}");
            }
            if !args.shrink {
                findings.push(FindingDoc { property: p.name().to_string(), seed, file: None, replay: unshrunk, parts_before: None, parts_after: None });
                continue;
            }
            let f = record(seed, o.variant, o.qemu, *p, &args.found_dir, args.shrink_time).map_err(|e| format!("cannot write the finding: {e}"))?;
            if !json {
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
            let (before, after) = (f.size_before.0, f.size_after.0);
            findings.push(FindingDoc { property: p.name().to_string(), seed, file: Some(f.path.display().to_string()), replay: f.replay_command(), parts_before: Some(before), parts_after: Some(after) });
        }
    }
    let unreached: Vec<String> = CampaignDoc::new(o, &summary, Vec::new(), 0).unreached().map(|s| s.point.clone()).collect();
    if !unreached.is_empty() && !json && !args.show {
        out!("");
        out!("sometimes assertions fail: never reached {}", unreached.join("; "));
    }
    let code = if bug { 2 } else { u8::from(!summary.findings.is_empty() || !unreached.is_empty()) };
    if let Some(path) = &args.junit {
        std::fs::write(path, junit_of(o, &summary)).map_err(|e| format!("{}: cannot write the JUnit file: {e}", path.display()))?;
    }
    if json {
        let mut doc = CampaignDoc::new(o, &summary, findings, code);
        doc.shown = shown;
        print_doc(&doc);
    } else if bug {
        eprintln!("error: {} generated scenarios did not build: a bug in the generator", summary.generator_errors.len());
    }
    Ok(ExitCode::from(code))
}

/// The campaign as JUnit: a case per property, failing with its seeds when violated, and one
/// for the generator, in error when a generated scenario did not build.
fn junit_of(o: &Options, s: &Summary) -> String {
    let secs = s.elapsed.as_secs_f64();
    let mut cases = Vec::new();
    for p in Property::ALL {
        let mut case = Case::new("vmemsim.campaign", p.name(), 0.0);
        if let Some(t) = s.by_property.get(&p) {
            let lines: Vec<String> = t.examples.iter().map(|&seed| seed_command(o, seed)).collect();
            case.failure = Some(Problem { message: format!("{} of {} runs violate {p}", t.count, s.runs), kind: "property".into(), text: lines.join("\n") });
        }
        cases.push(case);
    }
    for st in CampaignDoc::new(o, s, Vec::new(), 0).sometimes {
        let mut case = Case::new("vmemsim.campaign.sometimes", &st.point, 0.0);
        if !st.holds {
            case.failure = Some(Problem { message: format!("never reached in {} runs: {}", s.runs, st.why), kind: "sometimes".into(), text: String::new() });
        }
        cases.push(case);
    }
    let mut generator = Case::new("vmemsim.campaign", "generated scenarios build", 0.0);
    if let Some((seed, e)) = s.generator_errors.first() {
        generator.error = Some(Problem { message: format!("{} generated scenarios did not build", s.generator_errors.len()), kind: "generator".into(), text: format!("seed {seed}: {e}") });
    }
    cases.push(generator);
    if let Some(first) = cases.first_mut() {
        // The campaign's time, on its first case: the cases run together.
        first.time = format!("{secs:.3}");
    }
    junit::document(&format!("vmemsim campaign --variant {} --qemu {} --seed {} --runs {}", o.variant, o.qemu, o.seed, s.runs), cases)
}

/// Shrinks and writes the first seed of each hazard the campaign saw.
fn save_hazards(o: &Options, summary: &Summary, dir: &std::path::Path, budget: Duration, json: bool) -> Result<(), String> {
    if o.variant != Variant::Faithful {
        return Err("--save-hazards is for faithful campaigns: a variant's runs show the variant, not QEMU".into());
    }
    for (h, t) in &summary.by_hazard {
        let seed = t.first();
        let f = record_hazard(seed, o.qemu, *h, dir, budget).map_err(|e| format!("cannot write the hazard: {e}"))?;
        if json {
            continue;
        }
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
