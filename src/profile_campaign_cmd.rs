//! `vmemsim campaign --vmm cloud-hypervisor-v53.0|firecracker-v1.16.1`: the generator's
//! scenarios on a non-QEMU profile, its tables, and each broken neutral property's first seed
//! shrunk into `scenarios/profiles/<vmm>/`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use vmemsim_model::vmm::Vmm;
use vmemsim_sim::profile_campaign::{campaign, record};
use vmemsim_sim::profile_run::NEUTRAL;

use crate::format::{print_doc, Format};

pub struct Args {
    pub vmm: Vmm,
    pub seed: u64,
    pub runs: Option<u64>,
    pub threads: usize,
    pub time: Option<Duration>,
    /// Default: `scenarios/profiles/<vmm family>`.
    pub found_dir: Option<PathBuf>,
    pub shrink_time: Duration,
    pub shrink: bool,
    pub format: Format,
}

#[derive(Serialize)]
struct Property {
    name: &'static str,
    runs: u64,
    first_seed: Option<u64>,
    file: Option<String>,
}

#[derive(Serialize)]
struct Doc {
    schema: &'static str,
    command: &'static str,
    mode: &'static str,
    exit_code: u8,
    vmm: String,
    runs: u64,
    seconds: f64,
    by_class: Vec<(&'static str, u64)>,
    by_verdict: Vec<(&'static str, u64)>,
    not_expressible: Vec<(&'static str, u64)>,
    properties: Vec<Property>,
    build_errors: Vec<String>,
}

/// Exit 1 when a neutral property is broken, 0 otherwise.
pub fn run(a: Args) -> Result<ExitCode, String> {
    let sum = campaign(a.vmm, a.seed, a.runs, a.threads, a.time);
    if !sum.build_errors.is_empty() {
        let (s, e) = &sum.build_errors[0];
        return Err(format!("{} generated scenarios do not build (a generator bug), the first: seed {s}: {e}", sum.build_errors.len()));
    }
    let dir = a.found_dir.unwrap_or_else(|| PathBuf::from("scenarios/profiles").join(a.vmm.family()));
    let mut properties = Vec::new();
    for name in NEUTRAL {
        let hit = sum.by_property.get(name).copied();
        let file = match hit {
            Some((_, seed)) if a.shrink => Some(record(seed, a.vmm, name, &dir, a.shrink_time).map_err(|e| format!("writing the finding under {}: {e}", dir.display()))?.path.display().to_string()),
            _ => None,
        };
        properties.push(Property { name, runs: hit.map_or(0, |h| h.0), first_seed: hit.map(|h| h.1), file });
    }
    let code = u8::from(properties.iter().any(|p| p.runs > 0));
    let secs = sum.elapsed.as_secs_f64();
    if a.format.json() {
        print_doc(&Doc {
            schema: "vmemsim/1",
            command: "campaign",
            mode: "profile",
            exit_code: code,
            vmm: a.vmm.to_string(),
            runs: sum.runs,
            seconds: secs,
            by_class: sum.by_class.into_iter().collect(),
            by_verdict: sum.by_verdict.into_iter().collect(),
            not_expressible: sum.not_expressible.into_iter().collect(),
            properties,
            build_errors: Vec::new(),
        });
        return Ok(ExitCode::from(code));
    }
    let ran: u64 = sum.by_class.values().sum();
    out!("campaign on {}: {} runs in {secs:.1} s ({:.0} runs/s), {ran} expressible", a.vmm, sum.runs, sum.runs as f64 / secs.max(1e-9));
    for (title, table) in [("outcome", &sum.by_class), ("verdict", &sum.by_verdict), ("not expressible", &sum.not_expressible)] {
        out!("{title}:");
        for (k, n) in table {
            out!("  {k:<20} {n}");
        }
    }
    out!("neutral properties:");
    for p in &properties {
        match (p.first_seed, &p.file) {
            (None, _) => out!("  {:<24} held", p.name),
            (Some(s), Some(f)) => out!("  {:<24} broken in {} runs, first seed {s}, shrunk: {f}", p.name, p.runs),
            (Some(s), None) => out!("  {:<24} broken in {} runs, first seed {s}", p.name, p.runs),
        }
    }
    Ok(ExitCode::from(code))
}
