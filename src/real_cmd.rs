//! `vmemsim run --backend real`: the model's outcome beside the outcome on real memory.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use vmemsim_sim::real::{cleanup::cleanup as repair, compare, fits, interrupt, model_outcome, run_real};
use vmemsim_sim::SimError;
use vmemsim_sim::{build, load};

pub fn run(file: &Path) -> Result<ExitCode, String> {
    let l = load(file).map_err(|e| e.to_string())?;
    let b = build(&l).map_err(|e| e.to_string())?;
    out!("scenario: {}", l.scenario.name);
    let needs = fits(&b).map_err(|why| format!("{}: does not run on real memory here: {why}", file.display()))?;
    out!("real memory: {needs}");
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let model = model_outcome(&b);
    interrupt::install().map_err(|e| format!("cannot handle signals: {e}"))?;
    let real = match run_real(&exe, &l.text, &b, Duration::from_secs(120)) {
        Ok(r) => r,
        Err(e @ SimError::Interrupted { signal }) => {
            eprintln!("{e}");
            return Ok(ExitCode::from((128 + signal) as u8));
        }
        Err(e) => return Err(e.to_string()),
    };
    out!("model:");
    out_raw!("{}", indent(&model.to_string()));
    out!("real memory ({:.3} s):", real.elapsed.as_secs_f64());
    out_raw!("{}", indent(&real.outcome.to_string()));
    let diffs = compare(&model, &real.outcome);
    Ok(crate::verdict("agreement: the model and real memory agree", "DISAGREEMENT:", &diffs))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// `vmemsim cleanup`: repairs and prints what it repaired; exit 1 when something could not be.
pub fn cleanup() -> Result<ExitCode, String> {
    if !vmemsim_sim::real::mounts::is_root() {
        return Err("cleanup needs root (the huge page pool and mounts are the host's)".into());
    }
    let report = repair();
    if report.lines.is_empty() {
        out!("nothing to repair: no leftover of a vmemsim run on this host");
    }
    for l in &report.lines {
        out!("{l}");
    }
    Ok(if report.lines.iter().any(|l| l.starts_with("could not")) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
