//! `vmemsim analyze`, `vmemsim preflight` and `vmemsim encode`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vmemsim_model::wire::encode::encode_precopy;
use vmemsim_model::OutcomeClass;
use vmemsim_sim::report::run_doc::OutcomeDoc;
use vmemsim_sim::report::SCHEMA;
use vmemsim_sim::stream::{analyze_json, backend_of, pretty, preflight_with as predict, read_events, summary, summary_value, DestMemory};
use vmemsim_sim::{build, load};

use crate::format::{print_doc, Format};

/// `analyze --format json`: the analyzer's output and the summary, in one document.
#[derive(serde::Serialize)]
struct AnalyzeDoc {
    schema: &'static str,
    command: &'static str,
    file: String,
    /// What `analyze` prints without --format: analyze-migration.py's document.
    analysis: serde_json::Value,
    summary: serde_json::Value,
    exit_code: u8,
}

/// `preflight --format json`.
#[derive(serde::Serialize)]
struct PreflightDoc {
    schema: &'static str,
    command: &'static str,
    file: String,
    /// The limits re-read on this host (`--host`).
    read_on_host: Vec<String>,
    /// Device memory the destination must populate, and what it has (`null`: unlimited).
    needed_bytes: u64,
    available_bytes: Option<u64>,
    /// The prediction's reasoning, line by line, as the human form prints it.
    report: Vec<String>,
    outcome: OutcomeDoc,
    /// Only a completed restore with all its plugged memory backed is safe.
    safe: bool,
    verdict: String,
    /// Both sides, when a live source sends this stream: where the source ends and whether the
    /// VM survives (safe, recoverable, vm-lost, latent-crash).
    whole_migration: WholeDoc,
    exit_code: u8,
}

#[derive(serde::Serialize)]
struct WholeDoc {
    verdict: &'static str,
    reason: String,
    source_status: &'static str,
    source_runstate: &'static str,
}

pub fn analyze(file: &Path, people: bool, format: Format) -> Result<ExitCode, String> {
    let events = read_events(file).map_err(|e| e.to_string())?;
    if format.json() {
        print_doc(&AnalyzeDoc { schema: SCHEMA, command: "analyze", file: file.display().to_string(), analysis: analyze_json(&events), summary: summary_value(&events), exit_code: 0 });
        return Ok(ExitCode::SUCCESS);
    }
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

pub fn preflight(file: &Path, d: Dest, machine: Option<&str>, qemu: vmemsim_model::QemuVersion, format: Format) -> Result<ExitCode, String> {
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
    let latent = p.judgement.verdict == vmemsim_model::migration::verdict::Verdict::LatentCrash;
    let verdict = match p.outcome.class() {
        OutcomeClass::Completed if latent => "NOT SAFE: the restore completes, but plugged memory is left unbacked: the guest's first write there is a SIGBUS",
        OutcomeClass::Completed => "safe: the restore completes",
        OutcomeClass::Failed => "not safe: the restore fails gracefully (nothing is lost but the migration)",
        OutcomeClass::Crashed => "NOT SAFE: the destination dies of SIGBUS while loading RAM",
        OutcomeClass::RuntimeCrash => "NOT SAFE: the guest can die of SIGBUS after the restore",
        OutcomeClass::PostcopyFailed => "NOT SAFE: postcopy placement fails",
    };
    let safe = p.outcome.class() == OutcomeClass::Completed && !latent;
    let whole = WholeDoc { verdict: p.judgement.verdict.name(), reason: p.judgement.reason.clone(), source_status: p.source.status.name(), source_runstate: p.source.runstate.name() };
    if format.json() {
        print_doc(&PreflightDoc {
            schema: SCHEMA,
            command: "preflight",
            file: file.display().to_string(),
            read_on_host: said,
            needed_bytes: p.needed.0,
            available_bytes: p.available.map(|b| b.0),
            report: p.report.lines().map(str::to_string).collect(),
            outcome: (&p.outcome).into(),
            safe,
            verdict: verdict.to_string(),
            whole_migration: whole,
            exit_code: u8::from(!safe),
        });
        return Ok(ExitCode::from(u8::from(!safe)));
    }
    for s in &said {
        out!("read on this host: {s}");
    }
    out_raw!("{}", p.report);
    out_raw!("{}", p.outcome);
    out!("verdict: {verdict}");
    out!("whole migration, from a live QEMU {qemu} source: {}", p.judgement);
    Ok(ExitCode::from(u8::from(!safe)))
}

/// `encode --format json`: what was written where.
#[derive(serde::Serialize)]
struct EncodeDoc {
    schema: &'static str,
    command: &'static str,
    scenario: String,
    output: String,
    bytes: u64,
    exit_code: u8,
}

pub fn encode(scenario: &Path, output: &Path, format: Format) -> Result<ExitCode, String> {
    if format.json() && output == Path::new("-") {
        return Err("--format json prints a document on stdout: give encode an output file, not -".into());
    }
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
    if format.json() {
        let bytes = std::fs::metadata(output).map_err(|e| format!("{}: {e}", output.display()))?.len();
        print_doc(&EncodeDoc { schema: SCHEMA, command: "encode", scenario: scenario.display().to_string(), output: output.display().to_string(), bytes, exit_code: 0 });
    }
    Ok(ExitCode::SUCCESS)
}
