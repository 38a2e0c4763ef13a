//! `vmemsim run`, `check` and `replay`: a scenario on the model, for people or as a document;
//! replay over many files, into JUnit, or accepting the run as the file's `[expect]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::{Capacity, Mode, PostcopyStart, Variant};
use vmemsim_sim::report::junit::{self, Case, Problem};
use vmemsim_sim::report::run_doc::RunDoc;
use vmemsim_sim::report::{ErrorDoc, SCHEMA};
use vmemsim_sim::{build, check_expectations, load, run_built, Built, Loaded, Sim};

use crate::format::{print_doc, Format};

fn describe(l: &Loaded, b: &Built) {
    let s = &l.scenario;
    out!("scenario: {}", s.name);
    if s.variant != Variant::Faithful {
        out!("variant: {}", s.variant);
    }
    let cap = |c: Capacity| match c {
        Capacity::Unlimited => "unlimited".to_string(),
        Capacity::Limited(b) => b.to_string(),
    };
    let side = |name: &str, qemu: &vmemsim_model::QemuProfile, machine: &str, memory: &vmemsim_model::Memory| {
        if let Some(backend) = memory.single_backend() {
            out!("{name}: QEMU {}, machine {machine}, {} memory ({} pages), capacity {}", qemu.version, backend.kind.name(), backend.page_size, cap(backend.capacity));
            return;
        }
        out!("{name}: QEMU {}, machine {machine}", qemu.version);
        for m in &memory.memdevs {
            let main = if memory.main.as_deref() == Some(m.id.as_str()) { ", main RAM" } else { "" };
            let limits: Vec<String> = memory.draws(m).iter().flatten().map(|l| format!("{} ({})", memory.limits[l.0].kind.describe(), cap(memory.limits[l.0].capacity))).collect();
            let limits = if limits.is_empty() { "no limit".to_string() } else { limits.join(", ") };
            out!("  memdev {}{main}: {} memory ({} pages), drawing from {limits}", m.id, m.kind.name(), m.page_size);
        }
    };
    side("source", &b.source_qemu, b.source.machine.name(), &b.source_memory);
    for d in &b.source.devices {
        out!("  {} at {}: {}", d.id(), d.pci(), d.summary());
    }
    side("destination", &b.destination_qemu, b.destination.machine.name(), &b.destination.memory);
    match b.plan.mode {
        Mode::Precopy => out!("migration: precopy"),
        Mode::Postcopy { start: PostcopyStart::Share(p) } => out!("migration: postcopy, migrate-start-postcopy after {p}% of the pages"),
        Mode::Postcopy { start: PostcopyStart::After(b) } => out!("migration: postcopy, migrate-start-postcopy after {b} of page data"),
    }
}


/// The human report of a run: both sides, the outcome, the verdict, violations and hash.
fn print_run(l: &Loaded, b: &Built, report: &Sim, trace: bool) {
    describe(l, b);
    if trace {
        out!("trace:");
        for line in report.lines(b) {
            out!("  {line}");
        }
    }
    out_raw!("{}", report.outcome);
    out_raw!("{}", report.source);
    out!("verdict: {}", report.judgement);
    for v in &report.violations {
        out!("property {} violated: {}", v.property, v.detail);
    }
    out!("trace hash: {:016x}", report.trace_hash);
}

/// `vmemsim run`: with an `[expect]`, exit 0 when the run met it; without one, 0 only when no
/// property is violated and the verdict is safe.
pub fn run(file: &Path, trace: bool, format: Format) -> Result<ExitCode, String> {
    let l = load(file).map_err(|e| e.to_string())?;
    let b = build(&l).map_err(|e| e.to_string())?;
    let report = run_built(&b);
    let diffs = check_expectations(&l, &report).map_err(|e| e.to_string())?;
    let code = if l.scenario.expect.is_none() {
        // Without an expectation the run answers the operator's question: safe or not.
        u8::from(!(diffs.is_empty() && report.judgement.verdict == Verdict::Safe))
    } else {
        u8::from(!diffs.is_empty())
    };
    if format.json() {
        let expectation = l.scenario.expect.is_some().then_some(diffs);
        print_doc(&RunDoc::new("run", &l, &b, &report, trace, expectation, code));
        return Ok(ExitCode::from(code));
    }
    print_run(&l, &b, &report, trace);
    if l.scenario.expect.is_none() {
        return Ok(ExitCode::from(code));
    }
    Ok(verdict("expectation: met", "expectation: NOT met", &diffs))
}

/// `vmemsim check`: the verdict line and the reasons; exit 0 only when safe.
pub fn check(file: &Path, format: Format) -> Result<ExitCode, String> {
    let l = load(file).map_err(|e| e.to_string())?;
    let b = build(&l).map_err(|e| e.to_string())?;
    let report = run_built(&b);
    let code = u8::from(report.judgement.verdict != Verdict::Safe);
    if format.json() {
        print_doc(&RunDoc::new("check", &l, &b, &report, false, None, code));
        return Ok(ExitCode::from(code));
    }
    out!("{}: {}", file.display(), report.judgement);
    out_raw!("  destination {}", report.outcome.to_string().trim_start_matches("outcome: "));
    out_raw!("  {}", report.source);
    for v in &report.violations {
        out!("  property {} violated: {}", v.property, v.detail);
    }
    Ok(ExitCode::from(code))
}

/// What `replay` does besides checking.
pub struct ReplayArgs {
    pub files: Vec<PathBuf>,
    pub trace: bool,
    pub junit: Option<PathBuf>,
    pub accept: bool,
}

/// One file's replay.
enum Replayed {
    /// It ran: the document, and the differences from its `[expect]` before any accept.
    Ran { doc: Box<RunDoc>, accepted: bool },
    /// The file is wrong, or could not be rewritten.
    Error(String),
}

/// The batch document of `replay`.
#[derive(serde::Serialize)]
struct ReplayDoc {
    schema: &'static str,
    command: &'static str,
    files: usize,
    met: usize,
    not_met: usize,
    accepted: usize,
    errors: usize,
    /// Per file, in the order given.
    results: Vec<ReplayResult>,
    exit_code: u8,
}

/// One file of a replay: its run document, or its error (with the file).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum ReplayResult {
    Ran(Box<RunDoc>),
    Error(ErrorDoc),
}

fn replay_one(file: &Path, a: &ReplayArgs, format: Format) -> Replayed {
    let l = match load(file) {
        Ok(l) => l,
        Err(e) => return Replayed::Error(e.to_string()),
    };
    if l.scenario.expect.is_none() && !a.accept {
        return Replayed::Error(format!("{}: replay needs an [expect] table to check against (--accept writes one from the run)", file.display()));
    }
    let b = match build(&l) {
        Ok(b) => b,
        Err(e) => return Replayed::Error(e.to_string()),
    };
    let report = run_built(&b);
    let diffs = match check_expectations(&l, &report) {
        Ok(d) => d,
        // A value `[expect]` cannot hold is one more thing --accept replaces.
        Err(e) if a.accept => vec![e.to_string()],
        Err(e) => return Replayed::Error(e.to_string()),
    };
    let human = !format.json();
    if human {
        print_run(&l, &b, &report, a.trace);
    }
    let mut accepted = false;
    if a.accept && (l.scenario.expect.is_none() || !diffs.is_empty()) {
        if human {
            if l.scenario.expect.is_none() {
                out!("accept: {} has no [expect]; writing the run's", file.display());
            } else {
                out!("accept: {} differs from its [expect]:", file.display());
                for d in &diffs {
                    out!("  {d}");
                }
            }
        }
        let text = match vmemsim_sim::accept::accept(&l, &report) {
            Ok(t) => t,
            Err(e) => return Replayed::Error(e.to_string()),
        };
        if let Err(e) = std::fs::write(file, text) {
            return Replayed::Error(format!("{}: cannot write the accepted [expect]: {e}", file.display()));
        }
        if human {
            out!("accept: wrote [expect] to {}", file.display());
        }
        accepted = true;
    } else if human {
        verdict("expectation: met", "expectation: NOT met", &diffs);
    }
    let code = u8::from(!diffs.is_empty() && !accepted);
    let doc = RunDoc::new("replay", &l, &b, &report, a.trace, Some(diffs), code);
    Replayed::Ran { doc: Box::new(doc), accepted }
}

/// `vmemsim replay FILE...`: exit 0 when every file met its `[expect]` (or had it accepted),
/// 1 when one did not, 2 when a file is wrong.
pub fn replay(a: ReplayArgs, format: Format) -> Result<ExitCode, String> {
    let mut cases = Vec::new();
    let mut results = Vec::new();
    let (mut met, mut not_met, mut accepted, mut errors) = (0, 0, 0, 0);
    for (i, file) in a.files.iter().enumerate() {
        if i > 0 && !format.json() {
            out!("");
        }
        let start = Instant::now();
        let r = replay_one(file, &a, format);
        let mut case = Case::new("vmemsim.replay", &file.display().to_string(), start.elapsed().as_secs_f64());
        match r {
            Replayed::Ran { doc, accepted: acc } => {
                let diffs = doc.expectation.as_ref().map(|e| e.differences.clone()).unwrap_or_default();
                if acc {
                    accepted += 1;
                } else if diffs.is_empty() {
                    met += 1;
                } else {
                    not_met += 1;
                    case.failure = Some(Problem { message: diffs[0].clone(), kind: "expectation".into(), text: diffs.join("\n") });
                }
                case.system_out = Some(format!("outcome: {}\nverdict: {}: {}\ntrace hash: {}", doc.destination.outcome.class, doc.verdict.verdict, doc.verdict.reason, doc.trace_hash));
                results.push(ReplayResult::Ran(doc));
            }
            Replayed::Error(e) => {
                errors += 1;
                if !format.json() {
                    eprintln!("error: {e}");
                }
                case.error = Some(Problem { message: e.lines().next().unwrap_or_default().to_string(), kind: "input".into(), text: e.clone() });
                results.push(ReplayResult::Error(ErrorDoc { file: Some(file.display().to_string()), ..ErrorDoc::new("replay", &e) }));
            }
        }
        cases.push(case);
    }
    let code = if errors > 0 { 2 } else { u8::from(not_met > 0) };
    if let Some(path) = &a.junit {
        std::fs::write(path, junit::document("vmemsim replay", cases)).map_err(|e| format!("{}: cannot write the JUnit file: {e}", path.display()))?;
    }
    if format.json() {
        print_doc(&ReplayDoc { schema: SCHEMA, command: "replay", files: a.files.len(), met, not_met, accepted, errors, results, exit_code: code });
    } else if a.files.len() > 1 || a.junit.is_some() {
        out!("");
        out!("replayed {} files: {met} met, {not_met} not met, {accepted} accepted, {errors} wrong", a.files.len());
    }
    Ok(ExitCode::from(code))
}

/// Prints `ok` when there are no differences (exit 0), else `bad` and each difference indented
/// (exit 1).
pub fn verdict(ok: &str, bad: &str, diffs: &[String]) -> ExitCode {
    if diffs.is_empty() {
        out!("{ok}");
        return ExitCode::SUCCESS;
    }
    out!("{bad}");
    for d in diffs {
        out!("  {d}");
    }
    ExitCode::from(1)
}

