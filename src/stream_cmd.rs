//! `vmemsim analyze`, `vmemsim preflight` and `vmemsim encode`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vmemsim_model::wire::encode::encode_precopy;
use vmemsim_model::OutcomeClass;
use vmemsim_sim::stream::{analyze_json, backend_of, pretty, preflight_with as predict, read_events, summary, DestMemory};
use vmemsim_sim::{build, load};

pub fn analyze(file: &Path, people: bool) -> Result<ExitCode, String> {
    let events = read_events(file).map_err(|e| e.to_string())?;
    if people {
        out_raw!("{}", summary(&events));
    } else {
        out!("{}", pretty(&analyze_json(&events)));
    }
    Ok(ExitCode::SUCCESS)
}

/// `preflight`'s description of the destination.
pub struct Dest {
    pub backend: Option<String>,
    pub capacity: Option<String>,
    pub destination: Option<PathBuf>,
    pub host: bool,
    pub prealloc: Option<bool>,
}

pub fn preflight(file: &Path, d: Dest, machine: Option<&str>, qemu: vmemsim_model::QemuVersion) -> Result<ExitCode, String> {
    let mut said = Vec::new();
    let memory = match (&d.backend, &d.capacity, &d.destination) {
        (Some(b), Some(c), None) => DestMemory::One(backend_of(b, c)?),
        (_, _, Some(path)) => {
            let b = build(&load(path).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            let mut memory = b.destination.memory.clone();
            if d.host {
                said = vmemsim_sim::import::host::refresh(&mut memory);
            }
            // The scenario's own prealloc per device, unless --prealloc overrides it.
            let preallocs = b.destination.devices.iter().map(|x| (x.pci.clone(), d.prealloc.unwrap_or(x.prealloc))).collect();
            DestMemory::PerMemdev(memory, preallocs)
        }
        _ => return Err("describe the destination: --backend KIND --capacity SIZE, or --destination SCENARIO.toml [--host]".into()),
    };
    let events = read_events(file).map_err(|e| e.to_string())?;
    let p = predict(&events, memory, d.prealloc.unwrap_or(true), machine, &vmemsim_model::QemuProfile::of(qemu)).map_err(|e| format!("{}: {e}", file.display()))?;
    for s in &said {
        out!("read on this host: {s}");
    }
    out_raw!("{}", p.report);
    out_raw!("{}", p.outcome);
    let verdict = match p.outcome.class() {
        OutcomeClass::Completed => "safe: the restore completes",
        OutcomeClass::Failed => "not safe: the restore fails gracefully (nothing is lost but the migration)",
        OutcomeClass::Crashed => "NOT SAFE: the destination dies of SIGBUS while loading RAM",
        OutcomeClass::RuntimeCrash => "NOT SAFE: the guest can die of SIGBUS after the restore",
        OutcomeClass::PostcopyFailed => "NOT SAFE: postcopy placement fails",
    };
    out!("verdict: {verdict}");
    Ok(if p.outcome.class() == OutcomeClass::Completed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub fn encode(scenario: &Path, output: &Path) -> Result<ExitCode, String> {
    let l = load(scenario).map_err(|e| e.to_string())?;
    let b = build(&l).map_err(|e| e.to_string())?;
    if b.plan.is_postcopy() {
        return Err(format!("{}: only precopy streams are written (a postcopy stream is never a file)", scenario.display()));
    }
    // Straight to the file or standard output: the stream can be far larger than memory.
    let written = if output == Path::new("-") {
        encode_precopy(&b.source, &b.plan, &mut std::io::stdout().lock())
    } else {
        let mut f = std::fs::File::create(output).map_err(|e| format!("{}: {e}", output.display()))?;
        encode_precopy(&b.source, &b.plan, &mut f)
    };
    written.map_err(|e| format!("{}: {e}", output.display()))?;
    Ok(ExitCode::SUCCESS)
}
