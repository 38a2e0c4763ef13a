//! Runs a scenario on the model: the destination starts, the stream flows, the guest runs.
//! Every step is a stable trace line; the trace's hash proves determinism.

use vmemsim_model::migration::drive;
use vmemsim_model::migration::outcome::{FaultSite, Stage};
use vmemsim_model::{Outcome, OutcomeClass, Vm};

use crate::build::{build, Built};
use crate::error::SimError;
use crate::load::Loaded;

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub trace: Vec<String>,
    pub trace_hash: u64,
}

/// 64-bit FNV-1a: stable across machines, Rust versions and runs (std's hasher is not).
pub fn fnv1a(lines: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for line in lines {
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Describes both sides as migration starts: one line per side and per device.
fn setup_lines(b: &Built) -> Vec<String> {
    let side = |name: &str, machine: &str, backend: &vmemsim_model::Backend, variant| {
        format!(
            "{name} machine={machine} backend={} page={} capacity={} variant={variant}",
            backend.kind.name(),
            backend.page_size,
            backend.capacity.limit().map_or("unlimited".to_string(), |c| format!("{:#x}", c.0))
        )
    };
    let mut out = vec![side("source", b.source.machine.name(), &b.source.backend, b.source.variant)];
    for d in &b.source.devices {
        out.push(format!(
            "source {} ({}): region {} block {} requested {} plugged {} in {} runs, prealloc={} early-migration={}",
            d.id(),
            d.pci(),
            d.region_size(),
            d.block_size(),
            d.requested_size(),
            d.size(),
            d.plugged_runs().len(),
            d.prealloc(),
            d.early_migration()
        ));
    }
    let dst = &b.destination;
    out.push(side("destination", dst.machine.name(), &dst.backend, dst.variant));
    for d in &dst.devices {
        out.push(format!(
            "destination {} ({}): memaddr {} region {} block {} node {} prealloc={} x-early-migration={}",
            d.id,
            d.pci,
            d.memaddr,
            d.region_size,
            d.block_size.map_or("default".to_string(), |b| b.to_string()),
            d.node,
            d.prealloc,
            d.early_migration.map_or("machine-default".to_string(), |b| b.to_string())
        ));
    }
    out
}

/// Runs a built scenario on the model.
pub fn run_built(b: &Built) -> Report {
    let mut trace = setup_lines(b);
    let outcome = match Vm::realize(&b.destination) {
        Err(e) => Outcome::Failed { stage: Stage::Startup, lines: vec![e.to_string()] },
        Ok((dest, _pools)) => {
            let (outcome, items) = drive::migrate_traced(&b.source, dest, &b.plan);
            trace.extend(items);
            outcome
        }
    };
    trace.push(format!("outcome {} {}", outcome.class(), outcome.stage().map(|s| s.to_string()).unwrap_or_default()));
    let trace_hash = fnv1a(&trace);
    Report { outcome, trace, trace_hash }
}

/// Builds and runs a loaded scenario.
pub fn run(l: &Loaded) -> Result<Report, SimError> {
    Ok(run_built(&build(l)?))
}

fn fault_site(o: &Outcome) -> Option<&FaultSite> {
    match o {
        Outcome::Crashed { site, .. } | Outcome::RuntimeCrash { site, .. } => Some(site),
        _ => None,
    }
}

/// Compares a report with the scenario's `[expect]`; each difference is one line.
pub fn check_expectations(l: &Loaded, r: &Report) -> Result<Vec<String>, SimError> {
    let Some(expect) = &l.scenario.expect else { return Ok(Vec::new()) };
    let at = expect.span().start;
    let e = expect.get_ref();
    let mut diffs = Vec::new();
    let class = OutcomeClass::parse(&e.outcome).ok_or_else(|| {
        let names: Vec<&str> = OutcomeClass::ALL.iter().map(|c| c.name()).collect();
        l.invalid(at, "expect.outcome", format!("'{}' is not an outcome: one of {}", e.outcome, names.join(", ")))
    })?;
    if class != r.outcome.class() {
        diffs.push(format!("outcome: expected {class}, got {}", r.outcome.class()));
    }
    if let Some(stage) = &e.stage {
        let got = r.outcome.stage().map(|s| s.to_string()).unwrap_or_default();
        if &got != stage {
            diffs.push(format!("stage: expected '{stage}', got '{got}'"));
        }
    }
    if let Some(stderr) = &e.stderr {
        let got = r.outcome.stderr();
        if &got != stderr {
            diffs.push(format!("stderr: expected {stderr:#?}, got {got:#?}"));
        }
    }
    if let Some(fault) = &e.fault {
        let got = fault_site(&r.outcome).map(|s| format!("{}+{:#x}", s.block, s.offset.0)).unwrap_or_default();
        if &got != fault {
            diffs.push(format!("fault: expected '{fault}', got '{got}'"));
        }
    }
    if let Some(hash) = &e.trace_hash {
        let got = format!("{:016x}", r.trace_hash);
        if &got != hash {
            diffs.push(format!("trace_hash: expected {hash}, got {got}"));
        }
    }
    Ok(diffs)
}
