//! `vmemsim run --backend real`: the model's outcome beside the outcome on real memory.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use vmemsim_sim::real::{cleanup::cleanup as repair, compare, fits, interrupt, run_real, simulated_outcome};
use vmemsim_sim::SimError;
use vmemsim_sim::report::run_doc::RealRunDoc;
use vmemsim_sim::report::SCHEMA;
use vmemsim_sim::{build, load};

use crate::format::{print_doc, Format};

pub fn run(file: &Path, format: Format) -> Result<ExitCode, String> {
    let l = load(file).map_err(|e| e.to_string())?;
    let b = build(&l).map_err(|e| e.to_string())?;
    let needs = fits(&b).map_err(|why| format!("{}: does not run on real memory here: {why}", file.display()))?;
    if !format.json() {
        out!("scenario: {}", l.scenario.name);
        out!("real memory: {needs}");
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let model = simulated_outcome(&b);
    interrupt::install().map_err(|e| format!("cannot handle signals: {e}"))?;
    let real = match run_real(&exe, &l.text, &b, Duration::from_secs(120)) {
        Ok(r) => r,
        Err(e @ SimError::Interrupted { signal }) => {
            eprintln!("{e}");
            return Ok(ExitCode::from((128 + signal) as u8));
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut diffs = compare(&model, &real.outcome);
    diffs.extend(real.divergences.iter().map(|d| format!("diverged at {d}")));
    if format.json() {
        let doc = RealRunDoc::new(&l, needs.to_string(), &model, &real.outcome, real.elapsed.as_secs_f64(), diffs);
        print_doc(&doc);
        return Ok(ExitCode::from(doc.exit_code));
    }
    out!("model:");
    out_raw!("{}", indent(&model.to_string()));
    out!("real memory ({:.3} s):", real.elapsed.as_secs_f64());
    out_raw!("{}", indent(&real.outcome.to_string()));
    Ok(crate::run_cmd::verdict("agreement: the model and real memory agree", "DISAGREEMENT:", &diffs))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// `vmemsim cleanup`: repairs and prints what it repaired; exit 1 when something could not be.
pub fn cleanup(format: Format) -> Result<ExitCode, String> {
    if !vmemsim_sim::real::mounts::is_root() {
        return Err("cleanup needs root (the huge page pool and mounts are the host's)".into());
    }
    let report = repair();
    let failed = report.lines.iter().any(|l| l.starts_with("could not"));
    if format.json() {
        let doc = CleanupDoc { schema: SCHEMA, command: "cleanup", repaired: report.lines.clone(), ok: !failed, exit_code: u8::from(failed) };
        print_doc(&doc);
        return Ok(ExitCode::from(doc.exit_code));
    }
    if report.lines.is_empty() {
        out!("nothing to repair: no leftover of a vmemsim run on this host");
    }
    for l in &report.lines {
        out!("{l}");
    }
    Ok(ExitCode::from(u8::from(failed)))
}

/// `cleanup`'s document: one line per repair, as the human form prints them.
#[derive(serde::Serialize)]
struct CleanupDoc {
    schema: &'static str,
    command: &'static str,
    repaired: Vec<String>,
    /// Everything found could be repaired.
    ok: bool,
    exit_code: u8,
}
